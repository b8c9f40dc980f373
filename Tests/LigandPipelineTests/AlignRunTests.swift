import XCTest
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics
@testable import LigandPipeline

final class AlignRunTests: XCTestCase {
    static let mlp = Architecture.mlp(hidden: [12, 8], input: [4, 4, 1], classes: 3)
    static let resnet = Architecture.resnet20(width: 1, input: [6, 6, 1], classes: 3)

    func images(_ arch: Architecture, _ n: Int, seed: UInt64) -> LabeledImages {
        var rng = SeededRNG(seed: seed, stream: "align-test-images")
        let size = arch.input.reduce(1, *)
        let pixels = (0..<(n * size)).map { _ in Float(rng.normal()) }
        let labels = (0..<n).map { _ in rng.int(below: arch.classes) }
        return LabeledImages(height: arch.input[0], width: arch.input[1], channels: arch.input[2], pixels: pixels, labels: labels, classCount: arch.classes)
    }

    /// Randomised weights including biases (so no unit is dead by construction).
    func model(_ arch: Architecture, seed: UInt64) throws -> Network<Float> {
        let net = try Network<Float>(arch, seed: seed)
        var rng = SeededRNG(seed: seed, stream: "align-test-model")
        var s = net.stateDictionary()
        for (name, t) in s where t.rank == 1 && !name.hasSuffix("running_var") && !name.hasSuffix(".weight") {
            s[name] = Tensor(shape: t.shape, storage: (0..<t.count).map { _ in Float(0.1 + 0.1 * rng.normal()) })
        }
        try net.load(s)
        return net
    }

    func inputs(_ arch: Architecture, models: [Network<Float>]) -> SameTaskInputs {
        SameTaskInputs(suite: "synthetic", names: models.indices.map { "m\($0)" }, architectures: models.map(\.architecture),
                       load: { models[$0] }, calibration: images(arch, 120, seed: 1), test: images(arch, 90, seed: 2), train: images(arch, 300, seed: 3))
    }

    func options(_ m: any MergeMethod.Type) -> MergeOptions {
        var o = MergeOptions(method: m, suite: "synthetic", outDirectory: URL(fileURLWithPath: "/nonexistent"))
        try! o.parameters.set(CCA.gammas, numbers: [1e-3, 1e-1, 10])
        o.batchSize = 50
        try! o.parameters.set(CommonParameters.bnSamples, integer: 256)
        o.quiet = true
        return o
    }

    func bits(_ net: Network<Float>) -> [UInt32] { net.stateDict().flatMap { $0.value.storage.map(\.bitPattern) } }

    /// Every method, on 1, 2 and 3 in-process ranks: the fused weights are bitwise the same on every rank and for every rank count.
    func testFusedWeightsBitwiseIdenticalAcrossRankCounts() throws {
        for arch in [Self.mlp, Self.resnet] {
            let models = try (0..<4).map { try model(arch, seed: 10 + UInt64($0)) }
            // ResNet-20 is slow in debug builds: its BN and stream handling is covered by the alignment methods with data.
            let methods: [any MergeMethod.Type] = arch.kind == .mlp ? [Average.self, WeightMatching.self, Permute.self, CCA.self] : [Permute.self, CCA.self]
            for method in methods {
                var reference: [UInt32]?
                var referenceRows: [Double]?
                for size in [1, 2, 3] {
                    let input = inputs(arch, models: models)
                    let o = options(method)
                    let results = try InProcessCommunicator.run(size: size) { comm in
                        try MergeRun.mergeSameTask(input, options: o, comm: comm)
                    }
                    for r in results {
                        let b = bits(r.fused!)
                        if let ref = reference { XCTAssertEqual(b, ref, "\(arch.kind) \(method) at \(size) ranks") } else { reference = b }
                        let accs = r.report.rows.map(\.mean)
                        if let ref = referenceRows { XCTAssertEqual(accs, ref, "\(arch.kind) \(method) report at \(size) ranks") } else { referenceRows = accs }
                    }
                    if method == CCA.self { XCTAssertNotNil(results[0].report.hyperparameters["gamma"]) }
                }
            }
        }
    }

