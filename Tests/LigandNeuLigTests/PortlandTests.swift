import XCTest
import LigandCollective
import LigandNumerics
@testable import LigandNeuLig

/// Synthetic tasks and regularisers shared by the Portland tests.
struct Fixture {
    let K = 4, d = 6, classes = 3

    /// Synthetic tasks: per model, features for each task's samples; heads random.
    /// Model t's features carry task t's label (a bump at feature `label`, which the head reads); the others are noise.
    func makeTasks(local: Range<Int>, samples: Int = 20, seed: UInt64 = 1) -> [PortlandTask] {
        (0..<2).map { ti in
            var rng = SeededRNG(seed: seed, stream: "task-\(ti)")
            let head = (0..<(classes * d)).map { i in (i / d == i % d ? 2.0 : 0) + 0.2 * rng.normal() }
            let bias = (0..<classes).map { _ in 0.1 * rng.normal() }
            let labels = (0..<samples).map { _ in rng.int(below: classes) }
            let feats = local.map { k -> [Float] in
                var r = SeededRNG(seed: seed, stream: "features-\(ti)-\(k)")
                return (0..<(samples * d)).map { i in Float(r.normal()) + (k == ti && labels[i / d] == i % d ? 2 : 0) }
            }
            return PortlandTask(name: "t\(ti)", headWeight: head, headBias: bias, labels: labels, features: feats)
        }
    }

    func regularizer(_ kind: RegularizerKind) -> [Double] {
        switch kind {
        case .paper: return [0.9, -1.2, 0.4, -0.1]
        case .gram:
            var g = [Double](repeating: 0, count: K * K)
            for i in 0..<K { for j in 0..<K { g[i * K + j] = Double(min(i, j) + 1) * 0.3 } }
            return g
        case .none: return []
        }
    }
}

final class PortlandTests: XCTestCase {
    let fixture = Fixture()
    var K: Int { fixture.K }
    var d: Int { fixture.d }
    func makeTasks(local: Range<Int>, samples: Int = 20, seed: UInt64 = 1) -> [PortlandTask] { fixture.makeTasks(local: local, samples: samples, seed: seed) }
    func regularizer(_ kind: RegularizerKind) -> [Double] { fixture.regularizer(kind) }

    func testDistributedGradientMatchesFiniteDifferences() throws {
        for loss in AlignLoss.allCases {
            for reg in RegularizerKind.allCases {
                var config = PortlandConfig()
                config.loss = loss; config.regularizer = reg; config.scaling = 3
                let ranks = 2
                let errors = try InProcessCommunicator.run(size: ranks) { comm -> Double in
                    let local = blockRange(count: self.K, parts: ranks, part: comm.rank)
                    let p = try Portland(comm: comm, totalModels: self.K, localModels: local, width: self.d,
                                         tasks: self.makeTasks(local: local), regularizer: self.regularizer(reg), config: config)
                    let rows = Array(0..<12)
                    let (_, gW, gB) = try p.lossAndGradients(task: 1, rows: rows)
                    var worst = 0.0
                    let h = 1e-6
                    // Every model's first entries of W, perturbed on the rank that owns them.
                    for k in 0..<self.K {
                        let owner = (0..<ranks).first { blockRange(count: self.K, parts: ranks, part: $0).contains(k) }!
                        for e in [0, 7, self.d * self.K - 1] {
                            let i = (k - local.lowerBound) * self.d * self.K + e
                            if comm.rank == owner { p.perturbWeight(i, by: h) }
                            let fp = try p.loss(task: 1, rows: rows)
                            if comm.rank == owner { p.perturbWeight(i, by: -2 * h) }
                            let fm = try p.loss(task: 1, rows: rows)
                            if comm.rank == owner { p.perturbWeight(i, by: h) }
                            if comm.rank == owner {
                                let num = (fp - fm) / (2 * h)
                                worst = max(worst, abs(num - gW[i]) / max(abs(num) + abs(gW[i]), 1e-7))
                            }
                        }
                    }
                    for j in 0..<self.K {
                        p.perturbBias(j, by: h); let fp = try p.loss(task: 1, rows: rows)
                        p.perturbBias(j, by: -2 * h); let fm = try p.loss(task: 1, rows: rows)
                        p.perturbBias(j, by: h)
                        let num = (fp - fm) / (2 * h)
                        worst = max(worst, abs(num - gB[j]) / max(abs(num) + abs(gB[j]), 1e-7))
                    }
                    return worst
                }
                XCTAssertLessThan(errors.max()!, 1e-4, "\(loss)/\(reg): relative gradient error \(errors)")
            }
        }
    }

