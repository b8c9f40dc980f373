import XCTest
import LigandCollective
import LigandData
import LigandNN
import LigandNumerics
import LigandZoo
@testable import LigandPipeline

/// The run's Evaluator (Evaluator.swift): logits kept within a budget, and merges sharing one get the same reports while
/// computing each expert's, the pretrained model's and the average's test logits once.
final class EvaluatorTests: XCTestCase {
    func testKeptLogitsAreReusedWithinTheBudget() {
        let e = Evaluator(budget: 40)
        let a = Evaluator.Key(model: "m", head: "h", data: "a"), b = Evaluator.Key(model: "m", head: "h", data: "b")
        var calls = 0
        func eight() -> [Float] { calls += 1; return (0..<8).map(Float.init) }
        XCTAssertEqual(e.logits(a, eight), (0..<8).map(Float.init))
        XCTAssertEqual(e.logits(a, eight), (0..<8).map(Float.init))
        XCTAssertEqual(calls, 1, "kept: 32 bytes of a 40-byte budget")
        _ = e.logits(b, eight); _ = e.logits(b, eight)
        XCTAssertEqual(calls, 3, "over the budget: computed every time, never kept")
        _ = e.logits(nil, eight); _ = e.logits(nil, eight)
        XCTAssertEqual(calls, 5, "no key: never kept")
        XCTAssertEqual(e.reused, 1)
        XCTAssertEqual(e.computed, 5)
    }

    func testFeaturesTakeAtMostHalfTheBudgetSoLogitsKeepTheirRoom() {
        let e = Evaluator(budget: 100)
        var calls = 0
        func ten() -> [Float] { calls += 1; return [Float](repeating: 1, count: 10) }
        _ = e.features(model: "m0", data: "d", ten); _ = e.features(model: "m0", data: "d", ten)
        XCTAssertEqual(calls, 1, "40 bytes of features: within half of 100")
        _ = e.features(model: "m1", data: "d", ten); _ = e.features(model: "m1", data: "d", ten)
        XCTAssertEqual(calls, 3, "80 bytes would pass half the budget: computed every time")
        _ = e.logits(Evaluator.Key(model: "m1", head: "h", data: "d"), ten); _ = e.logits(Evaluator.Key(model: "m1", head: "h", data: "d"), ten)
        XCTAssertEqual(calls, 4, "logits still fit in the other half")
        _ = e.features(model: nil, data: "d", ten); _ = e.features(model: nil, data: "d", ten)
        XCTAssertEqual(calls, 6, "no model key: never kept")
    }

    /// NeuLig hands the run's evaluator logits made from its feature rows: they must be the forward pass's bits, for
    /// any head (another task's) and a last batch shorter than the others.
    func testHeadLogitsFromFeaturesAreTheForwardPassBits() throws {
        let arch = Architecture.mlp(hidden: [24, 16], input: [5, 5, 1], classes: 4)
        let net = try Network<Float>(arch, seed: 11)
        var r = SeededRNG(seed: 12)
        let n = 1_234
        let data = LabeledImages(height: 5, width: 5, channels: 1, pixels: (0..<(n * 25)).map { _ in Float(r.normal()) }, labels: (0..<n).map { $0 % 4 }, classCount: 4)
        let features = Trainer.featureRows(net, data: data)
        let own = (weight: net.head.weight.value, bias: net.head.bias!.value)
        XCTAssertEqual(Trainer.headLogits(features, head: own, like: net).map(\.bitPattern),
                       Trainer.logits(net, data: data, indices: Array(0..<n)).storage.map(\.bitPattern))
        let other = (weight: Tensor(shape: [7, 16], storage: (0..<112).map { _ in Float(r.normal()) }), bias: Tensor(shape: [7], storage: (0..<7).map { _ in Float(r.normal()) }))
        let backbone = Dictionary(uniqueKeysWithValues: net.stateDict().filter { !$0.name.hasPrefix("fc.") && $0.name != net.head.weight.name && $0.name != net.head.bias!.name }.map { ($0.name, $0.value) })
        let withOther = try net.with(backbone: backbone, head: other)
        XCTAssertEqual(Trainer.headLogits(features, head: other, like: net).map(\.bitPattern),
                       Trainer.logits(withOther, data: data, indices: Array(0..<n)).storage.map(\.bitPattern))
    }

