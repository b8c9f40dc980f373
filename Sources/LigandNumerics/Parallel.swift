import Dispatch

/// Data-parallel loops over independent chunks, with as many workers as BLAS has threads.
public enum Parallel {
    /// Runs body(i) for i in 0..<count on `BLAS.threads` workers (static round-robin schedule).
    /// BLAS runs single-threaded inside, even with one worker: every GEMM then sees the same call
    /// whatever the thread count, which keeps results bitwise independent of it.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let saved = BLAS.threads
        let workers = min(saved, count)
        BLAS.threads = 1
        defer { BLAS.threads = saved }
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