    func testIdenticalWeightsForOneToFourRanks() throws {
        var config = PortlandConfig()
        config.loss = .ensemble; config.regularizer = .paper; config.batchSize = 8; config.learningRate = 0.05
        var finals: [[Double]] = []
        for ranks in 1...4 {
            let states = try InProcessCommunicator.run(size: ranks) { comm -> [Double] in
                let local = blockRange(count: self.K, parts: ranks, part: comm.rank)
                let p = try Portland(comm: comm, totalModels: self.K, localModels: local, width: self.d,
                                     tasks: self.makeTasks(local: local), regularizer: self.regularizer(.paper), config: config)
                for _ in 0..<5 { try p.trainEpoch() }
                // Gather every rank's W blocks in model order, plus the (replicated) bias.
                return try comm.allgatherv(p.weights).flatMap { $0 } + p.bias
            }
            for s in states { XCTAssertEqual(s, states[0]) }
            finals.append(states[0])
        }
        for f in finals { XCTAssertEqual(f, finals[0], "W differs between rank counts") }
    }

    func testSupervisedPortlandPrefersTheInformativeExpert() throws {
        var config = PortlandConfig()
        config.loss = .sup; config.regularizer = .none; config.batchSize = 10; config.learningRate = 0.05
        let (perTask, global) = try InProcessCommunicator.run(size: 1) { comm in
            let p = try Portland(comm: comm, totalModels: self.K, localModels: 0..<self.K, width: self.d,
                                 tasks: self.makeTasks(local: 0..<self.K, samples: 60), regularizer: [], config: config)
            for _ in 0..<60 { try p.trainEpoch() }
            return try p.meanCoefficients()
        }[0]
        // Task t's informative features come from model t.
        for t in 0..<2 {
            XCTAssertEqual(perTask[t].firstIndex(of: perTask[t].max()!), t, "task \(t): β̄ = \(perTask[t])")
            XCTAssertEqual(perTask[t].reduce(0, +), 1, accuracy: 1e-9)
        }
        XCTAssertEqual(global.reduce(0, +), 1, accuracy: 1e-9)
    }

    /// Standardised inputs make β blind to a per-dimension affine change of a model's features; raw inputs do not.
    func testStandardFeaturesAreInvariantToAffineFeatureChanges() throws {
        func betas(_ norm: FeatureNorm, affine: Bool) throws -> [Double] {
            var config = PortlandConfig()
            config.loss = .sup; config.regularizer = .none; config.batchSize = 10; config.learningRate = 0.05; config.featureNorm = norm
            return try InProcessCommunicator.run(size: 1) { comm -> [Double] in
                var tasks = self.makeTasks(local: 0..<self.K, samples: 40)
                if affine {
                    // All-positive, large and unevenly scaled, like global-pooled ReLU features of a CNN.
                    // The head absorbs the change (W/a, b − (W/a)·40), so only the Portland's input differs.
                    tasks = tasks.map { t in
                        let w = t.headWeight.enumerated().map { i, v in v / Double(1 + i % self.d) }
                        let bias = (0..<self.fixture.classes).map { c in t.headBias[c] - (0..<self.d).reduce(0.0) { $0 + w[c * self.d + $1] * 40 } }
                        return PortlandTask(name: t.name, headWeight: w, headBias: bias, labels: t.labels,
                                     features: t.features.map { f in f.enumerated().map { i, v in v * Float(1 + i % self.d) + 40 } })
                    }
                }
                let p = try Portland(comm: comm, totalModels: self.K, localModels: 0..<self.K, width: self.d,
                                     tasks: tasks, regularizer: [], config: config)
                for _ in 0..<10 { try p.trainEpoch() }
                return try p.betas(task: 0)
            }[0]
        }
        let plain = try betas(.standard, affine: false), moved = try betas(.standard, affine: true)
        XCTAssertEqual(plain.count, moved.count)
        XCTAssertLessThan(zip(plain, moved).map { abs($0 - $1) }.max()!, 1e-4)
        let rawPlain = try betas(.none, affine: false), rawMoved = try betas(.none, affine: true)
        XCTAssertGreaterThan(zip(rawPlain, rawMoved).map { abs($0 - $1) }.max()!, 1e-2)
    }

    func testCheckpointRestoreContinuesBitwise() throws {
        var config = PortlandConfig()
        config.batchSize = 8
        let results = try InProcessCommunicator.run(size: 2) { comm -> Bool in
            let local = blockRange(count: self.K, parts: 2, part: comm.rank)
            let make = { try Portland(comm: comm, totalModels: self.K, localModels: local, width: self.d,
                                      tasks: self.makeTasks(local: local), regularizer: self.regularizer(.paper), config: config) }
            let a = try make()
            for _ in 0..<6 { try a.trainEpoch() }
            let b = try make()
            for _ in 0..<3 { try b.trainEpoch() }
            let c = try make()
            try c.restore(b.state)
            for _ in 0..<3 { try c.trainEpoch() }
            return c.state == a.state
        }
        XCTAssertEqual(results, [true, true])
    }

