import XCTest
@testable import LigandNumerics

final class LinalgTests: XCTestCase {
    func randomSymmetric(_ n: Int, _ rng: inout SeededRNG) -> Matrix {
        let b = randomMatrix(n, n, &rng)
        return (b + b.transposed).symmetrized
    }

    /// B·Bᵀ + shift·I with B n×rank: positive definite when shift > 0, rank-deficient when 0.
    func randomSPD(_ n: Int, rank: Int, shift: Double, _ rng: inout SeededRNG) -> Matrix {
        let b = randomMatrix(n, rank, &rng)
        var a = b.multiplied(by: b, transOther: true)
        for i in 0..<n { a[i, i] += shift }
        return a.symmetrized
    }

    func randomOrthogonal(_ n: Int, _ rng: inout SeededRNG) throws -> Matrix {
        try Linalg.symmetricEigen(randomSymmetric(n, &rng)).vectors
    }

    func assertOrthonormalColumns(_ q: Matrix, _ tol: Double = 1e-10, file: StaticString = #filePath, line: UInt = #line) {
        let g = q.multiplied(by: q, transSelf: true)
        XCTAssertLessThan(g.maxAbsDifference(.identity(q.cols)), tol, "columns not orthonormal", file: file, line: line)
    }

    func testSymmetricEigenReconstructs() throws {
        var rng = SeededRNG(seed: 10, stream: "eigen")
        for n in [1, 2, 3, 7, 20, 64, 129] {
            let a = randomSymmetric(n, &rng)
            let (w, v) = try Linalg.symmetricEigen(a)
            XCTAssertEqual(w.count, n)
            XCTAssertEqual(v.rows, n); XCTAssertEqual(v.cols, n)
            XCTAssertEqual(w, w.sorted(), "eigenvalues must ascend")
            let rec = v.scalingColumns(by: w).multiplied(by: v, transOther: true)
            XCTAssertLessThan(relativeError(rec, a), 1e-5, "n = \(n)")
            assertOrthonormalColumns(v)
            // Each column is an eigenvector: A v = λ v.
            let av = a * v
            XCTAssertLessThan(relativeError(av, v.scalingColumns(by: w)), 1e-8)
        }
    }

    func testSymmetricEigenSymmetrisesInput() throws {
        var rng = SeededRNG(seed: 11, stream: "eigen-asym")
        let a = randomMatrix(12, 12, &rng)
        let (w1, _) = try Linalg.symmetricEigen(a)
        let (w2, _) = try Linalg.symmetricEigen(a.symmetrized)
        for (x, y) in zip(w1, w2) { XCTAssertEqual(x, y, accuracy: 1e-10) }
        // Known spectrum: [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (w, _) = try Linalg.symmetricEigen(Matrix(rows: 2, cols: 2, data: [2, 1, 1, 2]))
        XCTAssertEqual(w[0], 1, accuracy: 1e-12); XCTAssertEqual(w[1], 3, accuracy: 1e-12)
        XCTAssertEqual(try Linalg.symmetricEigen(Matrix(zeros: 0, 0)).values, [])
    }

    func testSVDReconstructsTallWideAndSquare() throws {
        var rng = SeededRNG(seed: 12, stream: "svd")
        for (m, n) in [(1, 1), (1, 9), (9, 1), (40, 7), (7, 40), (33, 33), (100, 64), (3, 200)] {
            let a = randomMatrix(m, n, &rng)
            let (u, s, vt) = try Linalg.svd(a)
            let k = min(m, n)
            XCTAssertEqual([u.rows, u.cols, s.count, vt.rows, vt.cols], [m, k, k, k, n])
            XCTAssertEqual(s, s.sorted(by: >), "singular values must descend")
            XCTAssertTrue(s.allSatisfy { $0 >= 0 })
            XCTAssertLessThan(relativeError(u.scalingColumns(by: s) * vt, a), 1e-5, "\(m)×\(n)")
            assertOrthonormalColumns(u)
            assertOrthonormalColumns(vt.transposed)
        }
        // Known values: diag(3, 2) padded into a 3×2 matrix.
        let (_, s, _) = try Linalg.svd(Matrix(rows: 3, cols: 2, data: [0, 2, 3, 0, 0, 0]))
        XCTAssertEqual(s[0], 3, accuracy: 1e-12); XCTAssertEqual(s[1], 2, accuracy: 1e-12)
    }

