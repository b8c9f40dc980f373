import XCTest
import LigandCollective
import LigandData
import LigandNN
import LigandNumerics
@testable import LigandPipeline

/// DARE (Methods/DARE.swift): the drop-and-rescale rule, its seeding, and a distributed merge independent of the ranks.
final class DARETests: XCTestCase {
    func testDropAndRescaleFollowsTheRule() {
        var rng = SeededRNG(seed: 5)
        let n = 20_000
        let pre = (0..<n).map { _ in rng.normal() }
        let expert = pre.map { $0 + 0.1 * rng.normal() }
        var isParameter = [Bool](repeating: true, count: n)
        isParameter[0] = false  // a running statistic: never dropped nor rescaled
        let p = 0.7
        let out = DARE.rescaled(expert, pretrained: pre, isParameter: isParameter, p: p, seed: 3, index: 1)
        XCTAssertEqual(out[0], expert[0])
        var dropped = 0
        for j in 1..<n {
            if out[j] == pre[j] { dropped += 1 } else { XCTAssertEqual(out[j] - pre[j], (expert[j] - pre[j]) / (1 - p), accuracy: 1e-12) }
        }
        // Bernoulli(p) over 19,999 entries: the drop rate is p within 5 standard deviations (0.016).
        XCTAssertEqual(Double(dropped) / Double(n - 1), p, accuracy: 0.016)
        // The mask is the expert's own seeded stream: the same for a seed, another for another expert or seed.
        XCTAssertEqual(out, DARE.rescaled(expert, pretrained: pre, isParameter: isParameter, p: p, seed: 3, index: 1))
        XCTAssertNotEqual(out, DARE.rescaled(expert, pretrained: pre, isParameter: isParameter, p: p, seed: 3, index: 2))
        XCTAssertNotEqual(out, DARE.rescaled(expert, pretrained: pre, isParameter: isParameter, p: p, seed: 4, index: 1))
        XCTAssertEqual(DARE.rescaled(expert, pretrained: pre, isParameter: isParameter, p: 0, seed: 3, index: 1), expert, "p = 0 keeps the expert")
    }

    func testMergeIsRankCountIndependentAndFitsPAndLambdaOnCalibration() throws {
        let arch = Architecture.mlp(hidden: [10], input: [4, 4, 1], classes: 3)
        let pre = try Network<Float>(arch, seed: 70)
        var rng = SeededRNG(seed: 71)
        let experts: [Network<Float>] = try (0..<3).map { _ in
            let e = try Network<Float>(arch, seed: 0)
            try e.load(pre.stateDictionary().mapValues { t in Tensor(shape: t.shape, storage: t.storage.map { $0 + Float(0.05 * rng.normal()) }) })
            return e
        }
        func images(_ n: Int, seed: UInt64) -> LabeledImages {
            var r = SeededRNG(seed: seed)
            return LabeledImages(height: 4, width: 4, channels: 1, pixels: (0..<(n * 16)).map { _ in Float(r.normal()) }, labels: (0..<n).map { $0 % 3 }, classCount: 3)
        }
        let heads = experts.map { (weight: $0.head.weight.value, bias: $0.head.bias!.value) }
        let input = TasksInputs(suite: "synthetic", tasks: ["a", "b", "c"], architectures: experts.map(\.architecture), load: { experts[$0] },
                                heads: heads, pretrained: pre, calibration: (0..<3).map { images(60, seed: 80 + UInt64($0)) },
                                test: (0..<3).map { images(60, seed: 90 + UInt64($0)) })
        for then in ["task-arithmetic", "ties"] {
            var o = MergeOptions(method: DARE.self, suite: "synthetic", outDirectory: URL(fileURLWithPath: "/nonexistent"))
            o.quiet = true
            o.seed = 9
            try o.parameters.set(DARE.drop, numbers: [0.2, 0.6])
            try o.parameters.set(DARE.then, text: then)
            try o.parameters.set(TaskArithmetic.lambdas, numbers: [0.5, 1])
            try o.parameters.set(TIES.keep, numbers: [0.5])
            var reference: [[UInt32]]?
            for size in [1, 2, 3] {
                let r = try InProcessCommunicator.run(size: size) { comm in try MergeRun.mergeTasks(input, options: o, comm: comm) }
                for x in r {
                    let b = x.backbone.map { $0.value.storage.map(\.bitPattern) }
                    if let ref = reference { XCTAssertEqual(b, ref, "dare then \(then) at \(size) ranks") } else { reference = b }
                }
                let hp = r[0].report.hyperparameters
                XCTAssertTrue([0.2, 0.6].map(MergeRun.formatted).contains(hp["p"] ?? ""), "\(hp)")
                XCTAssertTrue([0.5, 1].map(MergeRun.formatted).contains(hp["lambda"] ?? ""), "\(hp)")
                XCTAssertEqual(hp["then"], then)
                // Every (p, λ) candidate was scored on calibration, and the chosen one scores best.
                let scores = r[0].report.calibrationScores
                XCTAssertEqual(scores.count, 4, "2 drop rates × 2 λ (× 1 k): \(scores)")
                let chosen = scores.first { $0.key.hasPrefix("p=\(hp["p"]!),") && $0.key.hasSuffix("lambda=\(hp["lambda"]!)") }!.value
                XCTAssertEqual(chosen, scores.values.max())
            }
        }
    }
}
