import ArgumentParser
import LigandPipeline

/// `ligand methods`: every merge method and its parameters, from their declarations (docs/run.md's table is this output).
struct Methods: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the merge methods, the suites each merges and every method option with its default.")

    @Flag(help: "Print the Markdown tables of docs/run.md instead of plain text (default: off).")
    var markdown = false

    func run() throws {
        print(markdown ? MethodRegistry.markdown() : MethodRegistry.helpText(), terminator: "")
    }
}
