import XCTest
import LigandCollective
import LigandNumerics
@testable import LigandNeuLig

/// The same-task Portland: every model reads its own head, y = Σ_k β_k(x) h_k(f_k(x)).
final class SameTaskPortlandTests: XCTestCase {
    let fixture = Fixture()

    func heads(_ local: Range<Int>, seed: UInt64 = 9) -> [PortlandHead] {
        local.map { k in
            var rng = SeededRNG(seed: seed, stream: "head-\(k)")
            return PortlandHead(weight: (0..<(fixture.classes * fixture.d)).map { _ in rng.normal() },
                                bias: (0..<fixture.classes).map { _ in 0.1 * rng.normal() })
        }
    }

    func ownHeadTask(_ local: Range<Int>, heads h: [PortlandHead]) -> PortlandTask {
        let t = fixture.makeTasks(local: local)[0]
        return PortlandTask(name: "same", classes: fixture.classes, localHeads: h, labels: t.labels, features: t.features)
    }

    /// With every model given the task's head, the own-head path trains exactly like the shared-head one.
    func testOwnHeadsEqualToTheSharedHeadTrainLikeIt() throws {
        var config = PortlandConfig()
        config.loss = .sup; config.batchSize = 8; config.learningRate = 0.05
        let k = fixture.K, d = fixture.d
        let shared = fixture.makeTasks(local: 0..<k)[0]
        let copies = [PortlandHead](repeating: PortlandHead(weight: shared.headWeight, bias: shared.headBias), count: k)
        let own = PortlandTask(name: shared.name, classes: fixture.classes, localHeads: copies, labels: shared.labels, features: shared.features)
        let comm = InProcessCommunicator.single()
        let a = try Portland(comm: comm, totalModels: k, localModels: 0..<k, width: d, tasks: [shared], regularizer: fixture.regularizer(.paper), config: config)
        let b = try Portland(comm: comm, totalModels: k, localModels: 0..<k, width: d, tasks: [own], regularizer: fixture.regularizer(.paper), config: config)
        for _ in 0..<4 { try a.trainEpoch(); try b.trainEpoch() }
        XCTAssertEqual(a.state, b.state)
    }

    /// The loss is Σ_k β_k h_k(f_k) with each model's own head: checked against a direct serial computation.
    func testPredictionUsesEachModelsOwnHead() throws {
        var config = PortlandConfig()
        config.loss = .sup; config.regularizer = .none
        let k = fixture.K, d = fixture.d, c = fixture.classes
        let h = heads(0..<k)
        let task = ownHeadTask(0..<k, heads: h)
        let p = try Portland(comm: InProcessCommunicator.single(), totalModels: k, localModels: 0..<k, width: d, tasks: [task], regularizer: [], config: config)
        let rows = Array(0..<task.count)
        let beta = try p.betas(task: 0)
        var expected = 0.0
        for r in rows {
            var y = [Double](repeating: 0, count: c)
            for m in 0..<k {
                for j in 0..<c {
                    var u = h[m].bias[j]
                    for q in 0..<d { u += h[m].weight[j * d + q] * Double(task.features[m][r * d + q]) }
                    y[j] += beta[r * k + m] * u
                }
            }
            let mx = y.max()!
            let lse = mx + log(y.reduce(0) { $0 + exp($1 - mx) })
            expected += lse - y[task.labels[r]]
        }
        XCTAssertEqual(try p.loss(task: 0, rows: rows), expected / Double(rows.count), accuracy: 1e-10)
    }

    /// Gradients of the own-head loss agree with finite differences and are the same for 1, 2 and 3 ranks.
    func testGradientsAndRankCountIndependence() throws {
        var config = PortlandConfig()
        config.loss = .ensemble; config.regularizer = .gram; config.batchSize = 8; config.learningRate = 0.05
        let k = fixture.K, d = fixture.d
        let single = try Portland(comm: InProcessCommunicator.single(), totalModels: k, localModels: 0..<k, width: d,
                                  tasks: [ownHeadTask(0..<k, heads: heads(0..<k))], regularizer: fixture.regularizer(.gram), config: config)
        let rows = Array(0..<10)
        let (_, gW, gB) = try single.lossAndGradients(task: 0, rows: rows)
        let h = 1e-6
        for i in [0, 7, 23, gW.count - 1] {
            single.perturbWeight(i, by: h); let up = try single.loss(task: 0, rows: rows)
            single.perturbWeight(i, by: -2 * h); let down = try single.loss(task: 0, rows: rows)
            single.perturbWeight(i, by: h)
            XCTAssertEqual((up - down) / (2 * h), gW[i], accuracy: 1e-6 + 1e-4 * abs(gW[i]), "dW[\(i)]")
        }
        single.perturbBias(1, by: h); let up = try single.loss(task: 0, rows: rows)
        single.perturbBias(1, by: -2 * h); let down = try single.loss(task: 0, rows: rows)
        single.perturbBias(1, by: h)
        XCTAssertEqual((up - down) / (2 * h), gB[1], accuracy: 1e-6 + 1e-4 * abs(gB[1]))

        var finals: [[Double]] = []
        for ranks in 1...3 {
            let states = try InProcessCommunicator.run(size: ranks) { comm -> [Double] in
                let local = blockRange(count: k, parts: ranks, part: comm.rank)
                let p = try Portland(comm: comm, totalModels: k, localModels: local, width: d, tasks: [self.ownHeadTask(local, heads: self.heads(local))],
                                     regularizer: self.fixture.regularizer(.gram), config: config)
                for _ in 0..<3 { try p.trainEpoch() }
                return try comm.allgatherv(p.weights).flatMap { $0 } + p.bias
            }
            finals.append(states[0])
        }
        for f in finals { XCTAssertEqual(f, finals[0]) }
    }

    func testHeadOfAnotherWidthIsRefused() throws {
        let k = fixture.K
        var h = heads(0..<k)
        h[2] = PortlandHead(weight: [Double](repeating: 0.1, count: fixture.classes * (fixture.d + 2)), bias: [Double](repeating: 0, count: fixture.classes))
        XCTAssertThrowsError(try Portland(comm: InProcessCommunicator.single(), totalModels: k, localModels: 0..<k, width: fixture.d,
                                          tasks: [ownHeadTask(0..<k, heads: h)], regularizer: fixture.regularizer(.paper), config: PortlandConfig())) { e in
            XCTAssertTrue("\(e)".contains("model 2's head") && "\(e)".contains("different feature widths"), "\(e)")
        }
    }
}
