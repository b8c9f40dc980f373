import XCTest
import LigandNumerics
@testable import LigandNN

final class OptimizerTests: XCTestCase {
    func param(_ w: [Double], _ g: [Double], decays: Bool = true) -> Parameter<Double> {
        let p = Parameter<Double>("p", TensorOf(shape: [w.count], storage: w), decays: decays)
        p.grad = TensorOf(shape: [g.count], storage: g)
        return p
    }

    func testSGDMomentumNesterovAndWeightDecay() {
        let p = param([1, -2], [0.5, 0.25])
        let opt = Optimizer<Double>(.sgd, momentum: 0.9, nesterov: false, weightDecay: 0.1)
        opt.update([p], lr: 0.1)
        // g' = g + 0.1·w; buffer = g'; w -= 0.1·buffer
        XCTAssertEqual(p.value.storage[0], 1 - 0.1 * (0.5 + 0.1), accuracy: 1e-12)
        opt.update([p], lr: 0.1)
        let w1 = 1 - 0.1 * 0.6, g2 = 0.5 + 0.1 * w1, buf = 0.9 * 0.6 + g2
        XCTAssertEqual(p.value.storage[0], w1 - 0.1 * buf, accuracy: 1e-12)

        let q = param([1], [0.5], decays: false)
        let nesterov = Optimizer<Double>(.sgd, momentum: 0.9, nesterov: true, weightDecay: 0.1)
        nesterov.update([q], lr: 0.1)
        // No decay on a non-decaying parameter; Nesterov steps by g + μ·buffer.
        XCTAssertEqual(q.value.storage[0], 1 - 0.1 * (0.5 + 0.9 * 0.5), accuracy: 1e-12)
    }

    func testAdamFirstStepAndAdamWDecoupledDecay() {
        let p = param([1, 1], [0.3, -2])
        Optimizer<Double>(.adam, weightDecay: 0).update([p], lr: 0.01)
        // The bias-corrected first Adam step is lr·g/(|g| + ε) ≈ lr·sign(g).
        XCTAssertEqual(p.value.storage[0], 1 - 0.01, accuracy: 1e-6)
        XCTAssertEqual(p.value.storage[1], 1 + 0.01, accuracy: 1e-6)
        let q = param([2], [0])
        Optimizer<Double>(.adamw, weightDecay: 0.5).update([q], lr: 0.1)
        XCTAssertEqual(q.value.storage[0], 2 - 0.1 * 0.5 * 2, accuracy: 1e-9)
        let r = param([2], [0])
        Optimizer<Double>(.adam, weightDecay: 0.5).update([r], lr: 0.1)
        // Coupled L2 goes through Adam's normalisation: a unit step, not lr·wd·w.
        XCTAssertEqual(r.value.storage[0], 2 - 0.1, accuracy: 1e-6)
    }

    func testSchedules() {
        let s = LRSchedule(base: 1, warmupSteps: 10, totalSteps: 110, decay: .cosine)
        XCTAssertEqual(s.rate(at: 0), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.rate(at: 9), 1, accuracy: 1e-12)
        XCTAssertEqual(s.rate(at: 60), 0.5, accuracy: 1e-12)
        XCTAssertEqual(s.rate(at: 110), 0, accuracy: 1e-12)
        let l = LRSchedule(base: 2, warmupSteps: 0, totalSteps: 100, decay: .linear, floor: 0.1)
        XCTAssertEqual(l.rate(at: 50), 2 * (0.1 + 0.9 * 0.5), accuracy: 1e-12)
        XCTAssertEqual(LRSchedule(base: 3, totalSteps: 5, decay: .constant).rate(at: 4), 3)
    }

    func testTrainingIsDeterministicAndLearnsASeparableProblem() throws {
        // Two Gaussian blobs per class on a 4×4 image: a small MLP must fit them.
        var rng = SeededRNG(seed: 21)
        let n = 200
        var pixels: [Float] = [], labels: [Int] = []
        for i in 0..<n {
            let c = i % 2
            labels.append(c)
            for j in 0..<16 { pixels.append(Float(0.5 + 0.15 * rng.normal() + (j < 8 ? (c == 0 ? 0.3 : -0.3) : 0))) }
        }
        let data = LigandData.LabeledImages(height: 4, width: 4, channels: 1, pixels: pixels, labels: labels, classCount: 2)
        var config = TrainingConfig()
        config.epochs = 5; config.batchSize = 16; config.learningRate = 0.1; config.seed = 3
        func run() throws -> (Network<Float>, [EpochReport]) {
            let net = try Network<Float>(.mlp(hidden: [8], input: [4, 4, 1], classes: 2), seed: 1)
            let r = try Trainer.train(net, data: data, indices: Array(0..<n), config: config, progressStyle: .quiet)
            return (net, r)
        }
        let (a, ra) = try run()
        let (b, _) = try run()
        XCTAssertEqual(a.stateDict().map(\.value), b.stateDict().map(\.value))
        XCTAssertGreaterThan(ra.last!.trainAccuracy, 0.95)
        config.frozen = ["head.weight", "head.bias"]
        let c = try Network<Float>(.mlp(hidden: [8], input: [4, 4, 1], classes: 2), seed: 1)
        let head = c.head.weight.value
        _ = try Trainer.train(c, data: data, indices: Array(0..<n), config: config, progressStyle: .quiet)
        XCTAssertEqual(c.head.weight.value, head, "a frozen head must not move")
        config.frozen = ["no.such.parameter"]
        XCTAssertThrowsError(try Trainer.train(c, data: data, indices: Array(0..<n), config: config, progressStyle: .quiet))
    }
}

import LigandData
