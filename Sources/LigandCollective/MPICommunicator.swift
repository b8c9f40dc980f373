import CLigandMPI
import CMPI
import Foundation

/// Scalars that travel through MPI, with their predefined datatype.
protocol MPIElement {
    static var mpiDatatype: MPI_Datatype { get }
}
extension Float: MPIElement { static var mpiDatatype: MPI_Datatype { ligand_mpi_float() } }
extension Double: MPIElement { static var mpiDatatype: MPI_Datatype { ligand_mpi_double() } }
extension UInt8: MPIElement { static var mpiDatatype: MPI_Datatype { ligand_mpi_byte() } }
extension Int64: MPIElement { static var mpiDatatype: MPI_Datatype { ligand_mpi_int64() } }

/// COMM_WORLD of an OpenMPI job. Every MPI call returns its code (MPI_ERRORS_RETURN) and a
/// nonzero code becomes `CollectiveError.mpi`. MPI is initialised with MPI_THREAD_FUNNELED:
/// call it from the main thread only.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    private let comm: MPI_Comm
    /// A duplicate of COMM_WORLD for the library's own point-to-point traffic, so it never
    /// matches a user's `recv`.
    private let internalComm: MPI_Comm
    /// Largest element count passed to one MPI call; larger buffers go in chunks. Only
    /// lowered to exercise the chunked paths in tests.
    public var maxElementsPerCall = Int(Int32.max)

    nonisolated(unsafe) private static var shared: MPICommunicator?

    private init(rank: Int, size: Int, comm: MPI_Comm, internalComm: MPI_Comm) {
        self.rank = rank
        self.size = size
        self.comm = comm
        self.internalComm = internalComm
    }

    /// Initialises MPI once per process and returns COMM_WORLD.
    public static func initialize() throws -> MPICommunicator {
        if let s = shared { return s }
        var initialized: Int32 = 0
        try check(MPI_Initialized(&initialized), "MPI_Initialized")
        if initialized == 0 {
            var provided: Int32 = 0
            try check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        }
        let world: MPI_Comm = ligand_mpi_comm_world()
        try check(MPI_Comm_set_errhandler(world, ligand_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0
        var n: Int32 = 0
        try check(MPI_Comm_rank(world, &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(world, &n), "MPI_Comm_size")
        var dup: MPI_Comm?
        try check(MPI_Comm_dup(world, &dup), "MPI_Comm_dup")
        let c = MPICommunicator(rank: Int(r), size: Int(n), comm: world, internalComm: dup!)
        shared = c
        return c
    }

    /// Ends MPI for this process; no MPI call may follow. Waits for every rank first: a rank
    /// that aborts while others are inside MPI_Finalize can crash or hang OpenMPI 4.1's mpirun.
    public func finalize() throws {
        var finalized: Int32 = 0
        try Self.check(MPI_Finalized(&finalized), "MPI_Finalized")
        guard finalized == 0 else { return }
        try barrier()
        var dup: MPI_Comm? = internalComm
        try Self.check(MPI_Comm_free(&dup), "MPI_Comm_free")
        try Self.check(MPI_Finalize(), "MPI_Finalize")
        Self.shared = nil
    }

    public var processorName: String {
        var buf = [CChar](repeating: 0, count: Int(ligand_mpi_max_processor_name()) + 1)
        var len: Int32 = 0
        guard MPI_Get_processor_name(&buf, &len) == ligand_mpi_success() else { return "unknown" }
        return String(decoding: buf[0..<Int(len)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The MPI library's own version line (callable before initialisation).
    public static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: Int(ligand_mpi_max_library_version_string()) + 1)
        var len: Int32 = 0
        guard MPI_Get_library_version(&buf, &len) == ligand_mpi_success() else { return "unknown" }
        let text = String(decoding: buf[0..<Int(len)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != ligand_mpi_success() else { return }
        var buf = [CChar](repeating: 0, count: Int(ligand_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        let message: String
        if MPI_Error_string(code, &buf, &len) == ligand_mpi_success() {
            message = String(decoding: buf[0..<Int(len)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            message = "unknown MPI error"
        }
        throw CollectiveError.mpi(call: call, code: code, message: message)
    }

    /// Calls `body(offset, count)` for consecutive chunks of at most `maxElementsPerCall`.
    private func chunks(_ count: Int, _ body: (Int, Int32) throws -> Void) rethrows {
        var offset = 0
        while offset < count {
            let c = Swift.min(maxElementsPerCall, count - offset)
            try body(offset, Int32(c))
            offset += c
        }
    }

    // MARK: Communicator

    public func barrier() throws { try Self.check(MPI_Barrier(comm), "MPI_Barrier") }

    public func broadcast(_ buf: inout [Float], root: Int) throws { try bcast(&buf, root: root) }
    public func broadcast(_ buf: inout [Double], root: Int) throws { try bcast(&buf, root: root) }
    public func broadcast(_ buf: inout [UInt8], root: Int) throws { try bcast(&buf, root: root) }

    public func allreduce(_ buf: inout [Float], op: ReduceOp) throws { try allreduceInPlace(&buf, op: op) }
    public func allreduce(_ buf: inout [Double], op: ReduceOp) throws { try allreduceInPlace(&buf, op: op) }

    public func reduce(_ buf: inout [Float], op: ReduceOp, root: Int) throws { try reduceInPlace(&buf, op: op, root: root) }
    public func reduce(_ buf: inout [Double], op: ReduceOp, root: Int) throws { try reduceInPlace(&buf, op: op, root: root) }

    public func allgather(_ send: [Float]) throws -> [Float] { try allgatherEqual(send) }
    public func allgather(_ send: [Double]) throws -> [Double] { try allgatherEqual(send) }

    public func allgatherv(_ send: [Float]) throws -> [[Float]] { try allgathervAll(send, counts: try allCounts(send.count)) }
    public func allgatherv(_ send: [Double]) throws -> [[Double]] { try allgathervAll(send, counts: try allCounts(send.count)) }
    public func allgatherv(_ send: [UInt8]) throws -> [[UInt8]] { try allgathervAll(send, counts: try allCounts(send.count)) }

    public func gather(_ send: [Float], root: Int) throws -> [[Float]]? { try gatherTo(send, root: root) }
    public func gather(_ send: [Double], root: Int) throws -> [[Double]]? { try gatherTo(send, root: root) }

    public func send(_ buf: [Double], to dest: Int, tag: Int) throws {
        try checkRank(dest, "send")
        try sendChunked(buf, to: dest, tag: tag, on: comm)
    }

    public func recv(from source: Int, tag: Int) throws -> [Double] {
        try checkRank(source, "recv")
        return try recvChunked(from: source, tag: tag, on: comm)
    }

    public func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        _ = MPI_Abort(comm, code)
        exit(code)
    }

    // MARK: Implementations

    private func mpiOp(_ op: ReduceOp) -> MPI_Op {
        switch op {
        case .sum: return ligand_mpi_op_sum()
        case .max: return ligand_mpi_op_max()
        }
    }

    private static func uninitialized<T: MPIElement>(_ count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { _, n in n = count }
    }

    private func bcast<T: MPIElement>(_ buf: inout [T], root: Int) throws {
        try checkRank(root, "broadcast")
        // The count goes first so receivers need not know it.
        var n = [Int64(buf.count)]
        try Self.check(MPI_Bcast(&n, 1, Int64.mpiDatatype, Int32(root), comm), "MPI_Bcast")
        let count = Int(n[0])
        if rank != root { buf = Self.uninitialized(count) }
        try buf.withUnsafeMutableBufferPointer { p in
            try chunks(count) { off, c in
                try Self.check(MPI_Bcast(p.baseAddress! + off, c, T.mpiDatatype, Int32(root), comm), "MPI_Bcast")
            }
        }
    }

    private func allreduceInPlace<T: MPIElement>(_ buf: inout [T], op: ReduceOp) throws {
        let count = buf.count
        try buf.withUnsafeMutableBufferPointer { p in
            try chunks(count) { off, c in
                try Self.check(MPI_Allreduce(ligand_mpi_in_place(), p.baseAddress! + off, c, T.mpiDatatype, mpiOp(op), comm), "MPI_Allreduce")
            }
        }
    }

    private func reduceInPlace<T: MPIElement>(_ buf: inout [T], op: ReduceOp, root: Int) throws {
        try checkRank(root, "reduce")
        let count = buf.count
        if rank == root {
            try buf.withUnsafeMutableBufferPointer { p in
                try chunks(count) { off, c in
                    try Self.check(MPI_Reduce(ligand_mpi_in_place(), p.baseAddress! + off, c, T.mpiDatatype, mpiOp(op), Int32(root), comm), "MPI_Reduce")
                }
            }
        } else {
            try buf.withUnsafeBufferPointer { p in
                try chunks(count) { off, c in
                    try Self.check(MPI_Reduce(p.baseAddress! + off, nil, c, T.mpiDatatype, mpiOp(op), Int32(root), comm), "MPI_Reduce")
                }
            }
        }
    }

    /// Every rank's element count, in rank order.
    private func allCounts(_ mine: Int) throws -> [Int] {
        var send = Int64(mine)
        var recv = [Int64](repeating: 0, count: size)
        try Self.check(MPI_Allgather(&send, 1, Int64.mpiDatatype, &recv, 1, Int64.mpiDatatype, comm), "MPI_Allgather")
        return recv.map { Int($0) }
    }

    private func allgatherEqual<T: MPIElement>(_ send: [T]) throws -> [T] {
        let counts = try allCounts(send.count)
        guard counts.allSatisfy({ $0 == send.count }) else {
            throw CollectiveError.countMismatch(operation: "allgather", counts: counts)
        }
        let n = send.count
        if n == 0 { return [] }
        if n * size <= maxElementsPerCall {
            var out: [T] = Self.uninitialized(n * size)
            try send.withUnsafeBufferPointer { s in
                try out.withUnsafeMutableBufferPointer { o in
                    try Self.check(MPI_Allgather(s.baseAddress!, Int32(n), T.mpiDatatype, o.baseAddress!, Int32(n), T.mpiDatatype, comm), "MPI_Allgather")
                }
            }
            return out
        }
        return Array(try allgathervAll(send, counts: counts).joined())
    }

    private func allgathervAll<T: MPIElement>(_ send: [T], counts: [Int]) throws -> [[T]] {
        let total = counts.reduce(0, +)
        if total <= maxElementsPerCall {
            var flat: [T] = Self.uninitialized(Swift.max(total, 1))
            let recvCounts = counts.map { Int32($0) }
            var displs = [Int32](repeating: 0, count: size)
            for r in 1..<Swift.max(size, 1) { displs[r] = displs[r - 1] + recvCounts[r - 1] }
            var one: [T] = Self.uninitialized(1)
            try one.withUnsafeMutableBufferPointer { fallback in
                try send.withUnsafeBufferPointer { s in
                    try flat.withUnsafeMutableBufferPointer { f in
                        try Self.check(MPI_Allgatherv(s.baseAddress ?? UnsafePointer(fallback.baseAddress!), Int32(send.count), T.mpiDatatype,
                                                      f.baseAddress!, recvCounts, displs, T.mpiDatatype, comm), "MPI_Allgatherv")
                    }
                }
            }
            return (0..<size).map { r in Array(flat[Int(displs[r])..<(Int(displs[r]) + counts[r])]) }
        }
        // Too large for one call: each rank broadcasts its part in chunks.
        var out = [[T]]()
        out.reserveCapacity(size)
        for r in 0..<size {
            var part = r == rank ? send : []
            try bcast(&part, root: r)
            out.append(part)
        }
        return out
    }

    private func gatherTo<T: MPIElement>(_ send: [T], root: Int) throws -> [[T]]? {
        try checkRank(root, "gather")
        let counts = try allCounts(send.count)
        let total = counts.reduce(0, +)
        if total <= maxElementsPerCall {
            let recvCounts = counts.map { Int32($0) }
            var displs = [Int32](repeating: 0, count: size)
            for r in 1..<Swift.max(size, 1) { displs[r] = displs[r - 1] + recvCounts[r - 1] }
            var flat: [T] = Self.uninitialized(rank == root ? Swift.max(total, 1) : 1)
            var one: [T] = Self.uninitialized(1)
            try one.withUnsafeMutableBufferPointer { fallback in
                try send.withUnsafeBufferPointer { s in
                    try flat.withUnsafeMutableBufferPointer { f in
                        try Self.check(MPI_Gatherv(s.baseAddress ?? UnsafePointer(fallback.baseAddress!), Int32(send.count), T.mpiDatatype,
                                                   f.baseAddress!, recvCounts, displs, T.mpiDatatype, Int32(root), comm), "MPI_Gatherv")
                    }
                }
            }
            guard rank == root else { return nil }
            return (0..<size).map { r in Array(flat[Int(displs[r])..<(Int(displs[r]) + counts[r])]) }
        }
        // Too large for one call: point-to-point in chunks on the internal communicator.
        let tag = 1
        if rank != root {
            try sendChunked(send, to: root, tag: tag, on: internalComm)
            return nil
        }
        return try (0..<size).map { r in r == rank ? send : try recvChunked(from: r, tag: tag, on: internalComm) }
    }

    /// A count header, then the payload in chunks (same source and tag keep MPI's order).
    private func sendChunked<T: MPIElement>(_ buf: [T], to dest: Int, tag: Int, on c: MPI_Comm) throws {
        var n = Int64(buf.count)
        try Self.check(MPI_Send(&n, 1, Int64.mpiDatatype, Int32(dest), Int32(tag), c), "MPI_Send")
        try buf.withUnsafeBufferPointer { p in
            try chunks(buf.count) { off, cnt in
                try Self.check(MPI_Send(p.baseAddress! + off, cnt, T.mpiDatatype, Int32(dest), Int32(tag), c), "MPI_Send")
            }
        }
    }

    private func recvChunked<T: MPIElement>(from source: Int, tag: Int, on c: MPI_Comm) throws -> [T] {
        var n: Int64 = 0
        try Self.check(MPI_Recv(&n, 1, Int64.mpiDatatype, Int32(source), Int32(tag), c, ligand_mpi_status_ignore()), "MPI_Recv")
        let count = Int(n)
        var out: [T] = Self.uninitialized(count)
        try out.withUnsafeMutableBufferPointer { p in
            try chunks(count) { off, cnt in
                try Self.check(MPI_Recv(p.baseAddress! + off, cnt, T.mpiDatatype, Int32(source), Int32(tag), c, ligand_mpi_status_ignore()), "MPI_Recv")
            }
        }
        return out
    }
}
