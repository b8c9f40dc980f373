import XCTest
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics
@testable import LigandPipeline

final class FusionRunTests: XCTestCase {
    static let mlp = Architecture.mlp(hidden: [12, 8], input: [4, 4, 1], classes: 3)
    static let vgg = Architecture.vgg([.conv(4), .pool, .conv(6)], input: [6, 6, 1], classes: 3)
    static let resnet = Architecture.resnet20(width: 1, input: [5, 5, 1], classes: 3)

    func images(_ arch: Architecture, _ n: Int, seed: UInt64) -> LabeledImages {
        var rng = SeededRNG(seed: seed, stream: "fusion-test-images")
        let size = arch.input.reduce(1, *)
        return LabeledImages(height: arch.input[0], width: arch.input[1], channels: arch.input[2],
                             pixels: (0..<(n * size)).map { _ in Float(rng.normal()) }, labels: (0..<n).map { _ in rng.int(below: arch.classes) },
                             classCount: arch.classes)
    }

    /// The pretrained model plus each expert = pretrained + a seeded perturbation (shared origin), BN statistics varied.
    func suite(_ arch: Architecture, tasks: Int, calibration: Int = 40) throws -> (TasksInputs, [LabeledImages], [Network<Float>]) {
        let pre = try Network<Float>(arch, seed: 1)
        let experts = try (0..<tasks).map { t -> Network<Float> in
            var rng = SeededRNG(seed: 100 + UInt64(t), stream: "fusion-test-expert")
            let net = try Network<Float>(arch, seed: 1)
            var s = net.stateDictionary()
            for name in s.keys.sorted() {
                let v = s[name]!, isVar = name.hasSuffix("running_var")
                s[name] = Tensor(shape: v.shape, storage: v.storage.map { isVar ? $0 * Float(0.8 + 0.4 * rng.uniform()) : $0 + Float(0.05 * rng.normal()) })
            }
            try net.load(s)
            return net
        }
        let heads = experts.map { ($0.head.weight.value, $0.head.bias!.value) }
        let input = TasksInputs(suite: "synthetic", tasks: (0..<tasks).map { "task\($0)" }, architectures: experts.map(\.architecture),
                                load: { experts[$0] }, heads: heads, pretrained: pre,
                                calibration: (0..<tasks).map { images(arch, calibration, seed: 10 + UInt64($0)) },
                                test: (0..<tasks).map { images(arch, 30, seed: 20 + UInt64($0)) })
        return (input, (0..<tasks).map { images(arch, 25, seed: 30 + UInt64($0)) }, experts)
    }

    func options(_ m: any MergeMethod.Type, ridges: [Double] = [1e-3, 1e-1]) -> MergeOptions {
        var o = MergeOptions(method: m, suite: "synthetic", outDirectory: URL(fileURLWithPath: "/nonexistent"))
        try! o.parameters.set(Progressive.ridges, numbers: ridges)
        try! o.parameters.set(RegMean.alphas, numbers: [0.5, 1])
        try! o.parameters.set(TaskArithmetic.lambdas, numbers: [0.5, 1])
        o.batchSize = 16
        o.quiet = true
        return o
    }

    func bits(_ r: MergeResult) -> [UInt32] { r.backbone.flatMap { $0.value.storage.map(\.bitPattern) } }

