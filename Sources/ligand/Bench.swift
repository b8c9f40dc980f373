import ArgumentParser
import Foundation
import LigandCollective
import LigandFormats
import LigandNumerics
#if canImport(Glibc)
import Glibc
#endif

/// `ligand bench SUBCOMMAND`: one subcommand per measured building block. A new benchmark
/// (e.g. `bench train`, `bench portland`) is a ParsableCommand added to `subcommands` that fills
/// a `BenchReport` and hands it to `BenchOutput.emit`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the building blocks: sgemm, allreduce and training-step throughput.",
        discussion: "Each subcommand prints a table on rank 0 and, with --json FILE, writes the same figures as JSON.",
        subcommands: [BenchGemm.self, BenchAllreduce.self, BenchTrain.self, BenchForward.self, BenchPortland.self]
    )
}

/// One measured figure. Fields that do not apply to a benchmark are left out of the JSON.
struct BenchResult: Codable, Equatable {
    var benchmark: String
    var communicator: String? = nil
    var ranks: Int? = nil
    var size: Int? = nil
    var bytes: Int? = nil
    var threads: Int? = nil
    var repeats: Int
    /// Time of one operation, in seconds (how it is aggregated is the report's `method`).
    var seconds: Double
    var value: Double
    var unit: String
}

struct BenchReport: Codable, Equatable {
    var benchmark: String
    var method: String
    var host: String
    var results: [BenchResult]
}

enum BenchError: Error, CustomStringConvertible, LocalizedError {
    case write(path: String, reason: String)
    var description: String {
        switch self {
        case let .write(path, reason): return "could not write \(path): \(reason)"
        }
    }
    var errorDescription: String? { description }
}

/// A comma-separated list of positive integers, as options like `--sizes 512,1024` take.
struct PositiveIntList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Int]
    init(_ values: [Int]) { self.values = values }
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        let ints = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, ints.count == parts.count, ints.allSatisfy({ $0 > 0 }) else { return nil }
        values = ints
    }
    var description: String { values.map(String.init).joined(separator: ",") }
    var defaultValueDescription: String { description }
}

/// Options every bench subcommand shares.
struct BenchOutput: ParsableArguments {
    @Option(help: ArgumentHelp("Also write the results as JSON to this file (atomically, on rank 0). (default: none)",
                               valueName: "file"))
    var json: String?

    /// Fails before any measuring when the JSON file could not be written later.
    func validate() throws {
        guard let path = json else { return }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), !isDir.boolValue {
            throw ValidationError("--json \(path): \(dir) is not a directory")
        }
        // A device, FIFO or directory at the path itself is refused now rather than after the measuring.
        do { _ = try FileChecks.resolveOutput(path) } catch { throw ValidationError("--json \(error)") }
    }

    /// Writes the report as JSON when --json was given.
    func emit(_ report: BenchReport) throws {
        guard let path = json else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try writeAtomically(try encoder.encode(report), to: path)
        print("wrote \(path)")
    }
}

/// Writes to a temporary file in the destination's directory, then renames it into place, so a reader
/// never sees a half-written file; the destination must be absent or a regular file (a symlink is written
/// through) and none of `inputs` (AtomicFile checks both before writing).
func writeAtomically(_ data: Data, to path: String, inputs: [String] = []) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    var isDir: ObjCBool = false
    if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
        // Like `run --out`, a report's directory is created when missing.
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        catch { throw BenchError.write(path: path, reason: "cannot create directory \(dir): \(error.localizedDescription)") }
    } else if !isDir.boolValue {
        throw BenchError.write(path: path, reason: "\(dir) is not a directory")
    }
    try AtomicFile.write(data, to: url, inputs: inputs.map { URL(fileURLWithPath: $0) })
}

