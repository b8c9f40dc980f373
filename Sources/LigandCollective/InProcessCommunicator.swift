import Foundation

/// N ranks as N threads of one process, so the distributed algorithms run in unit tests
/// without mpirun.
///
/// Reductions combine the ranks' buffers element by element in rank order 0, 1, 2, ...,
/// in the buffer's own precision: Float32 sums accumulate in Float32 (like MPI_SUM on
/// MPI_FLOAT) and Float64 in Float64. With two ranks this equals OpenMPI bit for bit; with
/// more, MPI's own order may differ in the last bits — use `deterministicSum` where that matters.
///
/// An error thrown on one rank (or `abort`) poisons the group: every rank waiting in, or
/// later entering, a collective throws `CollectiveError.aborted`, so no test hangs. A rank
/// waiting for ranks that have already returned gets `CollectiveError.deadlock`.
public final class InProcessCommunicator: Communicator {
    public let rank: Int
    public var size: Int { group.size }
    private let group: InProcessGroup
    /// Counts this rank's exchanges, to alternate between the group's two slot sets.
    private var exchanges = 0

    init(rank: Int, group: InProcessGroup) {
        self.rank = rank
        self.group = group
    }

    /// One rank on the calling thread; `abort` prints and exits the process.
    public static func single() -> InProcessCommunicator {
        InProcessCommunicator(rank: 0, group: InProcessGroup(size: 1, managed: false))
    }

    /// Runs `body` on `size` threads, one per rank, and returns their results ordered by rank.
    /// If any rank throws (or aborts), the first error is rethrown once every rank has stopped.
    public static func run<T>(size: Int, _ body: @escaping (InProcessCommunicator) throws -> T) throws -> [T] {
        precondition(size > 0, "InProcessCommunicator.run needs at least one rank")
        let group = InProcessGroup(size: size, managed: true)
        let results = ResultBox<T>(size: size)
        for r in 0..<size {
            let comm = InProcessCommunicator(rank: r, group: group)
            let task = UncheckedTask {
                do {
                    let value = try body(comm)
                    results.set(r, value, lock: group.cond)
                    group.rankFinished(r, error: nil)
                } catch {
                    group.rankFinished(r, error: error)
                }
            }
            let thread = Thread { task.body() }
            thread.stackSize = 16 << 20
            thread.name = "ligand-rank-\(r)"
            thread.start()
        }
        group.waitUntilAllFinished()
        if let (_, error) = group.firstError { throw error }
        return results.values()
    }

    // MARK: Collectives

    public func barrier() throws { try group.barrier(operation: "barrier") }

    public func broadcast(_ buf: inout [Float], root: Int) throws { buf = try bcast(buf, root: root) }
    public func broadcast(_ buf: inout [Double], root: Int) throws { buf = try bcast(buf, root: root) }
    public func broadcast(_ buf: inout [UInt8], root: Int) throws { buf = try bcast(buf, root: root) }

    public func allreduce(_ buf: inout [Float], op: ReduceOp) throws { try allreduceSliced(&buf, op: op) }
    public func allreduce(_ buf: inout [Double], op: ReduceOp) throws { try allreduceSliced(&buf, op: op) }

    public func reduce(_ buf: inout [Float], op: ReduceOp, root: Int) throws {
        if let r = try reduceToRoot(buf, op: op, root: root) { buf = r }
    }
    public func reduce(_ buf: inout [Double], op: ReduceOp, root: Int) throws {
        if let r = try reduceToRoot(buf, op: op, root: root) { buf = r }
    }

    public func allgather(_ send: [Float]) throws -> [Float] { try allgatherEqual(send) }
    public func allgather(_ send: [Double]) throws -> [Double] { try allgatherEqual(send) }

    public func allgatherv(_ send: [Float]) throws -> [[Float]] { try exchange(send) }
    public func allgatherv(_ send: [Double]) throws -> [[Double]] { try exchange(send) }
    public func allgatherv(_ send: [UInt8]) throws -> [[UInt8]] { try exchange(send) }

    public func gather(_ send: [Float], root: Int) throws -> [[Float]]? { try gatherTo(send, root: root) }
    public func gather(_ send: [Double], root: Int) throws -> [[Double]]? { try gatherTo(send, root: root) }

