import Foundation

/// Element-wise reduction applied by `allreduce` and `reduce`.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, max
}

/// Failures of collective operations; every rank of a failed collective sees one.
public enum CollectiveError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// An MPI call returned a nonzero code; `message` is MPI_Error_string's text.
    case mpi(call: String, code: Int32, message: String)
    /// Another rank aborted (or failed) and the group was poisoned.
    case aborted(rank: Int, message: String)
    /// Ranks passed buffers whose sizes the operation requires to agree.
    case countMismatch(operation: String, counts: [Int])
    /// A rank argument (root, peer) is outside 0..<size.
    case invalidRank(operation: String, rank: Int, size: Int)
    /// Ranks could never meet: some ranks finished while others waited in a collective.
    case deadlock(operation: String, waiting: Int, finished: Int)
    /// The inputs of a distributed algorithm are inconsistent across ranks.
    case invalidInput(operation: String, reason: String)
    /// Bytes received for a String / Codable broadcast could not be decoded.
    case decoding(type: String, reason: String)

    public var description: String {
        switch self {
        case let .mpi(call, code, message):
            return "\(call) failed with MPI error \(code): \(message)"
        case let .aborted(rank, message):
            return "rank \(rank) aborted the job: \(message)"
        case let .countMismatch(operation, counts):
            return "\(operation): the ranks passed buffers of different sizes \(counts)"
        case let .invalidRank(operation, rank, size):
            return "\(operation): rank \(rank) is outside 0..<\(size)"
        case let .deadlock(operation, waiting, finished):
            return "\(operation): \(waiting) rank(s) waited for \(finished) rank(s) that had already finished"
        case let .invalidInput(operation, reason):
            return "\(operation): \(reason)"
        case let .decoding(type, reason):
            return "broadcast of \(type): could not decode the received bytes: \(reason)"
        }
    }
    public var errorDescription: String? { description }
}

/// A group of ranks that run the same program and meet in collective operations.
///
/// Every rank must call the same collectives in the same order. Buffers of
/// `allreduce`, `reduce` and `allgather` must have the same count on every rank;
/// `allgatherv` and `gather` accept any count per rank (including zero); `broadcast`
/// replaces every rank's buffer with the root's, whatever its previous size.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }

    func barrier() throws

    func broadcast(_ buf: inout [Float], root: Int) throws
    func broadcast(_ buf: inout [Double], root: Int) throws
    func broadcast(_ buf: inout [UInt8], root: Int) throws

    func allreduce(_ buf: inout [Float], op: ReduceOp) throws
    func allreduce(_ buf: inout [Double], op: ReduceOp) throws

    /// The result is written to `buf` on `root` only; other ranks' buffers are left unchanged.
    func reduce(_ buf: inout [Float], op: ReduceOp, root: Int) throws
    func reduce(_ buf: inout [Double], op: ReduceOp, root: Int) throws

    /// Concatenation of every rank's `send` in rank order (equal counts required).
    func allgather(_ send: [Float]) throws -> [Float]
    func allgather(_ send: [Double]) throws -> [Double]

    /// Every rank's `send`, one array per rank in rank order (counts may differ).
    func allgatherv(_ send: [Float]) throws -> [[Float]]
    func allgatherv(_ send: [Double]) throws -> [[Double]]
    func allgatherv(_ send: [UInt8]) throws -> [[UInt8]]

    /// Every rank's `send` on `root` (one array per rank, counts may differ); nil elsewhere.
    func gather(_ send: [Float], root: Int) throws -> [[Float]]?
    func gather(_ send: [Double], root: Int) throws -> [[Double]]?

    /// Point to point; messages between one pair with one tag arrive in the order sent.
    func send(_ buf: [Double], to dest: Int, tag: Int) throws
    func recv(from source: Int, tag: Int) throws -> [Double]

    /// Ends the whole job (every rank) with `message` on stderr.
    func abort(message: String, code: Int32) -> Never
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Root's string on every rank.
    public func broadcast(_ value: inout String, root: Int) throws {
        var bytes = rank == root ? Array(value.utf8) : []
        try broadcast(&bytes, root: root)
        guard let s = String(bytes: bytes, encoding: .utf8) else {
            throw CollectiveError.decoding(type: "String", reason: "not valid UTF-8")
        }
        value = s
    }

    /// Root's value on every rank, carried as JSON; `value` is only read on root.
    public func broadcast<T: Codable>(_ value: T?, root: Int, as type: T.Type = T.self) throws -> T {
        var bytes: [UInt8] = []
        var encodeError: String?
        if rank == root {
            do {
                guard let v = value else {
                    throw CollectiveError.invalidInput(operation: "broadcast", reason: "the root passed no value")
                }
                bytes = Array(try JSONEncoder().encode(v))
            } catch {
                // An empty payload tells the other ranks that the root could not encode.
                encodeError = "\(error)"
                bytes = []
            }
        }
        try broadcast(&bytes, root: root)
        if bytes.isEmpty {
            throw CollectiveError.decoding(type: "\(T.self)", reason: encodeError ?? "the root could not encode its value")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw CollectiveError.decoding(type: "\(T.self)", reason: "\(error)")
        }
    }

    /// Runs `body`; an error it throws ends the whole job with a message naming this rank,
    /// because the other ranks would otherwise wait forever in their next collective.
    public func abortingOnError<T>(_ context: String, _ body: () throws -> T) -> T {
        do {
            return try body()
        } catch {
            abort(message: "\(context): rank \(rank) of \(size) failed: \(error)", code: 1)
        }
    }

    func checkRank(_ r: Int, _ operation: String) throws {
        guard r >= 0 && r < size else { throw CollectiveError.invalidRank(operation: operation, rank: r, size: size) }
    }
}

/// True when this process was started by mpirun / a PMIx launcher.
public func launchedByMPI(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
    environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
}

/// The communicator of the whole job: MPI under mpirun, otherwise one in-process rank
/// (MPI is then never initialised, so `ligand` runs without mpirun).
public func worldCommunicator() throws -> Communicator {
    if launchedByMPI() { return try MPICommunicator.initialize() }
    return InProcessCommunicator.single()
}

/// A contiguous, balanced split of 0..<count into `parts` ranges; the first `count % parts`
/// parts get one extra element. Used to assign models to ranks.
public func blockRange(count: Int, parts: Int, part: Int) -> Range<Int> {
    precondition(count >= 0 && parts > 0 && part >= 0 && part < parts, "blockRange(count: \(count), parts: \(parts), part: \(part))")
    let base = count / parts
    let extra = count % parts
    let start = part * base + Swift.min(part, extra)
    return start..<(start + base + (part < extra ? 1 : 0))
}