    func testMergesSharingAnEvaluatorReportTheSameAndComputeEachKeyedLogitOnce() throws {
        let arch = Architecture.mlp(hidden: [10], input: [4, 4, 1], classes: 3)
        let pre = try Network<Float>(arch, seed: 70)
        var rng = SeededRNG(seed: 71)
        let experts: [Network<Float>] = try (0..<3).map { _ in
            try Network<Float>.loaded(arch, pre.stateDictionary().mapValues { t in Tensor(shape: t.shape, storage: t.storage.map { $0 + Float(0.05 * rng.normal()) }) })
        }
        func images(_ n: Int, seed: UInt64) -> LabeledImages {
            var r = SeededRNG(seed: seed)
            return LabeledImages(height: 4, width: 4, channels: 1, pixels: (0..<(n * 16)).map { _ in Float(r.normal()) }, labels: (0..<n).map { $0 % 3 }, classCount: 3)
        }
        var input = TasksInputs(suite: "synthetic", tasks: ["a", "b", "c"], architectures: experts.map(\.architecture), load: { experts[$0] },
                                heads: experts.map { (weight: $0.head.weight.value, bias: $0.head.bias!.value) }, pretrained: pre,
                                calibration: (0..<3).map { images(60, seed: 80 + UInt64($0)) }, test: (0..<3).map { images(60, seed: 90 + UInt64($0)) })
        input.keys = TasksKeys(experts: ["e0", "e1", "e2"], pretrained: "pre", test: ["a test", "b test", "c test"])
        func options(_ m: any MergeMethod.Type, _ evaluator: Evaluator?) -> MergeOptions {
            var o = MergeOptions(method: m, suite: "synthetic", outDirectory: URL(fileURLWithPath: "/nonexistent"))
            o.quiet = true
            o.evaluator = evaluator
            return o
        }
        func run(_ m: any MergeMethod.Type, _ e: Evaluator?, _ comm: Communicator) throws -> MergeResult {
            m.fuses ? try FusionRun.mergeTasks(input, selection: input.calibration, options: options(m, e), comm: comm)
                    : try MergeRun.mergeTasks(input, options: options(m, e), comm: comm)
        }
        func figures(_ r: MergeResult) -> [String] { r.report.rows.map { "\($0.name) \($0.kind) \($0.accuracies)" } }
        let methods: [any MergeMethod.Type] = [Average.self, TaskArithmetic.self, TIES.self, RegMean.self]
        for size in [1, 2] {
            let r = try InProcessCommunicator.run(size: size) { comm -> [(alone: [String], shared: [String], reused: [Int], computed: Int)] in
                let e = Evaluator()
                return try methods.map { m in
                    let alone = try run(m, nil, comm)
                    let before = e.reused
                    let shared = try run(m, e, comm)
                    XCTAssertEqual(alone.backbone.map { $0.value.storage.map(\.bitPattern) }, shared.backbone.map { $0.value.storage.map(\.bitPattern) })
                    return (figures(alone), figures(shared), [e.reused - before], e.computed)
                }
            }
            for rank in r {
                for (m, x) in zip(methods, rank) { XCTAssertEqual(x.alone, x.shared, "\(m.name) at \(size) ranks: the same rows with a shared evaluator") }
            }
            if size == 1 {
                // The first merge computes the 3×3 expert-on-task logits, the pretrained's and the average's 3 each; the
                // later ones reuse them all (RegMean reads the experts on their own tasks, the pretrained and the average: 9).
                XCTAssertEqual(r[0].map(\.reused), [[0], [15], [15], [9]])
            } else {
                XCTAssertGreaterThan(r.map { $0[1].reused[0] }.reduce(0, +), 0, "2 ranks: the second merge reuses its ranks' logits")
            }
        }
    }
}