    /// With every model on one rank, the pipeline's permutation merge equals LigandMerge's serial alignAndAverage (MLP: no BN re-estimation).
    func testOneRankMatchesSerialAlignAndAverage() throws {
        let arch = Self.mlp
        let models = try (0..<3).map { try model(arch, seed: 30 + UInt64($0)) }
        let input = inputs(arch, models: models)
        let graph = try MergeGraph(arch)
        var maps: [[String: PointMap]?] = [nil]
        for m in models.dropFirst() {
            var s = ModelPairStatistics(graph: graph)
            for lo in stride(from: 0, to: 120, by: 50) {
                let x = MergeRun.batch(input.calibration, Array(lo..<min(120, lo + 50)))
                try s.accumulate(reference: models[0], model: m, batch: x)
            }
            maps.append(try permutationMaps(s))
        }
        let serial = try alignAndAverage(models.map { $0.stateDictionary() }, maps: maps, graph: graph)
        let r = try MergeRun.mergeSameTask(input, options: options(Permute.self), comm: InProcessCommunicator.single())
        XCTAssertEqual(r.fused!.stateDictionary(), serial)
    }

    /// A model merged with a copy of itself whose hidden units are permuted gives back the model, exactly.
    func testPermutedCopyIsAlignedBack() throws {
        let arch = Self.mlp
        let graph = try MergeGraph(arch)
        let original = try model(arch, seed: 5)
        var rng = SeededRNG(seed: 8)
        let maps = try Dictionary(uniqueKeysWithValues: graph.points.map { ($0.name, try PointMap.permutation(rng.permutation($0.channels))) })
        let permuted = try Network<Float>(arch, seed: 0)
        try permuted.load(try applyMaps(original.stateDictionary(), maps: maps, graph: graph))
        XCTAssertNotEqual(permuted.stateDictionary(), original.stateDictionary())
        for method: any MergeMethod.Type in [Permute.self, WeightMatching.self] {
            let r = try InProcessCommunicator.run(size: 2) { comm in
                try MergeRun.mergeSameTask(self.inputs(arch, models: [original, permuted]), options: self.options(method), comm: comm)
            }
            XCTAssertEqual(r[0].fused!.stateDictionary(), original.stateDictionary(), "\(method)")
            let fusedRow = r[0].report.rows.first { $0.kind == .fused }!
            XCTAssertEqual(fusedRow.mean, r[0].report.rows.first { $0.name.hasPrefix("reference") }!.mean, "\(method)")
        }
        // CCA reports each mapped model's own calibration accuracy: the permuted copy mapped back scores as the original,
        // the same for any rank count.
        let calibration = images(arch, 120, seed: 1)
        let own = try MergeRun.hits(original, calibration, comm: InProcessCommunicator.single()) / 120
        for size in [1, 2] {
            let r = try InProcessCommunicator.run(size: size) { comm in
                try MergeRun.mergeSameTask(self.inputs(arch, models: [original, permuted]), options: self.options(CCA.self), comm: comm)
            }
            XCTAssertEqual(r[0].report.calibrationScores["aligned m1"]!, own, accuracy: 1.0 / 120 + 1e-12, "-np \(size)")
            XCTAssertNil(r[0].report.calibrationScores["aligned m0"], "the reference is not mapped")
        }
    }

