import ArgumentParser
import Foundation
import LigandCollective
import LigandNumerics
#if canImport(Glibc)
import Glibc
#endif

/// The four IDX files of Fashion-MNIST (gzip'd), as Debian's dataset-fashion-mnist ships them.
let fashionMNISTFiles = [
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
]
let defaultFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

/// The directory `--data` names, else $LIGAND_FASHION_MNIST, else Debian's location.
func fashionMNISTDirectory(_ option: String?) -> String {
    if let option, !option.isEmpty { return option }
    if let env = ProcessInfo.processInfo.environment["LIGAND_FASHION_MNIST"], !env.isEmpty { return env }
    return defaultFashionMNISTDirectory
}

/// This machine's host name (gethostname: no DNS lookup, so it cannot stall).
func localHostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, buf.count - 1) == 0 else { return "unknown-host" }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// What one rank tells rank 0 about itself.
struct RankReport: Codable, Equatable {
    var rank: Int
    var host: String
    var modelLower: Int
    var modelUpper: Int
    var blasThreads: Int
    var pid: Int32
    /// How many of the four Fashion-MNIST files this rank's node has.
    var dataFiles: Int

    var line: String {
        let models = modelUpper > modelLower ? "\(modelLower)..<\(modelUpper) (\(modelUpper - modelLower))" : "none"
        return "rank \(rank): host \(host), models \(models), BLAS threads \(blasThreads), pid \(pid), data files \(dataFiles)/\(fashionMNISTFiles.count)"
    }
}

/// Every rank's report, on every rank, in rank order (carried as UTF-8 JSON through allgatherv).
func gatherReports(_ own: RankReport, comm: Communicator) throws -> [RankReport] {
    let bytes = Array(try JSONEncoder().encode(own))
    let all = try comm.allgatherv(bytes)
    return try all.enumerated().map { rank, payload in
        do {
            return try JSONDecoder().decode(RankReport.self, from: Data(payload))
        } catch {
            throw CollectiveError.decoding(type: "RankReport from rank \(rank)", reason: "\(error)")
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the ranks, hosts, BLAS threads, MPI library and data files.",
        discussion: """
        Run it under mpirun to check a launch before a long job: rank 0 prints one line per rank \
        (host, rank, the models it would hold, OpenBLAS threads, pid, how many Fashion-MNIST files \
        that node has), the MPI library version, and which Fashion-MNIST files are present. \
        Without mpirun it runs as one rank.
        """
    )

    @Option(parsing: .unconditional, help: "How many collaborating models to spread over the ranks; each rank holds a contiguous block.")
    var models: Int = 0

    @Option(help: ArgumentHelp(
        "Directory with the Fashion-MNIST IDX files. (default: $LIGAND_FASHION_MNIST, else \(defaultFashionMNISTDirectory))",
        valueName: "dir"))
    var data: String?

    func validate() throws {
        try CountOption.check(models, "--models", min: 0)
    }

    func run() throws {
        let dir = fashionMNISTDirectory(data)
        let present = fashionMNISTFiles.map { FileManager.default.isReadableFile(atPath: dir + "/" + $0) }
        try withWorld("ligand info") { comm in
            let range = blockRange(count: models, parts: comm.size, part: comm.rank)
            let own = RankReport(rank: comm.rank, host: localHostName(), modelLower: range.lowerBound,
                                 modelUpper: range.upperBound, blasThreads: { _ = BLAS.configured; return Parallel.workers }(),
                                 pid: getpid(), dataFiles: present.filter { $0 }.count)
            let reports = try gatherReports(own, comm: comm)
            guard comm.isRoot else { return }
            print("ranks: \(comm.size), models: \(models)")
            for r in reports { print(r.line) }
            print("MPI: " + (launchedByMPI() ? mpiLibraryFirstLine() : "no MPI (single process)"))
            print("Fashion-MNIST in \(dir):")
            for (name, ok) in zip(fashionMNISTFiles, present) {
                print("  \(ok ? "present" : "missing")  \(name)")
            }
        }
    }
}

/// First line of MPI_Get_library_version (the full text runs over several lines).
func mpiLibraryFirstLine() -> String {
    // The C string's length may count its terminating NUL; keep printable text only.
    let text = MPICommunicator.libraryVersion.filter { $0 != "\0" }
    let first = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? text
    return first.trimmingCharacters(in: .whitespaces)
}
