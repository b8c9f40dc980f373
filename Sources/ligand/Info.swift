import ArgumentParser

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the ranks, hosts, BLAS threads, MPI library and data files.")
    func run() throws { print("info: not yet") }
}