    /// BN folded before mapping (fold) and REPAIR (repair): a BatchNorm VGG merged with a permuted copy of itself
    /// computes the model's logits again (fold: exactly up to rounding; repair: up to batch-versus-population
    /// statistics), and the fused weights do not depend on the rank count.
    func testFoldAndRepairGiveBackAPermutedCopy() throws {
        let arch = Architecture.vgg([.conv(6), .pool, .conv(8)], input: [6, 6, 1], classes: 3, batchNorm: true)
        let graph = try MergeGraph(arch)
        let original = try model(arch, seed: 6)
        // Running statistics of real activations, so that eval-mode BN is a sensible normalisation.
        try reestimateBatchNorm(original, batches: [MergeRun.batch(images(arch, 300, seed: 3), Array(0..<300))])
        var rng = SeededRNG(seed: 9)
        let maps = try Dictionary(uniqueKeysWithValues: graph.points.map { ($0.name, try PointMap.permutation(rng.permutation($0.channels))) })
        let permuted = try Network<Float>(arch, seed: 0)
        try permuted.load(try applyMaps(original.stateDictionary(), maps: maps, graph: graph))
        let x = MergeRun.batch(images(arch, 64, seed: 4), Array(0..<64))
        let want = original.forward(x)
        for (handling, tolerance) in [(BatchNormHandling.fold, Float(1e-4)), (.repair, Float(0.05))] {
            var o = options(Permute.self)
            try o.parameters.set(CommonParameters.batchNorm, text: handling.rawValue)
            var first: [UInt32]?
            for size in [1, 2] {
                let r = try InProcessCommunicator.run(size: size) { comm in
                    try MergeRun.mergeSameTask(self.inputs(arch, models: [original, permuted]), options: o, comm: comm)
                }
                let got = r[0].fused!.forward(x)
                let err = zip(want.storage, got.storage).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(err, tolerance * max(1, want.maxAbs()), "\(handling) at \(size) ranks")
                XCTAssertEqual(r[0].report.hyperparameters["batch_norm"], handling.rawValue)
                if let f = first { XCTAssertEqual(bits(r[0].fused!), f, "\(handling): 1 versus 2 ranks") } else { first = bits(r[0].fused!) }
            }
        }
    }

    func testReferenceRuleBestPicksHighestCalibrationAccuracy() throws {
        let arch = Self.mlp
        let models = try (0..<3).map { try model(arch, seed: 40 + UInt64($0)) }
        var o = options(Permute.self)
        try o.parameters.set(CommonParameters.reference, text: "best")
        let r = try InProcessCommunicator.run(size: 2) { comm in try MergeRun.mergeSameTask(self.inputs(arch, models: models), options: o, comm: comm) }
        let report = r[0].report
        let cal = report.models.map { name in Double(report.rows.first { $0.name == name }!.hyperparameters["calibration"]!)! }
        let best = cal.indices.max { cal[$0] < cal[$1] || (cal[$0] == cal[$1] && $0 > $1) }!
        XCTAssertEqual(report.reference, report.models[best])
        XCTAssertEqual(report.referenceRule, "best")
    }

