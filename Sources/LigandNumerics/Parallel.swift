import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel loops over independent chunks, with as many workers as BLAS has threads.
public enum Parallel {
    /// Worker threads of the engine's loops: OPENBLAS_NUM_THREADS at start-up (see `BLAS.configured`).
    nonisolated(unsafe) public static var workers: Int = 1

    /// Sets the worker count (and leaves BLAS single-threaded).
    public static func setWorkers(_ n: Int) { _ = BLAS.configured; workers = max(1, n) }

    /// Runs body(i) for i in 0..<count on `workers` threads (static round-robin schedule: worker w takes
    /// w, w + workers, …). BLAS runs single-threaded inside, so every GEMM sees the same call whatever the
    /// worker count.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        _ = BLAS.configured
        let saved = BLAS.threads
        let workers = min(Parallel.workers, count)
        if saved != 1 { BLAS.threads = 1 }
        defer { if saved != 1 { BLAS.threads = saved } }
        if workers <= 1 { for i in 0..<count { body(i) }; return }
        if let pool = WorkerPool.acquire(helpers: Parallel.workers - 1) {
            defer { pool.release() }
            pool.run(count, workers: workers, body)
            return
        }
        // Another thread holds the pool (ranks of the in-process communicator): the same schedule on GCD.
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < count { body(i); i += workers }
            }
        }
    }
}

extension Parallel {
    /// Rows per chunk of the elementwise loops: fixed, so per-chunk partial sums (and results) never depend on the worker count.
    public static let rowChunk = 2048

    /// body(chunk, lo, hi) over [0, rows) cut into fixed chunks of `rowChunk` rows.
    public static func forEachChunk(rows: Int, _ body: (Int, Int, Int) -> Void) {
        let chunks = (rows + rowChunk - 1) / rowChunk
        forEach(chunks) { c in body(c, c * rowChunk, min(rows, (c + 1) * rowChunk)) }
    }

    public static func chunkCount(rows: Int) -> Int { (rows + rowChunk - 1) / rowChunk }
}

/// Helper threads that live across loops and spin briefly between them, so a loop starts with an atomic store
/// instead of a thread wake-up: GCD's `concurrentPerform` paid a futex wake-up and a context switch for each of
/// the ~20 loops of an MLP training step (6% of a 2-thread step in the kernel's scheduler).
final class WorkerPool: @unchecked Sendable {
    let helpers: Int
    /// Bumped (release) to publish a job; each helper runs its share, then decrements `pending` (release).
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // The job; written by the caller only while every helper is idle (pending == 0).
    private var job: ((Int) -> Void)?
    private var count = 0, workers = 0

    /// A helper waits for the next loop by polling `generation` for up to `spinNanoseconds`, then polling between
    /// sched_yield calls up to `yieldNanoseconds` (wall time, so a busy machine ends the wait as soon as an idle one:
    /// longer than the gaps between a step's loops, yet the core goes to any other runnable thread), then sleeping on `wake`.
    private static let spinNanoseconds: UInt64 = 100_000, yieldNanoseconds: UInt64 = 1_000_000

    private static let shared = Mutex<(pool: WorkerPool?, inUse: Bool)>((nil, false))

    /// The process's pool with `helpers` helper threads (replacing one of another size), or nil while another thread uses it.
    static func acquire(helpers: Int) -> WorkerPool? {
        shared.withLock { state in
            if state.inUse { return nil }
            if state.pool?.helpers != helpers { state.pool?.stop(); state.pool = WorkerPool(helpers: helpers) }
            state.inUse = true
            return state.pool
        }
    }

    func release() { Self.shared.withLock { $0.inUse = false } }

    private init(helpers: Int) {
        self.helpers = helpers
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        for w in 1...helpers {
            // Each helper keeps the pool alive until `stop`; the stack of a main thread, as OpenBLAS's kernels may use it.
            let thread = Thread { self.helperLoop(w) }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// body(i) for i in 0..<count: the caller runs share 0, helper w share w (helpers at or past `workers` idle).
    func run(_ count: Int, workers: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            job = body; self.count = count; self.workers = workers
            pending.store(helpers, ordering: .relaxed)
            pthread_mutex_lock(mutex)
            generation.add(1, ordering: .releasing)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
            var i = 0
            while i < count { body(i); i += workers }
            while pending.load(ordering: .acquiring) > 0 {}
            job = nil
        }
    }

    private func stop() {
        pthread_mutex_lock(mutex)
        stopping.store(true, ordering: .relaxed)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
    }

    private func helperLoop(_ w: Int) {
        var seen = 0
        while true {
            var g = generation.load(ordering: .acquiring), polls = 0
            let start = DispatchTime.now().uptimeNanoseconds
            var waited: UInt64 = 0
            while g == seen && waited < Self.yieldNanoseconds {
                polls += 1
                // The clock (a vDSO call, tens of nanoseconds) is read after every yield and every 256 plain polls.
                if waited >= Self.spinNanoseconds { sched_yield() }
                if waited >= Self.spinNanoseconds || polls & 255 == 0 { waited = DispatchTime.now().uptimeNanoseconds &- start }
                g = generation.load(ordering: .acquiring)
            }
            if g == seen {
                pthread_mutex_lock(mutex)
                while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wake, mutex) }
                pthread_mutex_unlock(mutex)
                g = generation.load(ordering: .acquiring)
            }
            seen = g
            if stopping.load(ordering: .relaxed) { return }
            if w < workers, let job {
                var i = w
                while i < count { job(i); i += workers }
            }
            pending.subtract(1, ordering: .releasing)
        }
    }
}