/// Runs `body` on the job's communicator and ends MPI cleanly afterwards (mpirun reports a
/// rank that exits without MPI_Finalize as failed). An error on any rank ends the whole job.
func withWorld(_ context: String, _ body: (Communicator) throws -> Void) throws {
    let comm = try worldCommunicator()
    comm.abortingOnError(context) {
        try body(comm)
        try comm.barrier()
    }
    if let mpi = comm as? MPICommunicator { try mpi.finalize() }
}

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "sgemm throughput (GFLOP/s) on square Float32 matrices through OpenBLAS.",
        discussion: "Best of --repeats timed products after one warm-up, 2·n³ floating-point operations per product. Under mpirun only rank 0 measures."
    )

    @Option(parsing: .unconditional, help: "Matrix sizes n (n×n times n×n), comma-separated.")
    var sizes = PositiveIntList([512, 1024, 2048])
    @Option(parsing: .unconditional, help: "OpenBLAS thread counts, comma-separated.")
    var threads = PositiveIntList([1, 2])
    @Option(parsing: .unconditional, help: "Timed products per size and thread count.")
    var repeats = 3
    @OptionGroup var output: BenchOutput

    func validate() throws {
        try CountOption.check(repeats, "--repeats", min: 1, max: 10_000)
        // Three n×n Float32 matrices: n = 8,192 is 768 MB.
        try CountOption.check(sizes, "--sizes", max: 8_192)
        try CountOption.check(threads, "--threads", max: CountOption.maxThreads)
    }

    func run() throws {
        try withWorld("ligand bench gemm") { comm in
            guard comm.isRoot else { return }
            print("sgemm, Float32 row-major, best of \(repeats) after one warm-up")
            print(pad("n", 6) + pad("threads", 9) + pad("ms", 10) + pad("GFLOP/s", 10))
            var results: [BenchResult] = []
            for n in sizes.values {
                for t in threads.values {
                    let gflops = Benchmarks.benchmarkSgemm(size: n, threads: t, repeats: repeats)
                    let seconds = 2 * pow(Double(n), 3) / (gflops * 1e9)
                    print(pad("\(n)", 6) + pad("\(t)", 9) + pad(fixed(seconds * 1e3, 2), 10) + pad(fixed(gflops, 1), 10))
                    results.append(BenchResult(benchmark: "gemm", size: n, threads: t, repeats: repeats,
                                               seconds: seconds, value: gflops, unit: "GFLOP/s"))
                }
            }
            try output.emit(BenchReport(benchmark: "gemm", method: "best of repeats after one warm-up",
                                        host: localHostName(), results: results))
        }
    }
}

struct BenchAllreduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Float32 sum-allreduce throughput of the in-process and (under mpirun) MPI communicators.",
        discussion: """
        GB/s is the buffer size (10⁹ bytes) over the mean time of one allreduce on the slowest rank, \
        after one warm-up. The in-process communicator runs --ranks threads in one process; under \
        mpirun rank 0 measures it after the MPI figures while the other ranks wait, so for clean \
        in-process figures run without mpirun.
        """
    )

    @Option(parsing: .unconditional, help: "Buffer sizes in MiB, comma-separated.")
    var sizes = PositiveIntList([1, 4, 16, 64])
    @Option(parsing: .unconditional, help: "Threads (ranks) of the in-process communicator.")
    var ranks = 2
    @Option(parsing: .unconditional, help: "Timed allreduces per size.")
    var repeats = 5
    @OptionGroup var output: BenchOutput

    func validate() throws {
        try CountOption.check(repeats, "--repeats", min: 1, max: 10_000)
        try CountOption.check(ranks, "--ranks", min: 1, max: 256)
        // Sizes are MiB, shifted into bytes: 1 GiB per buffer is plenty and cannot overflow.
        try CountOption.check(sizes, "--sizes", max: 1_024)
    }

    func run() throws {
        let bytes = sizes.values.map { $0 << 20 }
        try withWorld("ligand bench allreduce") { comm in
            var results: [BenchResult] = []
            if launchedByMPI() {
                let mpi = try benchmarkAllreduce(comm: comm, bytes: bytes, repeats: repeats)
                results += mpi.map { record("mpi", comm.size, $0) }
            }
            if comm.isRoot {
                let local = try InProcessCommunicator.run(size: ranks) { c in
                    try benchmarkAllreduce(comm: c, bytes: bytes, repeats: repeats)
                }[0]
                results = local.map { record("in-process", ranks, $0) } + results
                print("allreduce, Float32 sum, mean of \(repeats) after one warm-up")
                print(pad("communicator", 14) + pad("ranks", 7) + pad("MiB", 6) + pad("ms", 10) + pad("GB/s", 9))
                for r in results {
                    print(pad(r.communicator ?? "", 14) + pad("\(r.ranks ?? 0)", 7) + pad("\((r.bytes ?? 0) >> 20)", 6)
                          + pad(fixed(r.seconds * 1e3, 2), 10) + pad(fixed(r.value, 2), 9))
                }
                if !launchedByMPI() { print("(no MPI figures: run under mpirun, e.g. bash launch/cluster.sh hostfiles/localhost -np 2 -- bench allreduce)") }
                try output.emit(BenchReport(benchmark: "allreduce", method: "mean of repeats after one warm-up, slowest rank",
                                            host: localHostName(), results: results))
            }
        }
    }

    private func record(_ kind: String, _ ranks: Int, _ r: (bytes: Int, seconds: Double, gigabytesPerSecond: Double)) -> BenchResult {
        BenchResult(benchmark: "allreduce", communicator: kind, ranks: ranks, bytes: r.bytes, repeats: repeats,
                    seconds: r.seconds, value: r.gigabytesPerSecond, unit: "GB/s")
    }
}

/// Right-aligns `s` in a column of `width` characters.
func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
}

func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
