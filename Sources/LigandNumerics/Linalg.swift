import CBLAS
import Foundation

/// Why a dense linear-algebra operation refused its input or failed.
public enum LinalgError: Error, Equatable, CustomStringConvertible {
    /// An entry is NaN or infinite.
    case nonFinite(operation: String, rows: Int, cols: Int, row: Int, col: Int)
    case notSquare(operation: String, rows: Int, cols: Int)
    case shapeMismatch(operation: String, aRows: Int, aCols: Int, bRows: Int, bCols: Int)
    case invalidArgument(operation: String, message: String)
    /// LAPACK's info < 0 (an illegal argument) or a convergence failure (info > 0).
    case lapackFailed(operation: String, routine: String, rows: Int, cols: Int, info: Int)
    case notPositiveDefinite(operation: String, n: Int, info: Int)
    case singular(operation: String, n: Int, info: Int)
    /// An eigenvalue of A + ridge·I is at or below the positivity floor.
    case notPositiveEigenvalue(operation: String, n: Int, eigenvalue: Double, floor: Double, ridge: Double, suggestedRidge: Double)
    /// A clearly negative eigenvalue: the matrix is not positive semidefinite.
    case indefinite(operation: String, n: Int, eigenvalue: Double, maxEigenvalue: Double, ridge: Double)

    public var description: String {
        switch self {
        case let .nonFinite(op, r, c, i, j):
            return "\(op): \(r)×\(c) matrix has a non-finite entry (NaN or infinity) at row \(i), column \(j)"
        case let .notSquare(op, r, c):
            return "\(op): needs a square matrix, got \(r)×\(c)"
        case let .shapeMismatch(op, ar, ac, br, bc):
            return "\(op): shapes do not fit: \(ar)×\(ac) and \(br)×\(bc)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .lapackFailed(op, routine, r, c, info):
            let why = info < 0 ? "argument \(-info) was illegal" : "the algorithm did not converge"
            return "\(op): LAPACK \(routine) failed on a \(r)×\(c) matrix (info = \(info): \(why))"
        case let .notPositiveDefinite(op, n, info):
            return "\(op): \(n)×\(n) matrix is singular or not positive definite; add a ridge "
                + "(LAPACK dpotrf info = \(info): leading minor \(info) is not positive)"
        case let .singular(op, n, info):
            return "\(op): \(n)×\(n) matrix is singular (LAPACK dgesv info = \(info): U[\(info - 1), \(info - 1)] is exactly zero)"
        case let .notPositiveEigenvalue(op, n, ev, floor, ridge, suggested):
            return "\(op): \(n)×\(n) matrix is not positive definite: eigenvalue \(ev) of A + ridge·I "
                + "(ridge = \(ridge)) is at or below the floor \(floor); add a ridge, e.g. ridge = \(suggested)"
        case let .indefinite(op, n, ev, maxEv, ridge):
            return "\(op): \(n)×\(n) matrix is not positive semidefinite: eigenvalue \(ev) of A + ridge·I "
                + "(ridge = \(ridge), largest eigenvalue \(maxEv))"
        }
    }
}

extension LinalgError: LocalizedError {
    public var errorDescription: String? { description }
}

extension Matrix {
    /// Row and column of the first NaN or infinite entry, if any.
    public var firstNonFinite: (row: Int, col: Int)? {
        guard let k = data.firstIndex(where: { !$0.isFinite }) else { return nil }
        return (k / cols, k % cols)
    }

    /// (A + Aᵀ) / 2 of a square matrix.
    public var symmetrized: Matrix {
        precondition(rows == cols, "symmetrized needs a square matrix, got \(rows)×\(cols)")
        var s = self
        for i in 0..<rows {
            for j in (i + 1)..<cols {
                let v = 0.5 * (data[i * cols + j] + data[j * cols + i])
                s.data[i * cols + j] = v
                s.data[j * cols + i] = v
            }
        }
        return s
    }

    /// A square matrix with `d` on its diagonal.
    public static func diagonal(_ d: [Double]) -> Matrix {
        var m = Matrix(zeros: d.count, d.count)
        for (i, v) in d.enumerated() { m.data[i * d.count + i] = v }
        return m
    }

    /// Largest |self − other| entry; both must have the same shape.
    public func maxAbsDifference(_ other: Matrix) -> Double {
        precondition(rows == other.rows && cols == other.cols, "maxAbsDifference of \(rows)×\(cols) and \(other.rows)×\(other.cols)")
        var m = 0.0
        for i in 0..<data.count { m = Swift.max(m, Swift.abs(data[i] - other.data[i])) }
        return m
    }

    /// self with every column j multiplied by s[j].
    public func scalingColumns(by s: [Double]) -> Matrix {
        precondition(s.count == cols, "scalingColumns needs \(cols) factors, got \(s.count)")
        var m = self
        for i in 0..<rows { for j in 0..<cols { m.data[i * cols + j] *= s[j] } }
        return m
    }
}

