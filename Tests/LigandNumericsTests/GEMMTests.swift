import XCTest
@testable import LigandNumerics

final class GEMMTests: XCTestCase {
    let dims = [1, 2, 3, 5, 8, 17, 31, 64]

    /// Stored shape of A (or B) given the shape of op(A) and the transpose flag.
    func stored(_ rows: Int, _ cols: Int, _ trans: Bool) -> (Int, Int) { trans ? (cols, rows) : (rows, cols) }

    func testSgemmAgainstNaiveWithPaddedLeadingDimensions() {
        var rng = SeededRNG(seed: 1, stream: "sgemm")
        for transA in [false, true] {
            for transB in [false, true] {
                for _ in 0..<25 {
                    let m = dims[rng.int(below: dims.count)], n = dims[rng.int(below: dims.count)]
                    let k = dims[rng.int(below: dims.count)]
                    let (ar, ac) = stored(m, k, transA), (br, bc) = stored(k, n, transB)
                    // Sub-matrices of wider buffers: leading dimensions exceed the widths.
                    let lda = ac + rng.int(below: 4), ldb = bc + rng.int(below: 4), ldc = n + rng.int(below: 4)
                    let a = (0..<(ar * lda)).map { _ in Float(rng.normal()) }
                    let b = (0..<(br * ldb)).map { _ in Float(rng.normal()) }
                    let sentinel: Float = 12345
                    let c0 = (0..<(m * ldc)).map { _ in Float(rng.normal()) }
                    var c = c0
                    for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = sentinel } }
                    let alpha: Float = 0.75, beta: Float = -0.5
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                           a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                           beta: beta, c: pc.baseAddress!, ldc: ldc)
                            }
                        }
                    }
                    let ref = naiveGemm(transA: transA, transB: transB, m: m, n: n, k: k,
                                        a: a.map(Double.init), lda: lda, b: b.map(Double.init), ldb: ldb)
                    var errSq = 0.0, refSq = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            let want = Double(alpha) * ref[i * n + j] + Double(beta) * Double(c0[i * ldc + j])
                            errSq += (Double(c[i * ldc + j]) - want) * (Double(c[i * ldc + j]) - want)
                            refSq += want * want
                        }
                        for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], sentinel, "padding overwritten") }
                    }
                    let rel = (errSq / max(refSq, 1e-30)).squareRoot()
                    XCTAssertLessThan(rel, 1e-5, "sgemm \(m)×\(n)×\(k) transA=\(transA) transB=\(transB)")
                }
            }
        }
    }

    func testDgemmAgainstNaive() {
        var rng = SeededRNG(seed: 2, stream: "dgemm")
        for transA in [false, true] {
            for transB in [false, true] {
                for _ in 0..<20 {
                    let m = dims[rng.int(below: dims.count)], n = dims[rng.int(below: dims.count)]
                    let k = dims[rng.int(below: dims.count)]
                    let (ar, ac) = stored(m, k, transA), (br, bc) = stored(k, n, transB)
                    let lda = ac + rng.int(below: 3), ldb = bc + rng.int(below: 3)
                    let a = (0..<(ar * lda)).map { _ in rng.normal() }
                    let b = (0..<(br * ldb)).map { _ in rng.normal() }
                    var c = [Double](repeating: .nan, count: m * n)  // beta = 0 must ignore C's contents
                    a.withUnsafeBufferPointer { pa in
                        b.withUnsafeBufferPointer { pb in
                            c.withUnsafeMutableBufferPointer { pc in
                                BLAS.dgemm(transA: transA, transB: transB, m: m, n: n, k: k,
                                           a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                           c: pc.baseAddress!, ldc: n)
                            }
                        }
                    }
                    let ref = naiveGemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb)
                    let rel = relativeError(Matrix(rows: m, cols: n, data: c), Matrix(rows: m, cols: n, data: ref))
                    XCTAssertLessThan(rel, 1e-12, "dgemm \(m)×\(n)×\(k) transA=\(transA) transB=\(transB)")
                }
            }
        }
    }

    func testMatmulAndMatrixMultiplyAgainstNaive() {
        var rng = SeededRNG(seed: 3, stream: "matmul")
        for transA in [false, true] {
            for transB in [false, true] {
                for _ in 0..<20 {
                    let m = dims[rng.int(below: dims.count)], n = dims[rng.int(below: dims.count)]
                    let k = dims[rng.int(below: dims.count)]
                    let (ar, ac) = stored(m, k, transA), (br, bc) = stored(k, n, transB)
                    let a = Tensor.randomNormal([ar, ac], rng: &rng), b = Tensor.randomNormal([br, bc], rng: &rng)
                    let c = matmul(a, b, transA: transA, transB: transB)
                    XCTAssertEqual(c.shape, [m, n])
                    let ref = Matrix(rows: m, cols: n, data: naiveGemm(
                        transA: transA, transB: transB, m: m, n: n, k: k,
                        a: a.storage.map(Double.init), lda: ac, b: b.storage.map(Double.init), ldb: bc))
                    XCTAssertLessThan(relativeError(Matrix(c), ref), 1e-5, "matmul \(m)×\(n)×\(k) \(transA) \(transB)")

                    let md = Matrix(a).multiplied(by: Matrix(b), transSelf: transA, transOther: transB)
                    XCTAssertLessThan(relativeError(md, ref), 1e-12, "Matrix.multiplied \(m)×\(n)×\(k) \(transA) \(transB)")
                }
            }
        }
    }

    func testMatmulKnownValues() {
        let a = Tensor(shape: [2, 3], storage: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], storage: [7, 8, 9, 10, 11, 12])
        XCTAssertEqual(matmul(a, b).storage, [58, 64, 139, 154])
        XCTAssertEqual(matmul(a, a, transB: true).storage, [14, 32, 32, 77])
        XCTAssertEqual(matmul(a, a, transA: true).shape, [3, 3])
    }
}
