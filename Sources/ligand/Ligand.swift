import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
struct Ligand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ligand",
        abstract: "Fuse many trained neural networks into one (NeuLig, CCA Merge and baselines), over MPI.",
        discussion: """
        Run it under mpirun to spread the collaborating models over ranks, or without mpirun as one rank.
        Every subcommand documents its options with `ligand help SUBCOMMAND`.
        """,
        subcommands: LigandCommands.all
    )

    static func main() {
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            // Under mpirun every rank parses the same arguments: only rank 0 reports a usage error, so the copies do not interleave.
            if let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"], rank != "0" { Glibc.exit(exitCode(for: error).rawValue) }
            exit(withError: error)
        }
        do {
            var running = command
            try running.run()
        } catch {
            exit(withError: error)
        }
    }
}