/// Dense Float64 linear algebra through LAPACKE (row-major).
public enum Linalg {
    /// Eigenvalues below this fraction of the largest count as zero in square roots.
    public static let relativeEigenFloor = 1e-12
    /// Eigenvalues below −(this)·max|λ| mean the input is not positive semidefinite, not round-off.
    public static let indefiniteTolerance = 1e-8

    // MARK: checks

    static func checkFinite(_ a: Matrix, _ op: String) throws {
        if let p = a.firstNonFinite { throw LinalgError.nonFinite(operation: op, rows: a.rows, cols: a.cols, row: p.row, col: p.col) }
    }
    static func checkSquare(_ a: Matrix, _ op: String) throws {
        if a.rows != a.cols { throw LinalgError.notSquare(operation: op, rows: a.rows, cols: a.cols) }
    }
    static func checkSystem(_ a: Matrix, _ b: Matrix, _ op: String) throws {
        try checkSquare(a, op)
        if b.rows != a.rows { throw LinalgError.shapeMismatch(operation: op, aRows: a.rows, aCols: a.cols, bRows: b.rows, bCols: b.cols) }
        try checkFinite(a, op)
        try checkFinite(b, op)
    }
    @inline(__always) static func ch(_ c: Unicode.Scalar) -> CChar { CChar(UInt8(ascii: c)) }

    // MARK: decompositions

    /// Eigendecomposition of (A + Aᵀ)/2: ascending eigenvalues, eigenvectors as the columns of
    /// `vectors`, so A ≈ V·diag(λ)·Vᵀ.
    public static func symmetricEigen(_ a: Matrix) throws -> (values: [Double], vectors: Matrix) {
        _ = BLAS.configured
        let op = "symmetricEigen"
        try checkSquare(a, op)
        try checkFinite(a, op)
        let n = a.rows
        if n == 0 { return ([], Matrix(zeros: 0, 0)) }
        var v = a.symmetrized
        var w = [Double](repeating: 0, count: n)
        let info = v.data.withUnsafeMutableBufferPointer { pa in
            w.withUnsafeMutableBufferPointer { pw in
                LAPACKE_dsyevd(LAPACK_ROW_MAJOR, ch("V"), ch("U"), Int32(n), pa.baseAddress!, Int32(n), pw.baseAddress!)
            }
        }
        if info != 0 { throw LinalgError.lapackFailed(operation: op, routine: "dsyevd", rows: n, cols: n, info: Int(info)) }
        return (w, v)
    }

    /// Thin SVD of an m×n matrix: A ≈ U·diag(s)·Vᵀ with U m×k, s descending, Vᵀ k×n, k = min(m, n).
    public static func svd(_ a: Matrix) throws -> (u: Matrix, s: [Double], vt: Matrix) {
        _ = BLAS.configured
        let op = "svd"
        try checkFinite(a, op)
        let m = a.rows, n = a.cols, k = min(m, n)
        if k == 0 { return (Matrix(zeros: m, 0), [], Matrix(zeros: 0, n)) }
        var work = a
        var s = [Double](repeating: 0, count: k)
        var u = Matrix(zeros: m, k)
        var vt = Matrix(zeros: k, n)
        let info = work.data.withUnsafeMutableBufferPointer { pa in
            s.withUnsafeMutableBufferPointer { ps in
                u.data.withUnsafeMutableBufferPointer { pu in
                    vt.data.withUnsafeMutableBufferPointer { pv in
                        LAPACKE_dgesdd(LAPACK_ROW_MAJOR, ch("S"), Int32(m), Int32(n), pa.baseAddress!, Int32(n),
                                       ps.baseAddress!, pu.baseAddress!, Int32(k), pv.baseAddress!, Int32(n))
                    }
                }
            }
        }
        if info != 0 { throw LinalgError.lapackFailed(operation: op, routine: "dgesdd", rows: m, cols: n, info: Int(info)) }
        return (u, s, vt)
    }

    // MARK: matrix functions

    /// V·diag(f(λ))·Vᵀ, symmetrised so round-off cannot break symmetry.
    static func spectralFunction(_ v: Matrix, _ f: [Double]) -> Matrix {
        v.scalingColumns(by: f).multiplied(by: v, transOther: true).symmetrized
    }

    /// Eigendecomposition of A + ridge·I with the floor and indefiniteness checks shared by the roots.
    static func shiftedEigen(_ a: Matrix, ridge: Double, _ op: String) throws -> (values: [Double], vectors: Matrix, floor: Double) {
        try checkSquare(a, op)
        try checkFinite(a, op)
        guard ridge.isFinite && ridge >= 0 else {
            throw LinalgError.invalidArgument(operation: op, message: "ridge must be finite and ≥ 0, got \(ridge)")
        }
        var shifted = a
        if ridge != 0 { for i in 0..<a.rows { shifted.data[i * a.cols + i] += ridge } }
        let (w, v) = try symmetricEigen(shifted)
        let maxAbs = w.reduce(0) { max($0, abs($1)) }
        let floor = relativeEigenFloor * max(w.last ?? 0, 0)
        if let lo = w.first, lo < -indefiniteTolerance * maxAbs {
            throw LinalgError.indefinite(operation: op, n: a.rows, eigenvalue: lo, maxEigenvalue: w.last ?? 0, ridge: ridge)
        }
        return (w, v, floor)
    }

