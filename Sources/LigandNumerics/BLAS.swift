import CBLAS

/// Thin, checked wrappers over OpenBLAS's cblas for row-major matrices.
public enum BLAS {
    /// Threads OpenBLAS uses for one call. Ligand keeps it at 1 (see `configured`); only benchmarks change it.
    public static var threads: Int {
        get { _ = configured; return Int(openblas_get_num_threads()) }
        set { _ = configured; openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// On first use, OPENBLAS_NUM_THREADS becomes the engine's worker count and BLAS goes single-threaded:
    /// a multi-threaded OpenBLAS call may round differently from a single-threaded one, and the rank
    /// layout changes the threads per rank, so only the engine's own fixed-chunk parallelism keeps results
    /// bitwise identical for -np 1, 2, 4.
    public static let configured: Void = {
        Parallel.workers = max(1, Int(openblas_get_num_threads()))
        openblas_set_num_threads(1)
        // Every layer allocates its outputs afresh: served from glibc's default mmap (128 KiB and up), each step's
        // activations were fresh zero pages, a page fault apiece (12% of a ViT step).
        ligand_keep_heap()
    }()

    /// C ← α·op(A)·op(B) + β·C, row-major; op(A) is m×k, op(B) is k×n, C is m×n.
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = configured
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Float64 twin of `sgemm`, for statistics that must accumulate in double precision.
    @inline(__always)
    public static func dgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                             b: UnsafePointer<Double>, ldb: Int,
                             beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
        _ = configured
        if m == 0 || n == 0 { return }
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// op(A)·op(B) for 2-D tensors, through sgemm or dgemm.
public func matmul<S: FloatScalar>(_ a: TensorOf<S>, _ b: TensorOf<S>, transA: Bool = false, transB: Bool = false) -> TensorOf<S> {
    precondition(a.rank == 2 && b.rank == 2, "matmul needs 2-D tensors, got \(a.shape) and \(b.shape)")
    let m = transA ? a.shape[1] : a.shape[0]
    let k = transA ? a.shape[0] : a.shape[1]
    let kb = transB ? b.shape[1] : b.shape[0]
    let n = transB ? b.shape[0] : b.shape[1]
    precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")")
    var c = TensorOf<S>(zeros: [m, n])
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            c.withUnsafeMutableBufferPointer { pc in
                S.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1,
                       a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                       beta: 0, c: pc.baseAddress!, ldc: n)
            }
        }
    }
    return c
}

/// A row-major Float64 matrix, the type of every statistic and linear-algebra result.
public struct Matrix: Equatable, Sendable {
    public let rows: Int
    public let cols: Int
    public var data: [Double]

    public init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "matrix \(rows)×\(cols) needs \(rows * cols) values, got \(data.count)")
        self.rows = rows; self.cols = cols; self.data = data
    }
    public init(zeros rows: Int, _ cols: Int) { self.init(rows: rows, cols: cols, data: [Double](repeating: 0, count: rows * cols)) }
    public static func identity(_ n: Int) -> Matrix {
        var m = Matrix(zeros: n, n)
        for i in 0..<n { m.data[i * n + i] = 1 }
        return m
    }
    public subscript(_ i: Int, _ j: Int) -> Double {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }
    public var transposed: Matrix {
        var t = Matrix(zeros: cols, rows)
        for i in 0..<rows { for j in 0..<cols { t.data[j * rows + i] = data[i * cols + j] } }
        return t
    }
    public init(_ t: Tensor) {
        precondition(t.rank == 2)
        self.init(rows: t.shape[0], cols: t.shape[1], data: t.storage.map(Double.init))
    }
    public var tensor: Tensor { Tensor(shape: [rows, cols], storage: data.map { Float($0) }) }

    /// op(self)·op(other) through dgemm.
    public func multiplied(by other: Matrix, transSelf: Bool = false, transOther: Bool = false) -> Matrix {
        let m = transSelf ? cols : rows, k = transSelf ? rows : cols
        let k2 = transOther ? other.cols : other.rows, n = transOther ? other.rows : other.cols
        precondition(k == k2, "matrix inner dimensions differ: \(rows)×\(cols) · \(other.rows)×\(other.cols)")
        var c = Matrix(zeros: m, n)
        data.withUnsafeBufferPointer { pa in
            other.data.withUnsafeBufferPointer { pb in
                c.data.withUnsafeMutableBufferPointer { pc in
                    BLAS.dgemm(transA: transSelf, transB: transOther, m: m, n: n, k: k,
                               a: pa.baseAddress!, lda: cols, b: pb.baseAddress!, ldb: other.cols,
                               c: pc.baseAddress!, ldc: n)
                }
            }
        }
        return c
    }
    public static func * (a: Matrix, b: Matrix) -> Matrix { a.multiplied(by: b) }
    public static func + (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        return Matrix(rows: a.rows, cols: a.cols, data: zip(a.data, b.data).map { $0 + $1 })
    }
    public static func - (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        return Matrix(rows: a.rows, cols: a.cols, data: zip(a.data, b.data).map { $0 - $1 })
    }
    /// Frobenius norm.
    public var norm: Double { data.reduce(0) { $0 + $1 * $1 }.squareRoot() }
}
