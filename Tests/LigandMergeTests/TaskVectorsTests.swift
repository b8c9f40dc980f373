import XCTest
import LigandCollective
@testable import LigandMerge

/// TaskVectors (TaskVectors.swift): the task-arithmetic maths every task-vector merge and baseline shares.
final class TaskVectorsTests: XCTestCase {
    func testAverageAndTaskArithmeticForAnyRankCount() throws {
        let pre: [Double] = [1, 1, 5], a: [Double] = [2, 0, 3], b: [Double] = [4, 1, 9]
        let mask = TaskVectors.parameterMask([("w", 2), ("bn.running_mean", 1)])
        XCTAssertEqual(mask, [true, true, false])
        for size in [1, 2, 3] {
            let out = try InProcessCommunicator.run(size: size) { comm -> [[Double]] in
                let shard = ModelShard(total: 2, comm: comm), local = shard.local.map { [a, b][$0] }
                let average = try TaskVectors.average(local, shard: shard)
                let delta = try TaskVectors.sum(local, pretrained: pre, shard: shard)
                return [average, delta] + [0.5, 1].map { TaskVectors.combine(pretrained: pre, delta: delta, lambda: $0, isParameter: mask, average: average) }
            }
            for o in out {
                XCTAssertEqual(o[0], [3, 0.5, 6], "\(size) ranks")
                XCTAssertEqual(o[1], [4, -1, 2])
                XCTAssertEqual(o[2], [3, 0.5, 6], "λ = 1/K is the average on parameters; the statistic is always averaged")
                XCTAssertEqual(o[3], [5, 0, 6])
            }
        }
    }
}