    func testSquareRootsOfSPD() throws {
        var rng = SeededRNG(seed: 13, stream: "sqrtm")
        for n in [1, 4, 25, 80] {
            let a = randomSPD(n, rank: n, shift: 0.1, &rng)
            for ridge in [0.0, 0.5] {
                var shifted = a
                for i in 0..<n { shifted[i, i] += ridge }
                let r = try Linalg.sqrtm(a, ridge: ridge)
                let ri = try Linalg.invSqrtm(a, ridge: ridge)
                XCTAssertLessThan((ri * r).maxAbsDifference(.identity(n)), 1e-6, "n = \(n), ridge = \(ridge)")
                XCTAssertLessThan((r * ri).maxAbsDifference(.identity(n)), 1e-6)
                XCTAssertLessThan(relativeError(r * r, shifted), 1e-8)
                XCTAssertEqual(r, r.transposed, "sqrtm must be symmetric")
                // The principal root is itself positive definite.
                XCTAssertGreaterThan(try Linalg.symmetricEigen(r).values[0], 0)
            }
        }
        let d = Matrix.diagonal([4, 9, 0.25])
        XCTAssertLessThan(try Linalg.sqrtm(d).maxAbsDifference(.diagonal([2, 3, 0.5])), 1e-12)
        XCTAssertLessThan(try Linalg.invSqrtm(d).maxAbsDifference(.diagonal([0.5, 1.0 / 3, 2])), 1e-12)
        XCTAssertLessThan(try Linalg.invSqrtm(d, ridge: 5).maxAbsDifference(.diagonal([1.0 / 3, 1.0 / (14.0).squareRoot(), 1.0 / (5.25).squareRoot()])), 1e-12)
    }

    func testSquareRootsOfSingularPSD() throws {
        var rng = SeededRNG(seed: 14, stream: "psd")
        let a = randomSPD(30, rank: 5, shift: 0, &rng)
        let r = try Linalg.sqrtm(a)
        XCTAssertLessThan(relativeError(r * r, a), 1e-6, "sqrtm of a semidefinite matrix")
        XCTAssertThrowsError(try Linalg.invSqrtm(a)) { error in
            guard case LinalgError.notPositiveEigenvalue = error else { return XCTFail("wrong error \(error)") }
            let message = "\(error)"
            XCTAssertTrue(message.contains("invSqrtm") && message.contains("30×30") && message.contains("ridge"), message)
        }
        let ri = try Linalg.invSqrtm(a, ridge: 1e-3)
        let rr = try Linalg.sqrtm(a, ridge: 1e-3)
        XCTAssertLessThan((ri * rr).maxAbsDifference(.identity(30)), 1e-6)
        XCTAssertThrowsError(try Linalg.invSqrtm(Matrix(zeros: 3, 3)))
    }

    func testSquareRootsRefuseIndefiniteAndBadRidge() {
        let indefinite = Matrix(rows: 2, cols: 2, data: [1, 2, 2, 1])  // eigenvalues −1 and 3
        XCTAssertThrowsError(try Linalg.sqrtm(indefinite)) { error in
            guard case LinalgError.indefinite = error else { return XCTFail("wrong error \(error)") }
        }
        XCTAssertThrowsError(try Linalg.invSqrtm(indefinite))
        XCTAssertNoThrow(try Linalg.sqrtm(indefinite, ridge: 1.5))
        XCTAssertThrowsError(try Linalg.sqrtm(.identity(2), ridge: -1)) { error in
            guard case LinalgError.invalidArgument = error else { return XCTFail("wrong error \(error)") }
        }
        XCTAssertThrowsError(try Linalg.sqrtm(.identity(2), ridge: .nan))
    }

    func testCholeskySolve() throws {
        var rng = SeededRNG(seed: 15, stream: "chol")
        for (n, nrhs) in [(1, 1), (5, 3), (50, 1), (120, 17)] {
            let a = randomSPD(n, rank: n, shift: 0.5, &rng)
            let b = randomMatrix(n, nrhs, &rng)
            let x = try Linalg.solveSymmetricPositive(a, b)
            XCTAssertEqual([x.rows, x.cols], [n, nrhs])
            XCTAssertLessThan(relativeError(a * x, b), 1e-8, "n = \(n)")
        }
        let notPD = Matrix(rows: 2, cols: 2, data: [1, 2, 2, 1])
        XCTAssertThrowsError(try Linalg.solveSymmetricPositive(notPD, .identity(2))) { error in
            XCTAssertEqual(error as? LinalgError, .notPositiveDefinite(operation: "solveSymmetricPositive", n: 2, info: 2))
            XCTAssertTrue("\(error)".contains("matrix is singular or not positive definite; add a ridge"), "\(error)")
        }
        assertThrowsError(try Linalg.solveSymmetricPositive(.identity(3), Matrix(zeros: 2, 1)),
                          LinalgError.shapeMismatch(operation: "solveSymmetricPositive", aRows: 3, aCols: 3, bRows: 2, bCols: 1))
    }

