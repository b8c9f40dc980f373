import XCTest
import LigandNumerics
@testable import LigandData

final class SplitsTests: XCTestCase {
    func testTrainCalibrationDisjointCoveringDeterministic() throws {
        let a = try DataSplits.trainCalibration(count: 1000, calibration: 150, seed: 7)
        XCTAssertEqual(a.calibration.count, 150)
        XCTAssertEqual(a.train.count, 850)
        XCTAssertTrue(Set(a.train).isDisjoint(with: a.calibration))
        XCTAssertEqual((a.train + a.calibration).sorted(), Array(0..<1000))
        let b = try DataSplits.trainCalibration(count: 1000, calibration: 150, seed: 7)
        XCTAssertEqual(a.train, b.train)
        XCTAssertEqual(a.calibration, b.calibration)
        let c = try DataSplits.trainCalibration(count: 1000, calibration: 150, seed: 8)
        XCTAssertNotEqual(a.calibration, c.calibration)
        // Not simply the first or last block.
        XCTAssertNotEqual(a.calibration, Array(0..<150))
        XCTAssertNotEqual(a.calibration, Array(850..<1000))
    }

    func testTrainCalibrationEdgesAndErrors() throws {
        let none = try DataSplits.trainCalibration(count: 5, calibration: 0, seed: 1)
        XCTAssertEqual(none.train, [0, 1, 2, 3, 4])
        XCTAssertEqual(none.calibration, [])
        XCTAssertEqual(try DataSplits.trainCalibration(count: 5, calibration: 5, seed: 1).calibration, [0, 1, 2, 3, 4])
        XCTAssertThrowsError(try DataSplits.trainCalibration(count: 5, calibration: 6, seed: 1)) { e in
            XCTAssertTrue("\(e)".hasPrefix("calibration"), "\(e)")
        }
        XCTAssertThrowsError(try DataSplits.trainCalibration(count: 5, calibration: -1, seed: 1))
    }

    func testStratifiedKeepsClassProportions() throws {
        // Classes of sizes 500, 300, 200, interleaved.
        var labels: [Int] = []
        for i in 0..<1000 { labels.append(i % 10 < 5 ? 0 : (i % 10 < 8 ? 1 : 2)) }
        let s = try DataSplits.trainCalibration(stratifiedBy: labels, calibration: 100, seed: 3)
        XCTAssertEqual(s.calibration.count, 100)
        XCTAssertTrue(Set(s.train).isDisjoint(with: s.calibration))
        XCTAssertEqual((s.train + s.calibration).sorted(), Array(0..<1000))
        let held = s.calibration.map { labels[$0] }
        XCTAssertEqual([0, 1, 2].map { c in held.filter { $0 == c }.count }, [50, 30, 20])
        let again = try DataSplits.trainCalibration(stratifiedBy: labels, calibration: 100, seed: 3)
        XCTAssertEqual(again.calibration, s.calibration)
        XCTAssertNotEqual(try DataSplits.trainCalibration(stratifiedBy: labels, calibration: 100, seed: 4).calibration,
                          s.calibration)
    }

    func testStratifiedRoundingIsExact() throws {
        let labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
        let s = try DataSplits.trainCalibration(stratifiedBy: labels, calibration: 4, seed: 0)
        XCTAssertEqual(s.calibration.count, 4)
        XCTAssertEqual(Set(s.calibration.map { labels[$0] }).count, 4 - (s.calibration.map { labels[$0] }.count - Set(s.calibration.map { labels[$0] }).count))
        XCTAssertTrue(Set(s.train).isDisjoint(with: s.calibration))
        XCTAssertEqual(s.train.count, 6)
    }

    func testClassSubsetShards() {
        let labels = [0, 1, 2, 3, 0, 1, 2, 3, 9]
        let sh = DataSplits.shards(labels: labels, classSubsets: [[0, 1], [2, 3], [7]])
        XCTAssertEqual(sh, [[0, 1, 4, 5], [2, 3, 6, 7], []])
    }

    func testDirichletShardsDisjointCoveringDeterministic() throws {
        let labels = (0..<2000).map { $0 % 10 }
        let a = try DataSplits.dirichletShards(labels: labels, shards: 4, alpha: 0.5, seed: 11)
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(a.flatMap { $0 }.sorted(), Array(0..<2000))
        XCTAssertEqual(a.map { $0.count }.reduce(0, +), 2000)
        XCTAssertEqual(try DataSplits.dirichletShards(labels: labels, shards: 4, alpha: 0.5, seed: 11), a)
        XCTAssertNotEqual(try DataSplits.dirichletShards(labels: labels, shards: 4, alpha: 0.5, seed: 12), a)
        for s in a { XCTAssertEqual(s, s.sorted()) }
    }

    func testDirichletAlphaControlsSkew() throws {
        let labels = (0..<10_000).map { $0 % 10 }
        // Mean over classes of the largest shard's share of that class.
        func skew(_ alpha: Double) throws -> Double {
            let sh = try DataSplits.dirichletShards(labels: labels, shards: 5, alpha: alpha, seed: 5)
            var total = 0.0
            for c in 0..<10 {
                let per = sh.map { s in s.filter { labels[$0] == c }.count }
                total += Double(per.max()!) / 1000
            }
            return total / 10
        }
        let concentrated = try skew(0.05)
        let even = try skew(1000)
        XCTAssertGreaterThan(concentrated, 0.8)
        XCTAssertLessThan(even, 0.25)
        XCTAssertThrowsError(try DataSplits.dirichletShards(labels: labels, shards: 0, alpha: 1, seed: 0))
        XCTAssertThrowsError(try DataSplits.dirichletShards(labels: labels, shards: 3, alpha: 0, seed: 0))
        XCTAssertThrowsError(try DataSplits.dirichletShards(labels: labels, shards: 3, alpha: .nan, seed: 0))
    }

    func testGammaMoments() {
        for shape in [0.3, 1.0, 4.5] {
            var rng = SeededRNG(seed: 99)
            let n = 40_000
            let xs = (0..<n).map { _ in DataSplits.gamma(shape: shape, rng: &rng) }
            XCTAssertTrue(xs.allSatisfy { $0 >= 0 && $0.isFinite })
            let mean = xs.reduce(0, +) / Double(n)
            let variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            // Gamma(k, 1): mean k, variance k; bounds are many standard errors wide.
            XCTAssertEqual(mean, shape, accuracy: 0.05 * shape + 0.02, "shape \(shape)")
            XCTAssertEqual(variance, shape, accuracy: 0.15 * shape + 0.03, "shape \(shape)")
        }
    }

    func testApportionIsExact() {
        XCTAssertEqual(DataSplits.apportion(10, weights: [1.0, 1.0, 1.0]), [4, 3, 3])
        XCTAssertEqual(DataSplits.apportion(7, weights: [0.0, 2.0, 5.0]), [0, 2, 5])
        XCTAssertEqual(DataSplits.apportion(5, weights: [0.0, 0.0]), [5, 0])
    }
}