    /// Principal square root of a symmetric positive semidefinite A (+ ridge·I); eigenvalues below
    /// 1e-12·λ_max (round-off) are treated as zero.
    public static func sqrtm(_ a: Matrix, ridge: Double = 0) throws -> Matrix {
        let (w, v, floor) = try shiftedEigen(a, ridge: ridge, "sqrtm")
        if w.isEmpty { return Matrix(zeros: 0, 0) }
        return spectralFunction(v, w.map { $0 < floor ? 0 : $0.squareRoot() })
    }

    /// (A + ridge·I)^{-1/2} of a symmetric positive definite A; refuses eigenvalues at or below
    /// 1e-12·λ_max rather than amplifying noise.
    public static func invSqrtm(_ a: Matrix, ridge: Double = 0) throws -> Matrix {
        let op = "invSqrtm"
        let (w, v, floor) = try shiftedEigen(a, ridge: ridge, op)
        if w.isEmpty { return Matrix(zeros: 0, 0) }
        if let lo = w.first, lo <= floor {
            let scale = max(w.last ?? 0, 0)
            let suggested = scale > 0 ? 1e-6 * scale : 1e-6
            throw LinalgError.notPositiveEigenvalue(operation: op, n: a.rows, eigenvalue: lo, floor: floor,
                                                    ridge: ridge, suggestedRidge: ridge + suggested)
        }
        return spectralFunction(v, w.map { 1 / $0.squareRoot() })
    }

    // MARK: solves

    /// X with A·X = B for symmetric positive definite A, by Cholesky (the lower triangle of A is used).
    public static func solveSymmetricPositive(_ a: Matrix, _ b: Matrix) throws -> Matrix {
        _ = BLAS.configured
        let op = "solveSymmetricPositive"
        try checkSystem(a, b, op)
        let n = a.rows, nrhs = b.cols
        if n == 0 || nrhs == 0 { return Matrix(zeros: n, nrhs) }
        var l = a
        var x = b
        let info = l.data.withUnsafeMutableBufferPointer { pa in
            LAPACKE_dpotrf(LAPACK_ROW_MAJOR, ch("L"), Int32(n), pa.baseAddress!, Int32(n))
        }
        if info > 0 { throw LinalgError.notPositiveDefinite(operation: op, n: n, info: Int(info)) }
        if info < 0 { throw LinalgError.lapackFailed(operation: op, routine: "dpotrf", rows: n, cols: n, info: Int(info)) }
        let info2 = l.data.withUnsafeBufferPointer { pa in
            x.data.withUnsafeMutableBufferPointer { px in
                LAPACKE_dpotrs(LAPACK_ROW_MAJOR, ch("L"), Int32(n), Int32(nrhs), pa.baseAddress!, Int32(n),
                               px.baseAddress!, Int32(nrhs))
            }
        }
        if info2 != 0 { throw LinalgError.lapackFailed(operation: op, routine: "dpotrs", rows: n, cols: n, info: Int(info2)) }
        return x
    }

    /// X with A·X = B for a general square A, by LU with partial pivoting.
    public static func solve(_ a: Matrix, _ b: Matrix) throws -> Matrix {
        _ = BLAS.configured
        return try luSolve(a, b, "solve")
    }

    /// A⁻¹ of a general square matrix (LU solve against the identity).
    public static func inverse(_ a: Matrix) throws -> Matrix {
        _ = BLAS.configured
        try checkSquare(a, "inverse")
        return try luSolve(a, Matrix.identity(a.rows), "inverse")
    }

    static func luSolve(_ a: Matrix, _ b: Matrix, _ op: String) throws -> Matrix {
        try checkSystem(a, b, op)
        let n = a.rows, nrhs = b.cols
        if n == 0 || nrhs == 0 { return Matrix(zeros: n, nrhs) }
        var lu = a
        var x = b
        var ipiv = [Int32](repeating: 0, count: n)
        let info = lu.data.withUnsafeMutableBufferPointer { pa in
            x.data.withUnsafeMutableBufferPointer { px in
                ipiv.withUnsafeMutableBufferPointer { pp in
                    LAPACKE_dgesv(LAPACK_ROW_MAJOR, Int32(n), Int32(nrhs), pa.baseAddress!, Int32(n), pp.baseAddress!,
                                  px.baseAddress!, Int32(nrhs))
                }
            }
        }
        if info > 0 { throw LinalgError.singular(operation: op, n: n, info: Int(info)) }
        if info < 0 { throw LinalgError.lapackFailed(operation: op, routine: "dgesv", rows: n, cols: n, info: Int(info)) }
        return x
    }

    /// The orthogonal (semi-orthogonal if rectangular) matrix nearest to M in Frobenius norm: U·Vᵀ
    /// from M = U·Σ·Vᵀ — the γ → ∞ limit of the CCA map.
    public static func orthogonalProcrustes(_ m: Matrix) throws -> Matrix {
        let (u, _, vt) = try svd(m)
        if u.cols == 0 { return Matrix(zeros: m.rows, m.cols) }
        return u * vt
    }
}