    public func send(_ buf: [Double], to dest: Int, tag: Int) throws {
        try checkRank(dest, "send")
        try group.post(buf, from: rank, to: dest, tag: tag)
    }

    public func recv(from source: Int, tag: Int) throws -> [Double] {
        try checkRank(source, "recv")
        return try group.take(from: source, to: rank, tag: tag)
    }

    public func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        guard group.managed else { exit(code) }
        group.rankFinished(rank, error: CollectiveError.aborted(rank: rank, message: message))
        // The thread cannot return from a Never function; it parks for good, and `run`
        // already counts it as finished.
        let never = DispatchSemaphore(value: 0)
        while true { never.wait() }
    }

    // MARK: Building blocks

    /// Every rank deposits `value` and receives all ranks' values in rank order.
    private func exchange<V>(_ value: V) throws -> [V] {
        let set = exchanges & 1
        exchanges += 1
        return try group.exchange(value, rank: rank, set: set).map { $0 as! V }
    }

    private func bcast<T>(_ buf: [T], root: Int) throws -> [T] {
        try checkRank(root, "broadcast")
        let all: [[T]?] = try exchange(rank == root ? buf : nil)
        return all[root]!
    }

    private func requireEqualCounts<T>(_ all: [[T]], _ operation: String) throws -> Int {
        let counts = all.map(\.count)
        guard let n = counts.first, counts.allSatisfy({ $0 == n }) else {
            throw CollectiveError.countMismatch(operation: operation, counts: counts)
        }
        return n
    }

    /// Rank r combines slice r of every buffer, then the slices are exchanged: the per-element
    /// order stays rank order while the work is spread over the threads.
    private func allreduceSliced<T: BinaryFloatingPoint>(_ buf: inout [T], op: ReduceOp) throws {
        if size == 1 { return }
        let inputSet = exchanges & 1
        let part = try reduceOwnSlice(buf, op: op)
        let parts = try exchange(part)
        // Every rank has finished reading the inputs (and dropped its references to them), so
        // once this rank's slot lets go, `buf` is unique and is overwritten without a copy.
        group.clear(set: inputSet, rank: rank)
        buf.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for p in parts {
                p.withUnsafeBufferPointer { src in
                    if src.count > 0 { (out.baseAddress! + offset).update(from: src.baseAddress!, count: src.count) }
                }
                offset += p.count
            }
        }
    }

    private func reduceOwnSlice<T: BinaryFloatingPoint>(_ buf: [T], op: ReduceOp) throws -> [T] {
        let all = try exchange(buf)
        let n = try requireEqualCounts(all, "allreduce")
        return combine(all, range: blockRange(count: n, parts: size, part: rank), op: op)
    }

    private func reduceToRoot<T: BinaryFloatingPoint>(_ buf: [T], op: ReduceOp, root: Int) throws -> [T]? {
        try checkRank(root, "reduce")
        let all = try exchange(buf)
        let n = try requireEqualCounts(all, "reduce")
        guard rank == root else { return nil }
        return combine(all, range: 0..<n, op: op)
    }

    private func combine<T: BinaryFloatingPoint>(_ all: [[T]], range: Range<Int>, op: ReduceOp) -> [T] {
        var acc = Array(all[0][range])
        acc.withUnsafeMutableBufferPointer { a in
            for r in 1..<Swift.max(1, all.count) {
                all[r].withUnsafeBufferPointer { b in
                    let base = b.baseAddress! + range.lowerBound
                    switch op {
                    case .sum: for i in 0..<a.count { a[i] += base[i] }
                    case .max: for i in 0..<a.count where base[i] > a[i] { a[i] = base[i] }
                    }
                }
            }
        }
        return acc
    }

    private func allgatherEqual<T>(_ send: [T]) throws -> [T] {
        let all = try exchange(send)
        _ = try requireEqualCounts(all, "allgather")
        return Array(all.joined())
    }

    private func gatherTo<T>(_ send: [T], root: Int) throws -> [[T]]? {
        try checkRank(root, "gather")
        let all = try exchange(send)
        return rank == root ? all : nil
    }
}