    func testBadInputIsRefused() throws {
        var config = PortlandConfig()
        config.learningRate = 0
        XCTAssertThrowsError(try Portland(comm: InProcessCommunicator.single(), totalModels: K, localModels: 0..<K, width: d,
                                          tasks: makeTasks(local: 0..<K), regularizer: regularizer(.paper), config: config)) { e in
            XCTAssertTrue("\(e)".contains("learning rate"), "\(e)")
        }
        var tasks = makeTasks(local: 0..<K)
        tasks[0] = PortlandTask(name: "empty", headWeight: tasks[0].headWeight, headBias: tasks[0].headBias, labels: [], features: Array(repeating: [], count: K))
        XCTAssertThrowsError(try Portland(comm: InProcessCommunicator.single(), totalModels: K, localModels: 0..<K, width: d,
                                          tasks: tasks, regularizer: regularizer(.paper), config: PortlandConfig())) { e in
            XCTAssertTrue("\(e)".contains("'empty'") && "\(e)".contains("empty"), "\(e)")
        }
        let wrongWidth = makeTasks(local: 0..<K)
        XCTAssertThrowsError(try Portland(comm: InProcessCommunicator.single(), totalModels: K, localModels: 0..<K, width: d + 1,
                                          tasks: wrongWidth, regularizer: regularizer(.paper), config: PortlandConfig()))
    }

    func testRegularizerScoresFromParameters() throws {
        let params: [[Float]] = [[1, 2, 3], [2, 2, 2], [0, 1, 5], [4, 0, 0]]
        let both = try InProcessCommunicator.run(size: 3) { comm -> ([Double], [Double]) in
            let local = blockRange(count: 4, parts: 3, part: comm.rank)
            let mine = Array(params[local])
            return (try PortlandRegularizer.paperScores(localParameters: mine, localModels: local, totalModels: 4, comm: comm),
                    try PortlandRegularizer.gram(localParameters: mine, localModels: local, totalModels: 4, comm: comm))
        }
        // θ̄ = [1.75, 1.25, 2.5]; sums of offsets: 0.5, 0.5, 0.5, -1.5 → standardised.
        let s = [0.5, 0.5, 0.5, -1.5]
        let mu = 0.0, sd = (s.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 3).squareRoot()
        for (scores, gram) in both {
            for k in 0..<4 { XCTAssertEqual(scores[k], (s[k] - mu) / sd, accuracy: 1e-12) }
            let mean: [Double] = [1.75, 1.25, 2.5]
            for i in 0..<4 { for j in 0..<4 {
                let dot = (0..<3).reduce(0.0) { $0 + (Double(params[i][$1]) - mean[$1]) * (Double(params[j][$1]) - mean[$1]) } / 3
                XCTAssertEqual(gram[i * 4 + j], dot, accuracy: 1e-12)
            } }
        }
    }
}

final class FusionAndCheckpointTests: XCTestCase {
    func testWeightedFusionIsRankCountIndependentAndCorrect() throws {
        var rng = SeededRNG(seed: 4)
        let models: [[(name: String, value: Tensor)]] = (0..<5).map { _ in
            [("a.weight", Tensor.randomNormal([3, 4], rng: &rng)), ("a.bias", Tensor.randomNormal([3], rng: &rng))]
        }
        let beta = [0.1, 0.3, 0.05, 0.5, 0.05]
        var results: [[Float]] = []
        let layout = models[0].map { (name: $0.name, shape: $0.value.shape) }
        // Up to 6 ranks for 5 models: a rank holding none receives the fused tensors too.
        for ranks in 1...6 {
            let out = try InProcessCommunicator.run(size: ranks) { comm -> [Float] in
                let local = ModelShard(total: 5, comm: comm).local
                return try WeightedFusion.fuse(localTensors: Array(models[local]), coefficients: beta, localModels: local, layout: layout, comm: comm)
                    .flatMap { $0.value.storage }
            }
            results += out
        }
        for r in results { XCTAssertEqual(r, results[0]) }
        let expected0 = (0..<5).reduce(0.0) { $0 + beta[$1] * Double(models[$1][0].value.storage[0]) }
        XCTAssertEqual(Double(results[0][0]), expected0, accuracy: 1e-6)
    }

    func testCheckpointResumeGivesTheSameWeights() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = Fixture()
        var config = PortlandConfig()
        config.batchSize = 8
        let same = try InProcessCommunicator.run(size: 2) { comm -> Bool in
            let local = blockRange(count: t.K, parts: 2, part: comm.rank)
            let make = { try Portland(comm: comm, totalModels: t.K, localModels: local, width: t.d,
                                      tasks: t.makeTasks(local: local), regularizer: t.regularizer(.paper), config: config) }
            let straight = try make()
            for _ in 0..<6 { try straight.trainEpoch() }
            let first = try make()
            XCTAssertEqual(try PortlandCheckpoint.resume(first, directory: dir), 0)
            for _ in 0..<3 { try first.trainEpoch() }
            try PortlandCheckpoint.save(first, directory: dir)
            try comm.barrier()
            let second = try make()
            XCTAssertEqual(try PortlandCheckpoint.resume(second, directory: dir), 3)
            for _ in 0..<3 { try second.trainEpoch() }
            return second.state == straight.state
        }
        XCTAssertEqual(same, [true, true])
    }
}
