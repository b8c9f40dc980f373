import XCTest
@testable import LigandNumerics

/// Random Float64 matrix with N(0, 1) entries.
func randomMatrix(_ rows: Int, _ cols: Int, _ rng: inout SeededRNG) -> Matrix {
    Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in rng.normal() })
}

/// ‖a − b‖_F / max(‖b‖_F, tiny).
func relativeError(_ a: Matrix, _ b: Matrix) -> Double {
    XCTAssertEqual(a.rows, b.rows); XCTAssertEqual(a.cols, b.cols)
    return (a - b).norm / max(b.norm, 1e-300)
}

/// Naive Float64 triple loop: C = op(A)·op(B) with explicit leading dimensions.
func naiveGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
               a: [Double], lda: Int, b: [Double], ldb: Int) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += av * bv
            }
            c[i * n + j] = s
        }
    }
    return c
}

func assertThrowsError<E: Error & Equatable, T>(_ expression: @autoclosure () throws -> T, _ expected: E,
                                                file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try expression(), file: file, line: line) { error in
        XCTAssertEqual(error as? E, expected, file: file, line: line)
    }
}