    /// Both methods, MLP / VGG / ResNet-20, on 1, 2 and 3 in-process ranks: the fused backbone is bitwise the same on
    /// every rank and for every rank count (serial is one rank), and so is the report.
    func testBitwiseIdenticalAcrossRankCounts() throws {
        for arch in [Self.mlp, Self.vgg, Self.resnet] {
            let methods: [any MergeMethod.Type] = arch.kind == .resnet20 ? [Progressive.self] : [RegMean.self, Progressive.self]
            for method in methods {
                let (input, selection, _) = try suite(arch, tasks: 3, calibration: arch.kind == .resnet20 ? 20 : 40)
                var reference: [UInt32]?, referenceRows: [Double]?
                for size in (arch.kind == .resnet20 ? [1, 3] : [1, 2, 3]) {
                    let o = options(method, ridges: arch.kind == .resnet20 ? [1e-2] : [1e-3, 1e-1])
                    let results = try InProcessCommunicator.run(size: size) { comm in
                        try FusionRun.mergeTasks(input, selection: selection, options: o, comm: comm)
                    }
                    for r in results {
                        if let ref = reference { XCTAssertEqual(bits(r), ref, "\(arch.kind) \(method) at \(size) ranks") } else { reference = bits(r) }
                        let accs = r.report.rows.flatMap(\.accuracies)
                        if let ref = referenceRows { XCTAssertEqual(accs, ref, "\(arch.kind) \(method) report at \(size) ranks") } else { referenceRows = accs }
                    }
                    let hp = results[0].report.hyperparameters
                    XCTAssertNotNil(hp["ridge"])
                    if method == RegMean.self { XCTAssertNotNil(hp["alpha"]) }
                    XCTAssertEqual(results[0].report.rows.last?.name, "fused: \(method.name)")
                    if arch.kind == .resnet20 { XCTAssertNotNil(hp["batchnorm"]) }
                }
            }
        }
    }

    /// Same-task multi-level fusion (--align cca / permute, then progressive over every layer and the head) and
    /// RegMean without alignment: bitwise the same fused network and report for 1, 2 and 3 in-process ranks.
    func testSameTaskAfterAlignmentBitwiseAcrossRankCounts() throws {
        let arch = Self.mlp
        let models = try (0..<3).map { i -> Network<Float> in
            let net = try Network<Float>(arch, seed: 40 + UInt64(i))
            var rng = SeededRNG(seed: 50 + UInt64(i), stream: "fusion-same-task")
            var s = net.stateDictionary()
            for name in s.keys.sorted() where name.hasSuffix(".bias") { s[name] = Tensor(shape: s[name]!.shape, storage: (0..<s[name]!.count).map { _ in Float(0.1 + 0.1 * rng.normal()) }) }
            try net.load(s)
            return net
        }
        let input = SameTaskInputs(suite: "synthetic", names: ["m0", "m1", "m2"], architectures: models.map(\.architecture), load: { models[$0] },
                                   calibration: images(arch, 60, seed: 1), test: images(arch, 50, seed: 2), train: images(arch, 100, seed: 3))
        for (method, align) in [(Progressive.self as any MergeMethod.Type, "cca" as String?), (Progressive.self, "permute"), (RegMean.self, nil)] {
            var o = options(method)
            if let align { try o.parameters.set(CommonParameters.align, text: align) }
            try o.parameters.set(CCA.gammas, numbers: [1e-2, 1])
            var reference: [UInt32]?, referenceRows: [Double]?
            for size in [1, 2, 3] {
                let results = try InProcessCommunicator.run(size: size) { comm in
                    try FusionRun.mergeSameTask(input, selection: self.images(arch, 30, seed: 4), options: o, comm: comm)
                }
                for r in results {
                    let b = r.fused!.stateDict().flatMap { $0.value.storage.map(\.bitPattern) }
                    if let ref = reference { XCTAssertEqual(b, ref, "\(method) \(String(describing: align)) at \(size) ranks") } else { reference = b }
                    let accs = r.report.rows.map(\.mean)
                    if let ref = referenceRows { XCTAssertEqual(accs, ref) } else { referenceRows = accs }
                }
                let r = results[0].report
                XCTAssertTrue(r.rows.contains { $0.name == "fused: \(method.name)" + (align.map { " after \($0)" } ?? "") }, "\(r.rows.map(\.name))")
                XCTAssertEqual(r.hyperparameters["align"], align ?? "none")
                XCTAssertNotNil(r.hyperparameters["ridge"])
            }
        }
    }