    func assertError(_ size: Int, _ input: SameTaskInputs, _ o: MergeOptions, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: size) { comm in try MergeRun.mergeSameTask(input, options: o, comm: comm) },
                             file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "\(error) should mention '\(text)'", file: file, line: line)
            if let e = error as? PipelineError { XCTAssertTrue(e.everyRank, file: file, line: line) }
            else { XCTFail("\(type(of: error)) is not an PipelineError: \(error)", file: file, line: line) }
        }
    }

    func testBadInputGivesOneClearError() throws {
        let arch = Self.mlp
        let models = try (0..<3).map { try model(arch, seed: 50 + UInt64($0)) }
        assertError(2, inputs(arch, models: [models[0]]), options(CCA.self), contains: "at least two models")
        let other = try model(.mlp(hidden: [12, 9], input: [4, 4, 1], classes: 3), seed: 1)
        var mixed = inputs(arch, models: models)
        mixed.architectures[2] = other.architecture
        assertError(2, mixed, options(Permute.self), contains: "different architectures")
        var o = options(CCA.self)
        try o.parameters.set(CommonParameters.reference, text: "3")
        assertError(2, inputs(arch, models: models), o, contains: "--reference 3 is out of range")
        o = options(CCA.self)
        // A γ grid that cannot work is refused by its declaration (Methods/CCA.swift) before any run.
        XCTAssertThrowsError(try o.parameters.set(CCA.gammas, numbers: [1e-3, 0])) { XCTAssertTrue("\($0)".contains("--gammas: every γ must be finite and > 0"), "\($0)") }
        XCTAssertThrowsError(try o.parameters.set(CCA.gammas, numbers: [-1])) { XCTAssertTrue("\($0)".contains("--gammas"), "\($0)") }
        assertError(1, inputs(arch, models: models), options(TIES.self), contains: "tasks suite")
        // A dense stream map is a ViT's; CLIP's norm_pre feeds the stream itself, so there is no layer to fold it into.
        o = options(CCA.self)
        try o.parameters.set(CCA.stream, text: "dense")
        assertError(2, inputs(arch, models: models), o, contains: "stream: dense applies to a ViT's residual stream; this is a mlp")
        let clip = Architecture.clip(patch: 2, width: 4, depth: 1, heads: 2, embed: 3, input: [4, 4, 1], classes: 3)
        let clips = try (0..<2).map { try model(clip, seed: 70 + UInt64($0)) }
        assertError(2, inputs(clip, models: clips), o, contains: "LayerNorm 'norm_pre' normalises the residual stream itself")
        // A dead layer (every unit constant): CCA cannot estimate a map; the rank holding it names the model and point.
        let dead = try model(arch, seed: 60)
        var s = dead.stateDictionary()
        s["layers.0.weight"] = Tensor(zeros: s["layers.0.weight"]!.shape)
        s["layers.0.bias"] = Tensor(shape: s["layers.0.bias"]!.shape, repeating: -1)
        try dead.load(s)
        assertError(3, inputs(arch, models: [models[0], models[1], dead]), options(CCA.self), contains: "m2")
        assertError(3, inputs(arch, models: [models[0], models[1], dead]), options(CCA.self), contains: "dead layer")
    }

    // MARK: tasks

    /// A one-expert-per-rank context over flat vectors (the task-vector methods' maths, away from any network).
    func context(_ comm: Communicator, pretrained: [Double], experts: [[Double]], isParameter: [Bool]) throws -> TaskVectorContext {
        let shard = ModelShard(total: experts.count, comm: comm)
        let average = try shard.sum(shard.local.map { experts[$0] }).map { $0 / Double(experts.count) }
        // One one-element tensor per coordinate; a running statistic where isParameter is false.
        let layout = FlatLayout(isParameter.enumerated().map { (name: $1 ? "p\($0).bias" : "bn\($0).running_mean", value: Tensor(zeros: [1])) })
        return TaskVectorContext(shard: shard, experts: shard.local.map { experts[$0] }, pretrained: pretrained, average: average,
                                 layout: layout, parameters: ParameterValues(), seed: 0) { _ in 0 }
    }

    func testTaskArithmeticIdentities() throws {
        let pre: [Double] = [1, -2, 0.5, 7], a: [Double] = [3, 0.25, -1, 9], b: [Double] = [-1, 4, 2, 5]
        let isParameter = [true, true, true, false]   // the last: a BN running statistic, averaged
        for size in [1, 2] {
            let out = try InProcessCommunicator.run(size: size) { comm -> [[Double]] in
                let one = try self.context(comm, pretrained: pre, experts: [a, a], isParameter: isParameter)
                let two = try self.context(comm, pretrained: pre, experts: [a, b], isParameter: isParameter)
                return [one.combine(try one.taskVectorSum(one.experts), 0.5), one.combine(try one.taskVectorSum(one.experts), 0),
                        two.combine(try two.taskVectorSum(two.experts), 1)]
            }
            for o in out {
                XCTAssertEqual(o[0], a, "\(size) ranks: λ = 1/K of K copies of one expert is that expert")
                XCTAssertEqual(o[1], [1, -2, 0.5, 9], "λ = 0: the pretrained parameters, the experts' average statistic")
                XCTAssertEqual(o[2], [1, 6.25, 0.5, 7], "θ_pre + Σ(θ_k − θ_pre); the statistic averaged")
            }
        }
    }

    func testTIESOnHandMadeVectorsForAnyRankCount() throws {
        // keep 50% = 3 entries per task vector (thresholds 2, 2, 1):
        // t1 → [3, -2, 0, 0, 0, -4], t2 → [0, -3, 0, 2, 5, 0], t3 → [-2, 1, 0, 0, 0, 2]
        // sums: [1, -4, 0, 2, 5, -2] → signs [+, −, none, +, +, −]; disjoint means: [3, (−2−3)/2, 0, 2, 5, −4]
        let taus: [[Double]] = [[3, -2, 0.1, 1, 0, -4], [-1, -3, 0.2, 2, 5, 0], [-2, 1, -0.3, -0.5, 0, 2]]
        let all = [Bool](repeating: true, count: 6)
        var rng = SeededRNG(seed: 3)
        let n = 200
        let pre = (0..<n).map { _ in rng.normal() }
        let random = (0..<5).map { _ in pre.map { $0 + 0.3 * rng.normal() } }
        var reference: [Double]?
        for size in [1, 2, 3] {
            let out = try InProcessCommunicator.run(size: size) { comm -> [[Double]] in
                let zero = try self.context(comm, pretrained: [Double](repeating: 0, count: 6), experts: taus, isParameter: all)
                let one = try self.context(comm, pretrained: [Double](repeating: 1, count: 6), experts: taus.map { $0.map { $0 + 1 } }, isParameter: all)
                let r = try self.context(comm, pretrained: pre, experts: random, isParameter: [Bool](repeating: true, count: n))
                func ties(_ c: TaskVectorContext, _ keep: Double) throws -> [Double] {
                    try TIES.mergedTaskVector(localExperts: c.experts, pretrained: c.pretrained, isParameter: c.isParameter, keepFraction: keep, shard: c.shard)
                }
                return [zero.combine(try ties(zero, 0.5), 1), one.combine(try ties(one, 0.5), 0.5), r.combine(try ties(r, 0.2), 1)]
            }
            for o in out {
                XCTAssertEqual(o[0], [3, -2.5, 0, 2, 5, -4], "\(size) ranks")
                XCTAssertEqual(o[1], [2.5, -0.25, 1, 2, 3.5, -1], "\(size) ranks")
                if let ref = reference { XCTAssertEqual(o[2].map(\.bitPattern), ref.map(\.bitPattern), "\(size) ranks: the serial result") } else { reference = o[2] }
            }
        }
    }

    func testTasksMergeIsRankCountIndependent() throws {
        let arch = Architecture.mlp(hidden: [10], input: [4, 4, 1], classes: 3)
        let pre = try model(arch, seed: 70)
        var rng = SeededRNG(seed: 71)
        let experts: [Network<Float>] = try (0..<3).map { _ in
            let e = try Network<Float>(arch, seed: 0)
            try e.load(pre.stateDictionary().mapValues { t in Tensor(shape: t.shape, storage: t.storage.map { $0 + Float(0.05 * rng.normal()) }) })
            return e
        }
        let heads = experts.map { (weight: $0.head.weight.value, bias: $0.head.bias!.value) }
        let input = TasksInputs(suite: "synthetic", tasks: ["a", "b", "c"], architectures: experts.map(\.architecture), load: { experts[$0] },
                                heads: heads, pretrained: pre, calibration: (0..<3).map { images(arch, 60, seed: 80 + UInt64($0)) },
                                test: (0..<3).map { images(arch, 60, seed: 90 + UInt64($0)) })
        for method: any MergeMethod.Type in [Average.self, TaskArithmetic.self, TIES.self] {
            var o = options(method)
            try o.parameters.set(TaskArithmetic.lambdas, numbers: [0.3, 0.6])
            try o.parameters.set(TIES.keep, numbers: [0.2, 0.5])
            var reference: [[UInt32]]?
            for size in [1, 2, 3] {
                let r = try InProcessCommunicator.run(size: size) { comm in try MergeRun.mergeTasks(input, options: o, comm: comm) }
                for x in r {
                    let b = x.backbone.map { $0.value.storage.map(\.bitPattern) }
                    if let ref = reference { XCTAssertEqual(b, ref, "\(method) at \(size) ranks") } else { reference = b }
                    XCTAssertEqual(x.report.columns, ["a", "b", "c"])
                }
                if method != Average.self { XCTAssertNotNil(r[0].report.hyperparameters["lambda"]) }
            }
        }
    }
}
