import Dispatch

/// Data-parallel loops over independent chunks, with as many workers as BLAS has threads.
public enum Parallel {
    /// Worker threads of the engine's loops: OPENBLAS_NUM_THREADS at start-up (see `BLAS.configured`).
    nonisolated(unsafe) public static var workers: Int = 1

    /// Sets the worker count (and leaves BLAS single-threaded).
    public static func setWorkers(_ n: Int) { _ = BLAS.configured; workers = max(1, n) }

    /// Runs body(i) for i in 0..<count on `workers` threads (static round-robin schedule). BLAS runs
    /// single-threaded inside, so every GEMM sees the same call whatever the worker count.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        _ = BLAS.configured
        let saved = BLAS.threads
        let workers = min(Parallel.workers, count)
        if saved != 1 { BLAS.threads = 1 }
        defer { if saved != 1 { BLAS.threads = saved } }
        if workers <= 1 { for i in 0..<count { body(i) }; return }
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