    /// Progressive least squares through FusionRun's own driver on `size` in-process ranks (serial is one rank): from
    /// the experts' average, layer by layer from the input, expert k on the images of `sets[k]` in batches of 25.
    func progressive(_ experts: [Network<Float>], _ sets: [LabeledImages], ridge: Double, size: Int = 1) throws -> StateDict {
        let like = experts[0], plan = try FusionPlan(like.architecture)
        let head = Set(like.head.parameters.map(\.name))
        let layout = FlatLayout(like.stateDict().filter { !head.contains($0.name) })
        return try InProcessCommunicator.run(size: size) { comm -> StateDict in
            let shard = ModelShard(total: experts.count, comm: comm)
            let nets = shard.local.map { experts[$0] }, states = nets.map { $0.stateDictionary() }
            let c = FusionRun.Context(shard: shard, names: experts.indices.map { "expert \($0)" }, nets: nets, states: states, plan: plan,
                                      units: plan.units, layout: layout, like: like, batchSize: 25, calibration: { sets[$0] })
            let average = layout.unflatten(try c.sum(states.map { layout.flatten($0) }).map { $0 / Double(experts.count) })
            return try c.progressive(ridge: ridge, start: average)
        }[0]
    }

    func relative(_ a: Matrix, _ b: Matrix) -> Double { (a - b).norm / max(b.norm, 1e-300) }

    /// K = 1: progressive fusion returns the expert itself (each folded layer to solver precision), for any ridge and
    /// every architecture (BatchNorm folded in).
    func testProgressiveReturnsALoneExpert() throws {
        let vggBN = Architecture.vgg([.conv(4), .pool, .conv(6), .conv(5), .pool], input: [6, 6, 2], classes: 3, batchNorm: true)
        for arch in [Self.mlp, Self.vgg, vggBN, Self.resnet] {
            let e = try suite(arch, tasks: 1).2[0]
            for ridge in [1e-6, 0.1] {
                let fused = try progressive([e], [images(arch, 100, seed: 8)], ridge: ridge)
                let plan = try FusionPlan(arch)
                for u in plan.units {
                    let a = try LeastSquaresFusion.fold(u, fused), b = try LeastSquaresFusion.fold(u, e.stateDictionary())
                    // Deep ResNet layers see X̃ = X only up to the Float32 rounding of the fused layers below, amplified by a barely damped Gram.
                    let tolerance = arch.kind == .resnet20 && ridge < 1e-3 ? 1e-4 : 1e-5
                    XCTAssertLessThan(relative(a.augmented, b.augmented), tolerance, "\(arch.kind) \(u.name) ridge \(ridge)")
                }
            }
        }
    }

    /// Two experts: progressive fusion's first layer has a smaller summed target error than weight averaging's.
    func testProgressiveBeatsAveragingOnItsObjective() throws {
        let arch = Self.mlp
        let experts = try suite(arch, tasks: 2).2
        let sets = [images(arch, 60, seed: 13), images(arch, 60, seed: 14)]
        let fused = try progressive(experts, sets, ridge: 1e-4, size: 2)
        let plan = try FusionPlan(arch), u = plan.units[0]
        let average = try averageStateDicts(experts.map { e in e.stateDictionary().filter { !$0.key.hasPrefix("head.") } })
        func error(_ backbone: StateDict) throws -> Double {
            let layer = try LeastSquaresFusion.fold(u, backbone)
            var total = 0.0
            for (k, e) in experts.enumerated() {
                let target = try LeastSquaresFusion.fold(u, e.stateDictionary())
                let x = try plan.input(of: u, image: Tensor(shape: [60] + arch.input, storage: sets[k].pixels), taps: [])
                var ones = Matrix(zeros: 60, u.columns + 1)
                for r in 0..<60 { for j in 0..<u.columns { ones[r, j] = Double(x[r * u.columns + j]) }; ones[r, u.columns] = 1 }
                let d = ones.multiplied(by: layer.augmented, transOther: true) - ones.multiplied(by: target.augmented, transOther: true)
                total += d.norm * d.norm
            }
            return total
        }
        XCTAssertLessThan(try error(fused), try error(average))
    }