/// The state the ranks of one in-process group share, guarded by one condition variable.
final class InProcessGroup: @unchecked Sendable {
    let size: Int
    /// True inside `InProcessCommunicator.run`: abort then poisons instead of exiting.
    let managed: Bool
    let cond = NSCondition()

    private var arrived = 0
    private var generation = 0
    private var finished = Set<Int>()
    private var poison: CollectiveError?
    private(set) var firstError: (rank: Int, error: Error)?
    private var slots: [[Any?]]
    private var mailboxes: [MailKey: [[Double]]] = [:]

    private struct MailKey: Hashable { let from: Int, to: Int, tag: Int }

    init(size: Int, managed: Bool) {
        self.size = size
        self.managed = managed
        slots = [[Any?]](repeating: [Any?](repeating: nil, count: size), count: 2)
    }

    /// Records that a rank stopped (returned, threw or aborted); an error poisons the group.
    func rankFinished(_ rank: Int, error: Error?) {
        cond.lock()
        defer { cond.unlock() }
        finished.insert(rank)
        if let error {
            if firstError == nil { firstError = (rank, error) }
            if poison == nil {
                if let e = error as? CollectiveError { poison = e.asPoison(rank: rank) } else {
                    poison = .aborted(rank: rank, message: "\(error)")
                }
            }
        }
        cond.broadcast()
    }

    func waitUntilAllFinished() {
        cond.lock()
        while finished.count < size { cond.wait() }
        cond.unlock()
    }

    /// Generation-counting barrier; `cond` must NOT be held by the caller.
    func barrier(operation: String) throws {
        cond.lock()
        defer { cond.unlock() }
        try barrierLocked(operation: operation)
    }

    private func barrierLocked(operation: String) throws {
        if let p = poison { throw p }
        let gen = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            cond.broadcast()
            return
        }
        while generation == gen {
            if let p = poison { throw p }
            if arrived + finished.count >= size {
                let e = CollectiveError.deadlock(operation: operation, waiting: arrived, finished: finished.count)
                poison = e
                cond.broadcast()
                throw e
            }
            cond.wait()
        }
    }

    /// Two slot sets alternate: a rank can only overwrite set s two exchanges later, after a
    /// barrier that every rank reaches only once it has read set s.
    func exchange(_ value: Any, rank: Int, set: Int) throws -> [Any] {
        cond.lock()
        defer { cond.unlock() }
        if let p = poison { throw p }
        slots[set][rank] = value
        try barrierLocked(operation: "collective")
        return slots[set].map { $0! }
    }

    func clear(set: Int, rank: Int) {
        cond.lock()
        slots[set][rank] = nil
        cond.unlock()
    }

    func post(_ buf: [Double], from: Int, to: Int, tag: Int) throws {
        cond.lock()
        defer { cond.unlock() }
        if let p = poison { throw p }
        mailboxes[MailKey(from: from, to: to, tag: tag), default: []].append(buf)
        cond.broadcast()
    }

    func take(from: Int, to: Int, tag: Int) throws -> [Double] {
        cond.lock()
        defer { cond.unlock() }
        let key = MailKey(from: from, to: to, tag: tag)
        while true {
            if let p = poison { throw p }
            if var queue = mailboxes[key], !queue.isEmpty {
                let first = queue.removeFirst()
                mailboxes[key] = queue.isEmpty ? nil : queue
                return first
            }
            if finished.contains(from) {
                let e = CollectiveError.deadlock(operation: "recv from rank \(from) with tag \(tag)", waiting: 1, finished: 1)
                poison = e
                cond.broadcast()
                throw e
            }
            cond.wait()
        }
    }
}

extension CollectiveError {
    /// What the other ranks see when `rank` failed with this error.
    fileprivate func asPoison(rank: Int) -> CollectiveError {
        switch self {
        case .aborted, .deadlock, .countMismatch: return self
        default: return .aborted(rank: rank, message: description)
        }
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    private var storage: [T?]
    init(size: Int) { storage = [T?](repeating: nil, count: size) }
    func set(_ r: Int, _ v: T, lock: NSCondition) {
        lock.lock(); storage[r] = v; lock.unlock()
    }
    func values() -> [T] { storage.map { $0! } }
}

/// Carries a non-Sendable closure onto a thread; the group's lock orders all shared access.
private final class UncheckedTask: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
