import XCTest
@testable import LigandNumerics

final class AssignmentTests: XCTestCase {
    func allPermutations(_ n: Int) -> [[Int]] {
        if n == 0 { return [[]] }
        var out: [[Int]] = []
        for p in allPermutations(n - 1) {
            for pos in 0...p.count { var q = p; q.insert(n - 1, at: pos); out.append(q) }
        }
        return out
    }

    func total(_ c: Matrix, _ perm: [Int]) -> Double { perm.enumerated().reduce(0) { $0 + c[$1.offset, $1.element] } }

    func assertPermutation(_ perm: [Int], _ n: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(perm.count, n, file: file, line: line)
        XCTAssertEqual(perm.sorted(), Array(0..<n), "not a permutation: \(perm)", file: file, line: line)
    }

    func bruteForceCheck(seed: UInt64, integerCosts: Bool) throws {
        let perms = allPermutations(6)
        XCTAssertEqual(perms.count, 720)
        var rng = SeededRNG(seed: seed, stream: "brute")
        for trial in 0..<200 {
            // Small integers produce many tied optima; scaled normals test negative and large costs.
            let data = (0..<36).map { _ in integerCosts ? Double(rng.int(below: 4)) : 100 * rng.normal() }
            let c = Matrix(rows: 6, cols: 6, data: data)
            let totals = perms.map { total(c, $0) }
            for maximize in [false, true] {
                let perm = try Assignment.solve(cost: c, maximize: maximize)
                assertPermutation(perm, 6)
                let want = maximize ? totals.max()! : totals.min()!
                XCTAssertEqual(total(c, perm), want, accuracy: 1e-9 * max(1, abs(want)),
                               "trial \(trial) maximize=\(maximize)")
            }
        }
    }

    func testMatchesBruteForceOnRandom6x6() throws { try bruteForceCheck(seed: 1, integerCosts: false) }
    func testMatchesBruteForceWithTies() throws { try bruteForceCheck(seed: 2, integerCosts: true) }

    func testSmallSizesAgainstBruteForce() throws {
        var rng = SeededRNG(seed: 3, stream: "small")
        for n in 1...5 {
            let perms = allPermutations(n)
            for _ in 0..<30 {
                let c = randomMatrix(n, n, &rng)
                let perm = try Assignment.solve(cost: c)
                XCTAssertEqual(total(c, perm), perms.map { total(c, $0) }.min()!, accuracy: 1e-9)
            }
        }
    }

    func testTrivialSizes() throws {
        XCTAssertEqual(try Assignment.solve(cost: Matrix(zeros: 0, 0)), [])
        XCTAssertEqual(try Assignment.solve(cost: Matrix(rows: 1, cols: 1, data: [-7])), [0])
        XCTAssertEqual(try Assignment.solve(cost: Matrix(rows: 1, cols: 1, data: [3]), maximize: true), [0])
        XCTAssertEqual(try Assignment.solve(cost: Matrix(rows: 2, cols: 2, data: [1, 0, 0, 1])), [1, 0])
        XCTAssertEqual(try Assignment.solve(cost: Matrix(rows: 2, cols: 2, data: [1, 0, 0, 1]), maximize: true), [0, 1])
        // All costs equal: every permutation is optimal, the answer must still be one.
        assertPermutation(try Assignment.solve(cost: Matrix(rows: 50, cols: 50, data: .init(repeating: 2.5, count: 2500))), 50)
    }

    func testRecoversPlantedPermutation() throws {
        var rng = SeededRNG(seed: 4, stream: "planted")
        let n = 300
        let planted = rng.permutation(n)
        var c = Matrix(zeros: n, n)
        for i in 0..<n { for j in 0..<n { c[i, j] = rng.uniform() } }
        for i in 0..<n { c[i, planted[i]] = 2 + rng.uniform() }
        XCTAssertEqual(try Assignment.solve(cost: c, maximize: true), planted)
        let negated = Matrix(rows: n, cols: n, data: c.data.map { -$0 })
        XCTAssertEqual(try Assignment.solve(cost: negated), planted)
    }

    func testNoImprovingSwapOnLargerRandom() throws {
        // A necessary optimality condition cheap enough to check at n = 120: no 2-exchange helps.
        var rng = SeededRNG(seed: 5, stream: "two-opt")
        let n = 120
        let c = randomMatrix(n, n, &rng)
        let perm = try Assignment.solve(cost: c)
        assertPermutation(perm, n)
        for a in 0..<n {
            for b in (a + 1)..<n {
                let delta = c[a, perm[b]] + c[b, perm[a]] - c[a, perm[a]] - c[b, perm[b]]
                XCTAssertGreaterThanOrEqual(delta, -1e-9, "swapping rows \(a) and \(b) improves")
            }
        }
        // Sanity against the trivial assignments: optimal beats identity and a random permutation.
        XCTAssertLessThanOrEqual(total(c, perm), total(c, Array(0..<n)))
        XCTAssertLessThanOrEqual(total(c, perm), total(c, rng.permutation(n)))
    }

    func testBadInputIsRefused() {
        assertThrowsError(try Assignment.solve(cost: Matrix(zeros: 3, 4)), AssignmentError.notSquare(rows: 3, cols: 4))
        var c = Matrix(zeros: 3, 3)
        c[1, 2] = .nan
        assertThrowsError(try Assignment.solve(cost: c), AssignmentError.nonFinite(rows: 3, cols: 3, row: 1, col: 2))
        c[1, 2] = -.infinity
        assertThrowsError(try Assignment.solve(cost: c, maximize: true), AssignmentError.nonFinite(rows: 3, cols: 3, row: 1, col: 2))
        XCTAssertTrue(AssignmentError.notSquare(rows: 3, cols: 4).description.contains("3×4"))
        XCTAssertTrue(AssignmentError.nonFinite(rows: 3, cols: 3, row: 1, col: 2).localizedDescription.contains("non-finite"))
    }
}