    /// ρ = ∞ is the prior itself: with the mean as prior, progressive and RegMean return the experts' mean layers.
    func testInfiniteRidgeIsThePrior() throws {
        let (input, selection, experts) = try suite(Self.mlp, tasks: 3)
        let mean = try averageStateDicts(experts.map { e in e.stateDictionary().filter { !$0.key.hasPrefix("head.") } })
        for method: any MergeMethod.Type in [Progressive.self, RegMean.self] {
            var o = options(method, ridges: [.infinity])
            try o.parameters.set(Progressive.start, text: "average")
            let r = try InProcessCommunicator.run(size: 1) { comm in try FusionRun.mergeTasks(input, selection: selection, options: o, comm: comm) }[0]
            XCTAssertEqual(r.report.hyperparameters["ridge"], "inf", "\(method)")
            for (name, t) in r.backbone {
                let err = zip(t.storage, mean[name]!.storage).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(err, 1e-6, "\(method) \(name)")
            }
        }
    }

    /// The fused backbone with one task is that task's expert (progressive with the mean as prior, K = 1), up to the
    /// solver's precision.
    func testOneTaskReturnsTheExpert() throws {
        let (input, selection, experts) = try suite(Self.mlp, tasks: 1)
        var o = options(Progressive.self)
        try o.parameters.set(Progressive.start, text: "average")
        let r = try InProcessCommunicator.run(size: 1) { comm in try FusionRun.mergeTasks(input, selection: selection, options: o, comm: comm) }[0]
        let expert = experts[0].stateDictionary()
        for (name, t) in r.backbone {
            let e = expert[name]!.storage
            let err = zip(t.storage, e).map { Double(abs($0 - $1)) }.max()!
            XCTAssertLessThan(err, 1e-4 * Double(e.map { abs($0) }.max()!), name)
        }
        // The fused row equals the expert row.
        XCTAssertEqual(r.report.rows.first!.accuracies, r.report.rows.last!.accuracies)
    }

    /// An empty calibration split is refused naming the task; a singular system without ridge names the layer and
    /// suggests a ridge; both reach every rank as the same error.
    func testBadInput() throws {
        var (input, selection, _) = try suite(Self.mlp, tasks: 3)
        var empty = input
        empty.calibration[1] = images(Self.mlp, 0, seed: 1)
        for size in [1, 2] {
            let errors = try InProcessCommunicator.run(size: size) { comm -> String in
                do { _ = try FusionRun.mergeTasks(empty, selection: selection, options: self.options(Progressive.self), comm: comm); return "" } catch { return "\(error)" }
            }
            for e in errors { XCTAssertTrue(e.contains("task 'task1'") && e.contains("calibration split is empty"), e) }
        }
        // A pixel that is zero on every calibration image of every task: singular without a ridge.
        for t in 0..<3 {
            let c = input.calibration[t]
            var p = c.pixels
            for i in 0..<c.count { p[i * c.sampleSize + 5] = 0 }
            input.calibration[t] = LabeledImages(height: c.height, width: c.width, channels: c.channels, pixels: p, labels: c.labels, classCount: c.classCount)
        }
        selection = selection.map { $0 }
        for method: any MergeMethod.Type in [RegMean.self, Progressive.self] {
            let errors = try InProcessCommunicator.run(size: 2) { comm -> String in
                do { _ = try FusionRun.mergeTasks(input, selection: selection, options: self.options(method, ridges: [0]), comm: comm); return "" } catch { return "\(error)" }
            }
            for e in errors {
                XCTAssertTrue(e.contains("layer 'layers.0'") && e.contains("singular") && e.contains("--ridges"), e)
                XCTAssertEqual(e, errors[0])
            }
        }
    }
}