    func testLUSolveAndInverse() throws {
        var rng = SeededRNG(seed: 16, stream: "lu")
        for (n, nrhs) in [(1, 2), (6, 1), (64, 10), (150, 3)] {
            let a = randomMatrix(n, n, &rng)
            let b = randomMatrix(n, nrhs, &rng)
            let x = try Linalg.solve(a, b)
            XCTAssertLessThan(relativeError(a * x, b), 1e-8, "n = \(n)")
            let inv = try Linalg.inverse(a)
            XCTAssertLessThan((a * inv).maxAbsDifference(.identity(n)), 1e-8)
            XCTAssertLessThan((inv * a).maxAbsDifference(.identity(n)), 1e-8)
        }
        let singular = Matrix(rows: 3, cols: 3, data: [1, 2, 3, 2, 4, 6, 0, 0, 0])
        XCTAssertThrowsError(try Linalg.solve(singular, .identity(3))) { error in
            guard case LinalgError.singular(let op, let n, let info) = error else { return XCTFail("wrong error \(error)") }
            XCTAssertEqual(op, "solve"); XCTAssertEqual(n, 3); XCTAssertGreaterThan(info, 0)
            XCTAssertTrue("\(error)".contains("3×3") && "\(error)".contains("info"))
        }
        XCTAssertThrowsError(try Linalg.inverse(singular))
        assertThrowsError(try Linalg.inverse(Matrix(zeros: 2, 3)), LinalgError.notSquare(operation: "inverse", rows: 2, cols: 3))
    }

    func testProcrustesRecoversRotationFromPolarFactor() throws {
        var rng = SeededRNG(seed: 17, stream: "procrustes")
        for n in [1, 2, 5, 30] {
            let q = try randomOrthogonal(n, &rng)
            // M = Q·P with P symmetric positive definite: the polar factor of M, hence U·Vᵀ, is Q.
            let p = randomSPD(n, rank: n, shift: 0.2, &rng)
            let m = q * p
            let r = try Linalg.orthogonalProcrustes(m)
            assertOrthonormalColumns(r)
            XCTAssertLessThan(r.maxAbsDifference(q), 1e-8, "n = \(n)")
            // Also with a positive diagonal on the right.
            let d = Matrix.diagonal((0..<n).map { _ in 0.1 + 3 * rng.uniform() })
            XCTAssertLessThan(try Linalg.orthogonalProcrustes(q * d).maxAbsDifference(q), 1e-8)
        }
    }

    func testProcrustesMaximisesTraceAndHandlesRectangles() throws {
        var rng = SeededRNG(seed: 18, stream: "procrustes-trace")
        let m = randomMatrix(12, 12, &rng)
        let r = try Linalg.orthogonalProcrustes(m)
        func trace(_ x: Matrix) -> Double { (0..<x.rows).reduce(0) { $0 + x[$1, $1] } }
        let best = trace(r.multiplied(by: m, transSelf: true))
        XCTAssertEqual(best, try Linalg.svd(m).s.reduce(0, +), accuracy: 1e-9, "max tr(QᵀM) is the nuclear norm")
        for _ in 0..<20 {
            let other = try randomOrthogonal(12, &rng)
            XCTAssertLessThanOrEqual(trace(other.multiplied(by: m, transSelf: true)), best + 1e-9)
        }
        let tall = try Linalg.orthogonalProcrustes(randomMatrix(10, 4, &rng))
        XCTAssertEqual([tall.rows, tall.cols], [10, 4])
        assertOrthonormalColumns(tall)
        let wide = try Linalg.orthogonalProcrustes(randomMatrix(4, 10, &rng))
        assertOrthonormalColumns(wide.transposed)
    }

    func testNonFiniteAndNonSquareInputIsRefused() {
        var a = Matrix.identity(4)
        a[2, 1] = .nan
        let expected = { (op: String) in LinalgError.nonFinite(operation: op, rows: 4, cols: 4, row: 2, col: 1) }
        assertThrowsError(try Linalg.symmetricEigen(a), expected("symmetricEigen"))
        assertThrowsError(try Linalg.svd(a), expected("svd"))
        assertThrowsError(try Linalg.sqrtm(a), expected("sqrtm"))
        assertThrowsError(try Linalg.invSqrtm(a), expected("invSqrtm"))
        assertThrowsError(try Linalg.solveSymmetricPositive(a, .identity(4)), expected("solveSymmetricPositive"))
        assertThrowsError(try Linalg.solve(a, .identity(4)), expected("solve"))
        assertThrowsError(try Linalg.inverse(a), expected("inverse"))
        assertThrowsError(try Linalg.orthogonalProcrustes(a), expected("svd"))
        var b = Matrix.identity(4)
        b[0, 3] = .infinity
        assertThrowsError(try Linalg.solve(.identity(4), b),
                          LinalgError.nonFinite(operation: "solve", rows: 4, cols: 4, row: 0, col: 3))
        XCTAssertTrue(expected("svd").description.contains("non-finite"))
        XCTAssertTrue(expected("svd").localizedDescription.contains("row 2, column 1"))

        assertThrowsError(try Linalg.symmetricEigen(Matrix(zeros: 3, 2)),
                          LinalgError.notSquare(operation: "symmetricEigen", rows: 3, cols: 2))
        assertThrowsError(try Linalg.sqrtm(Matrix(zeros: 1, 2)), LinalgError.notSquare(operation: "sqrtm", rows: 1, cols: 2))
        XCTAssertTrue(LinalgError.lapackFailed(operation: "svd", routine: "dgesdd", rows: 3, cols: 4, info: 2)
            .description.contains("info = 2"))
    }
}
