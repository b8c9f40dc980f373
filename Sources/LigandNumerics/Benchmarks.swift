import Foundation

/// Micro-benchmarks reported by `ligand bench`.
public enum Benchmarks {
    /// Throughput of BLAS.sgemm on size×size row-major matrices, in GFLOP/s (2·size³ per product):
    /// the best of `repeats` timed runs after one warm-up run, using `threads` OpenBLAS threads.
    /// BLAS.threads is restored afterwards.
    public static func benchmarkSgemm(size: Int, threads: Int, repeats: Int) -> Double {
        let n = max(1, size)
        let saved = BLAS.threads
        BLAS.threads = threads
        defer { BLAS.threads = saved }

        var rng = SeededRNG(seed: 0x5EED, stream: "benchmarkSgemm")
        let a = Tensor.randomNormal([n, n], rng: &rng)
        let b = Tensor.randomNormal([n, n], rng: &rng)
        var c = Tensor(zeros: [n, n])
        var best = Double.infinity
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    for run in 0...max(1, repeats) {
                        let start = DispatchTime.now().uptimeNanoseconds
                        BLAS.sgemm(m: n, n: n, k: n, a: pa.baseAddress!, lda: n, b: pb.baseAddress!, ldb: n,
                                   c: pc.baseAddress!, ldc: n)
                        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                        if run > 0 { best = min(best, seconds) }
                    }
                }
            }
        }
        return 2 * Double(n) * Double(n) * Double(n) / max(best, 1e-12) / 1e9
    }
}
