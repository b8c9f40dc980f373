import Foundation
import LigandData
import LigandNN
import LigandNumerics
import XCTest
@testable import LigandZoo

final class TransformTests: XCTestCase {
    func images(_ n: Int, seed: UInt64 = 1) -> LabeledImages {
        var rng = SeededRNG(seed: seed)
        let px = (0..<(n * 28 * 28)).map { _ in Float(rng.int(below: 256)) / 255 }
        return LabeledImages(height: 28, width: 28, channels: 1, pixels: px, labels: (0..<n).map { $0 % 10 }, classCount: 10)
    }

    func testRotationFourTimesIsIdentityAndOnceMovesPixels() throws {
        let d = images(3)
        var r = d
        for _ in 0..<4 { r = try TaskTransform.rotate90.apply(r) }
        XCTAssertEqual(r.pixels, d.pixels)
        let once = try TaskTransform.rotate90.apply(d)
        XCTAssertNotEqual(once.pixels, d.pixels)
        // Clockwise quarter turn: the top-left pixel comes from the bottom-left.
        XCTAssertEqual(once.pixels[0], d.pixels[27 * 28])
    }

    func testInvolutions() throws {
        let d = images(2)
        for t in [TaskTransform.flipVertical, .invert, .checkerInvert] {
            let twice = try t.apply(try t.apply(d))
            for (a, b) in zip(twice.pixels, d.pixels) { XCTAssertEqual(a, b, accuracy: 1e-6, "\(t)") }
            XCTAssertNotEqual(try t.apply(d).pixels, d.pixels, "\(t) changed nothing")
        }
    }

    func testPermutationsAreFixedBijections() throws {
        for t in [TaskTransform.patchShuffle, .pixelPermutation, .rotate90, .flipVertical] {
            let s = t.sourceIndex(height: 28, width: 28, channels: 1)
            XCTAssertEqual(s.sorted(), Array(0..<784), "\(t) is not a bijection")
            XCTAssertNotEqual(s, Array(0..<784), "\(t) is the identity")
            XCTAssertEqual(s, t.sourceIndex(height: 28, width: 28, channels: 1), "\(t) is not deterministic")
        }
        let d = images(2)
        let p = try TaskTransform.pixelPermutation.apply(d)
        XCTAssertEqual(p.pixels[0..<784].sorted(), d.pixels[0..<784].sorted())
        // Patch shuffle keeps each 7×7 tile intact.
        let s = TaskTransform.patchShuffle.sourceIndex(height: 28, width: 28, channels: 1)
        let from = s[0]
        XCTAssertEqual(s[1], from + 1)
        XCTAssertEqual(s[28], from + 28)
    }

    func testDownsampleIsBlockConstantAndCoarseRelabels() throws {
        let d = images(1)
        let ds = try TaskTransform.downsample.apply(d)
        XCTAssertEqual(ds.pixels[0], ds.pixels[1]); XCTAssertEqual(ds.pixels[0], ds.pixels[28]); XCTAssertEqual(ds.pixels[0], ds.pixels[29])
        XCTAssertEqual(ds.pixels[0], (d.pixels[0] + d.pixels[1] + d.pixels[28] + d.pixels[29]) / 4, accuracy: 1e-6)
        let c = try TaskTransform.coarse.apply(images(10))
        XCTAssertEqual(c.classCount, 4)
        XCTAssertEqual(c.labels, [0, 1, 0, 1, 0, 2, 0, 2, 3, 2])
        XCTAssertEqual(Set(TaskTransform.coarseGroups), Set(0..<4))
    }

    /// Checks that `t` writes the 2×2-averaged thumbnail of its inner transform into its quadrant and zeros
    /// elsewhere; counts in `covered` the pixels it owns.
    func checkThumbnail(_ t: TaskTransform, _ d: LabeledImages, covered: inout [Int]) throws {
        let out = try t.apply(d)
        guard let (inner, q) = t.thumbnail else { return XCTFail("\(t) is not a thumbnail task") }
        let base = try inner?.apply(d) ?? d
        let (r0, c0) = ((q / 2) * 14, (q % 2) * 14)
        for p in 0..<784 {
            let (r, c) = (p / 28, p % 28)
            if r >= r0 && r < r0 + 14 && c >= c0 && c < c0 + 14 {
                covered[p] += 1
                let (sr, sc) = (2 * (r - r0), 2 * (c - c0))
                let mean = (base.pixels[sr * 28 + sc] + base.pixels[sr * 28 + sc + 1] + base.pixels[(sr + 1) * 28 + sc] + base.pixels[(sr + 1) * 28 + sc + 1]) / 4
                XCTAssertEqual(out.pixels[p], mean, accuracy: 1e-6, "\(t)")
            } else {
                XCTAssertEqual(out.pixels[p], 0, "\(t) wrote outside its quadrant")
            }
        }
    }

    func testThumbnailsSitInTheirQuadrant() throws {
        let d = images(2)
        var covered = [Int](repeating: 0, count: 784)
        for t in TaskTransform.standard.prefix(4) { try checkThumbnail(t, d, covered: &covered) }
        // The four quadrants tile the image exactly once.
        XCTAssertEqual(covered, [Int](repeating: 1, count: 784))
        let coarse = try TaskTransform.thumbBRFlipCoarse.apply(images(10))
        XCTAssertEqual(coarse.classCount, 4)
        XCTAssertEqual(coarse.pixels, try TaskTransform.thumbBRFlip.apply(images(10)).pixels)
        // The second-transform tasks: coarse labels, their own quadrant, an input no other task of the eight has.
        let distinct: [TaskTransform] = [.thumbTL, .thumbTRRotate90, .thumbBLInvert, .thumbBRFlip,
                                         .thumbTLInvertCoarse, .thumbTRFlipCoarse, .thumbBLRotate90Coarse, .thumbBRCoarse]
        let d10 = images(10)
        let inputs = try distinct.map { try $0.apply(d10).pixels }
        XCTAssertEqual(Set(inputs.map { $0.map(\.bitPattern) }).count, 8, "two tasks share their inputs")
        var covered2 = [Int](repeating: 0, count: 784)
        for t in distinct.suffix(4) {
            XCTAssertEqual(try t.apply(d10).classCount, 4, "\(t)")
            try checkThumbnail(t, d, covered: &covered2)
        }
        XCTAssertEqual(covered2, [Int](repeating: 1, count: 784), "the four second-transform tasks tile the image once")
    }

    func testRejectsNonSquareImages() {
        let d = LabeledImages(height: 28, width: 32, channels: 1, pixels: [Float](repeating: 0, count: 28 * 32), labels: [0], classCount: 10)
        XCTAssertThrowsError(try TaskTransform.rotate90.apply(d)) { XCTAssertTrue("\($0)".contains("28×32")) }
    }
}

final class RecipeTests: XCTestCase {
    let valid = """
    suites:
      s:
        kind: seeds
        architectures: [mlp, {kind: vgg, config: [8, M, 16, M]}]
        models: 2
        epochs: 1
      p:
        kind: splits
        architectures: [mlp]
        partitions: [{type: classes, parts: 2}, {type: dirichlet, parts: 4, alpha: 0.3}]
      t:
        kind: tasks
        architectures: [{kind: mlp, hidden: [64]}]
        tasks: [rotate90, coarse]
        pretrain: {images: 100}
    """

    /// The tasks suite of `valid` with `line` added after its pretrain entry.
    func tasks(_ line: String) -> String { valid.replacingOccurrences(of: "    pretrain: {images: 100}", with: "    pretrain: {images: 100}\n\(line)") }

    func error(_ text: String) -> String {
        do { _ = try Recipe.parse(text, path: "r.yaml"); return "no error" } catch { return "\(error)" }
    }

    func testValidRecipe() throws {
        let r = try Recipe.parse(valid, path: "r.yaml")
        XCTAssertEqual(r.suites.map(\.name), ["p", "s", "t"])
        XCTAssertEqual(SuitePlan.jobs(try r.suite(named: "s")).count, 4)
        XCTAssertEqual(SuitePlan.jobs(try r.suite(named: "p")).map(\.name).count, 6)
        let t = SuitePlan.jobs(try r.suite(named: "t"))
        XCTAssertEqual(t.map(\.name), ["mlp-pretrained", "mlp-rotate90", "mlp-coarse"])
        XCTAssertEqual(t.map(\.phase), [0, 1, 1])
    }

    func testUnknownKeyNamesItsPath() {
        let e = error(valid.replacingOccurrences(of: "    epochs: 1", with: "    epochs: 1\n    epoch: 2"))
        XCTAssertTrue(e.hasPrefix("r.yaml: suites.s.epoch: unknown key"), e)
        let nested = error(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, lr0: 1}"))
        XCTAssertTrue(nested.hasPrefix("r.yaml: suites.t.pretrain.lr0: unknown key"), nested)
    }

    func testBadValuesNameTheirPath() {
        XCTAssertEqual(error(valid.replacingOccurrences(of: "epochs: 1", with: "epochs: -1")),
                       "r.yaml: suites.s.epochs: must be an integer in 1...10000, got -1")
        XCTAssertTrue(error(valid.replacingOccurrences(of: "kind: seeds", with: "kind: seed")).hasPrefix("r.yaml: suites.s.kind: must be one of"))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "rotate90, coarse", with: "rotate90, spin")).hasPrefix("r.yaml: suites.t.tasks[1]: must be one of"))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "[8, M, 16, M]", with: "[8, X]")).hasPrefix("r.yaml: suites.s.architectures[1].config[1]:"))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "")).hasPrefix("r.yaml: suites.s.models: is required"))
        XCTAssertTrue(error("suites: [1, 2]").hasPrefix("r.yaml: suites: must be a map"))
        XCTAssertTrue(error("suites: {a: {kind: seeds").hasPrefix("r.yaml: not valid YAML"))
    }

    func testHashFollowsDefinitionAndData() throws {
        let r = try Recipe.parse(valid, path: "r.yaml")
        let s = try r.suite(named: "s")
        let h = SuiteHash.compute(s, dataIdentity: "a:1")
        XCTAssertEqual(h.count, 16)
        XCTAssertEqual(h, SuiteHash.compute(try Recipe.parse(valid, path: "other.yaml").suite(named: "s"), dataIdentity: "a:1"))
        XCTAssertNotEqual(h, SuiteHash.compute(s, dataIdentity: "a:2"))
        var changed = s
        changed.epochs = 2
        XCTAssertNotEqual(h, SuiteHash.compute(changed, dataIdentity: "a:1"))
        // Writing a default explicitly changes nothing.
        let explicit = try Recipe.parse(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    lr: 0.05\n"), path: "r.yaml")
        XCTAssertEqual(h, SuiteHash.compute(try explicit.suite(named: "s"), dataIdentity: "a:1"))
        let sgd = try Recipe.parse(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    optimizer: sgd\n"), path: "r.yaml")
        XCTAssertEqual(h, SuiteHash.compute(try sgd.suite(named: "s"), dataIdentity: "a:1"))
    }

    func testLabelSmoothingKey() throws {
        func parsed(_ line: String) throws -> SuiteSpec {
            try Recipe.parse(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n\(line)"), path: "r.yaml").suite(named: "s")
        }
        let plain = try parsed("")
        let smooth = try parsed("    label_smoothing: 0.1\n")
        XCTAssertEqual(smooth.trainingConfig(for: smooth.architectures[0], seed: 0).labelSmoothing, 0.1)
        XCTAssertNil(plain.trainingConfig(for: plain.architectures[0], seed: 0).labelSmoothing)
        XCTAssertNotEqual(SuiteHash.compute(smooth, dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        // 0 is the default written out: the cache key stays.
        XCTAssertEqual(SuiteHash.compute(try parsed("    label_smoothing: 0\n"), dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    label_smoothing: 1\n"))
                        .hasPrefix("r.yaml: suites.s.label_smoothing:"))
    }

    func testFineTuneKey() throws {
        let plain = try Recipe.parse(valid, path: "r.yaml").suite(named: "t")
        let only = try Recipe.parse(tasks("    fine_tune: [.0.]"), path: "r.yaml").suite(named: "t")
        XCTAssertNil(plain.fineTune)
        XCTAssertEqual(only.fineTune, [".0."])
        XCTAssertNotEqual(SuiteHash.compute(only, dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        XCTAssertTrue(error(tasks("    fine_tune: []")).hasPrefix("r.yaml: suites.t.fine_tune: must list"))
        XCTAssertTrue(error(tasks("    fine_tune: [.attn., 3]")).hasPrefix("r.yaml: suites.t.fine_tune[1]: must be a non-empty"))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    fine_tune: [x]\n")).hasPrefix("r.yaml: suites.s.fine_tune: unknown key"))

        // What an expert trains: the entries' parameters; the head stays frozen either way; a typo is refused.
        let net = try Network<Float>(Architecture.vit(patch: 7, width: 8, depth: 2, heads: 2, mlpRatio: 2), seed: 0)
        let head = Set(net.head.parameters.map(\.name))
        XCTAssertEqual(try ZooBuilder.expertFrozen(net, fineTune: nil, suite: "t"), head)
        let frozen = try ZooBuilder.expertFrozen(net, fineTune: [".attn."], suite: "t")
        let trained = Set(net.parameters.map(\.name)).subtracting(frozen)
        XCTAssertEqual(trained, ["blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
                                 "blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias", "blocks.1.attn.proj.weight", "blocks.1.attn.proj.bias"])
        XCTAssertTrue(head.isSubset(of: try ZooBuilder.expertFrozen(net, fineTune: ["blocks.1."], suite: "t")))
        for typo in [".atn.", "head."] {   // the head is not the backbone's to fine-tune
            XCTAssertThrowsError(try ZooBuilder.expertFrozen(net, fineTune: [".attn.", typo], suite: "t")) {
                XCTAssertTrue("\($0)".contains("fine_tune entry '\(typo)' matches no backbone parameter"), "\($0)")
            }
        }
    }

    func testPretrainViews() throws {
        let plain = try Recipe.parse(valid, path: "r.yaml").suite(named: "t")
        let viewed = try Recipe.parse(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, views: [thumb_tr, rotate90]}"),
                                      path: "r.yaml").suite(named: "t")
        XCTAssertNil(plain.pretrain?.views)
        // The backbone's own optimiser and weight decay: the experts keep the suite's; unset, the cache key is unchanged.
        let own = try Recipe.parse(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, optimizer: adamw, weight_decay: 0.05}"),
                                   path: "r.yaml").suite(named: "t")
        let (pc, ec) = (own.pretrainingConfig(for: own.architectures[0], seed: 1), own.trainingConfig(for: own.architectures[0], seed: 1))
        XCTAssertEqual([pc.optimizer, ec.optimizer], [.adamw, .sgd])
        XCTAssertEqual([pc.weightDecay, ec.weightDecay], [0.05, plain.weightDecay])
        XCTAssertEqual(pc.learningRate, own.pretrain!.lr)
        XCTAssertEqual(plain.pretrainingConfig(for: plain.architectures[0], seed: 1).optimizer, .sgd)
        XCTAssertFalse(plain.canonicalJSON.contains("optimizer"), plain.canonicalJSON)
        XCTAssertTrue(error(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, optimizer: lion}"))
            .hasPrefix("r.yaml: suites.t.pretrain.optimizer: "))
        XCTAssertTrue(error(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, weight_decay: -1}"))
            .hasPrefix("r.yaml: suites.t.pretrain.weight_decay: "))
        XCTAssertEqual(viewed.pretrain?.views, ["thumb_tr", "rotate90"])
        XCTAssertNotEqual(SuiteHash.compute(viewed, dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        for (bad, message) in [("[thumb_tl_coarse]", "suites.t.pretrain.views[0]: must be a fine-label task transform"),
                               ("[thumb_tl, spin]", "suites.t.pretrain.views[1]: must be a fine-label"),
                               ("[thumb_tl, thumb_tl]", "suites.t.pretrain.views: lists a view twice"), ("[]", "suites.t.pretrain.views: must list")] {
            let e = error(valid.replacingOccurrences(of: "{images: 100}", with: "{images: 100, views: \(bad)}"))
            XCTAssertTrue(e.hasPrefix("r.yaml: \(message)"), e)
        }

        // Image j is seen in view j mod (n + 1), grouped by view, each view transformed; labels follow their images.
        var rng = SeededRNG(seed: 3)
        let px: [Float] = (0..<(7 * 784)).map { _ in Float(rng.int(below: 256)) / 255 }
        let d = LabeledImages(height: 28, width: 28, channels: 1, pixels: px, labels: [3, 1, 4, 1, 5, 9, 2], classCount: 10)
        let mixed = try ZooBuilder.pretrainingViews(d, indices: [6, 5, 4, 3, 2, 1, 0], views: [.thumbTR, .thumbBL])
        XCTAssertEqual(mixed.count, 7)
        let order: [Int] = [6, 3, 0, 5, 2, 4, 1]
        XCTAssertEqual(mixed.labels, order.map { d.labels[$0] })
        XCTAssertEqual(Array(mixed.pixels[0..<784]), Array(d.pixels[6 * 784..<7 * 784]))
        XCTAssertEqual(Array(mixed.pixels[3 * 784..<4 * 784]), try TaskTransform.thumbTR.apply(d.subset([5])).pixels)
        XCTAssertEqual(Array(mixed.pixels[5 * 784..<6 * 784]), try TaskTransform.thumbBL.apply(d.subset([4])).pixels)
        // The plain thumbnails sit in their own quadrant, the rest black; their labels are the fine ones.
        let tr = try TaskTransform.thumbTR.apply(d.subset([0]))
        XCTAssertEqual(tr.pixels[0], 0); XCTAssertEqual(tr.pixels[20 * 28 + 20], 0)
        let pooled: Float = (d.pixels[0] + d.pixels[1] + d.pixels[28] + d.pixels[29]) / 4
        XCTAssertEqual(tr.pixels[14], pooled, accuracy: 1e-6)
        XCTAssertEqual(tr.labels, [d.labels[0]])
    }

    func testProbeKeyAndStep() throws {
        let plain = try Recipe.parse(valid, path: "r.yaml").suite(named: "t")
        let probed = try Recipe.parse(tasks("    probe: {epochs: 2}"), path: "r.yaml").suite(named: "t")
        XCTAssertNil(plain.probe)
        XCTAssertEqual(probed.probe, ProbeSpec(epochs: 2, lr: 1e-3))
        XCTAssertFalse(plain.canonicalJSON.contains("probe"))
        XCTAssertNotEqual(SuiteHash.compute(probed, dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        for (bad, message) in [("probe: {lr: 0.01}", "suites.t.probe.epochs: "), ("probe: {epochs: 1, lr: 0}", "suites.t.probe.lr: "),
                               ("probe: {epochs: 1, rate: 1}", "suites.t.probe.rate: ")] {
            let e = error(tasks("    \(bad)"))
            XCTAssertTrue(e.hasPrefix("r.yaml: \(message)"), e)
        }
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    probe: {epochs: 1}\n")).contains("probe"))

        // The probe trains the head and leaves every backbone parameter bitwise as it was.
        var rng = SeededRNG(seed: 5)
        let px: [Float] = (0..<(64 * 784)).map { _ in Float(rng.int(below: 256)) / 255 }
        let d = LabeledImages(height: 28, width: 28, channels: 1, pixels: px, labels: (0..<64).map { $0 % 10 }, classCount: 10)
        let net = try Network<Float>(Architecture.mlp(hidden: [16]), seed: 1)
        let before = net.parameters.map { ($0.name, $0.value.storage) }
        var config = TrainingConfig(); config.batchSize = 16; config.optimizer = .adamw
        try ZooBuilder.fitProbe(net, data: d, config: config, probe: ProbeSpec(epochs: 2, lr: 0.01), progressStyle: .quiet)
        let head = Set(net.head.parameters.map(\.name))
        for ((name, old), p) in zip(before, net.parameters) {
            if head.contains(name) { XCTAssertNotEqual(old, p.value.storage, name) } else { XCTAssertEqual(old, p.value.storage, name) }
        }
    }

    func testAnchorKeyAndStep() throws {
        let plain = try Recipe.parse(valid, path: "r.yaml").suite(named: "t")
        let anchored = try Recipe.parse(tasks("    anchor: {images: 50}"), path: "r.yaml").suite(named: "t")
        XCTAssertNil(plain.anchor)
        XCTAssertEqual(anchored.anchor, AnchorSpec(images: 50, weight: 1))
        XCTAssertFalse(plain.canonicalJSON.contains("anchor"))
        XCTAssertNotEqual(SuiteHash.compute(anchored, dataIdentity: "a:1"), SuiteHash.compute(plain, dataIdentity: "a:1"))
        for (bad, message) in [("anchor: {weight: 1}", "suites.t.anchor.images: "), ("anchor: {images: 101}", "suites.t.anchor.images: "),
                               ("anchor: {images: 10, weight: 0}", "suites.t.anchor.weight: "),
                               ("anchor: {images: 10, weight: 1e9}", "suites.t.anchor.weight: "),
                               ("anchor: {images: 10, size: 1}", "suites.t.anchor.size: ")] {
            let e = error(tasks("    \(bad)"))
            XCTAssertTrue(e.hasPrefix("r.yaml: \(message)"), e)
        }
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    anchor: {images: 1}\n")).contains("anchor"))

        // The loss and its gradient: weight · mean_i ‖f_i − t_i‖², 2 · weight · (f − t) / B.
        let one = LabeledImages(height: 1, width: 1, channels: 1, pixels: [0, 0], labels: [0, 0], classCount: 1)
        let a = FeatureAnchor(images: one, targets: Tensor(shape: [2, 2], storage: [0, 0, 1, 1]), weight: 0.5)
        let (l, g) = a.loss(Tensor(shape: [1, 2], storage: [1, 3]), rows: [1])
        XCTAssertEqual(l, 0.5 * (0 + 4), accuracy: 1e-12)
        XCTAssertEqual(g.storage, [0, 2])

        // Fine-tuning with the anchor moves the reference images' features less than without it.
        var rng = SeededRNG(seed: 6)
        let px: [Float] = (0..<(96 * 784)).map { _ in Float(rng.int(below: 256)) / 255 }
        let d = LabeledImages(height: 28, width: 28, channels: 1, pixels: px, labels: (0..<96).map { $0 % 10 }, classCount: 10)
        let reference = d.subset(Array(64..<96)), train = Array(0..<64)
        var config = TrainingConfig(); config.batchSize = 16; config.learningRate = 0.005; config.epochs = 3
        func drift(_ weight: Double?) throws -> Double {
            let net = try Network<Float>(Architecture.mlp(hidden: [16]), seed: 1)
            let before = net.features(reference.tensor())
            let anchor = weight.map { FeatureAnchor(images: reference, targets: before, weight: $0) }
            _ = try Trainer.train(net, data: d, indices: train, config: config, progressStyle: .quiet, anchor: anchor)
            return zip(net.features(reference.tensor()).storage, before.storage).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        let free = try drift(nil), held = try drift(0.2)
        XCTAssertGreaterThan(free, 0)
        XCTAssertLessThan(held, 0.5 * free, "anchored drift \(held), free \(free)")
    }

    func testOptimizerKey() throws {
        let adam = try Recipe.parse(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    optimizer: adam\n"), path: "r.yaml")
        let s = try adam.suite(named: "s")
        XCTAssertEqual(s.trainingConfig(for: s.architectures[0], seed: 0).optimizer, .adam)
        XCTAssertNotEqual(SuiteHash.compute(s, dataIdentity: "a:1"), SuiteHash.compute(try Recipe.parse(valid, path: "r.yaml").suite(named: "s"), dataIdentity: "a:1"))
        XCTAssertEqual(try Recipe.parse(valid, path: "r.yaml").suite(named: "s").trainingConfig(for: s.architectures[0], seed: 0).optimizer, .sgd)
        XCTAssertTrue(error(valid.replacingOccurrences(of: "    models: 2\n", with: "    models: 2\n    optimizer: lion\n"))
                        .hasPrefix("r.yaml: suites.s.optimizer: must be one of sgd, adam, adamw, got 'lion'"))
    }
}

final class SplitTests: XCTestCase {
    let labels = (0..<3000).map { ($0 * 7) % 10 }

    func spec(_ kind: SuiteKind) -> SuiteSpec {
        var s = SuiteSpec(name: "x", kind: kind, seed: 4, calibration: 300, architectures: [ArchitectureSpec(kind: .mlp)], epochs: 1,
                          lr: 0.1, batchSize: 32, momentum: 0.9, weightDecay: 0, trainImages: 2000)
        s.pretrain = PretrainSpec(images: 500, epochs: 1, lr: 0.1)
        s.partitions = [PartitionSpec(type: .classes, parts: 3), PartitionSpec(type: .dirichlet, parts: 4, alpha: 0.5)]
        s.tasks = ["invert"]
        return s
    }

    func testTaskSplitsAreDisjointAndDeterministic() throws {
        let s = spec(.tasks)
        let a = try SuitePlan.splits(s, labels: labels)
        XCTAssertEqual(a, try SuitePlan.splits(s, labels: labels))
        XCTAssertEqual(a.calibration.count, 300); XCTAssertEqual(a.pretrain.count, 500); XCTAssertEqual(a.train.count, 1500)
        XCTAssertTrue(Set(a.train).isDisjoint(with: a.pretrain))
        XCTAssertTrue(Set(a.train).isDisjoint(with: a.calibration))
        XCTAssertTrue(Set(a.pretrain).isDisjoint(with: a.calibration))
        var other = s
        other.seed = 5
        XCTAssertNotEqual(a.pretrain, try SuitePlan.splits(other, labels: labels).pretrain)
    }

    func testShardsAreDisjoint() throws {
        let s = spec(.splits)
        let sp = try SuitePlan.splits(s, labels: labels)
        let jobs = SuitePlan.jobs(s)
        XCTAssertEqual(jobs.count, 7)
        for p in 0..<2 {
            let parts = try jobs.filter { if case .shard(p, _) = $0.role { return true }; return false }
                .map { try SuitePlan.trainingIndices(s, job: $0, splits: sp, labels: labels) }
            XCTAssertEqual(parts.reduce(0) { $0 + $1.count }, sp.train.count)
            XCTAssertEqual(Set(parts.flatMap { $0 }), Set(sp.train))
            if p == 0 {
                let classSets = parts.map { Set($0.map { labels[$0] }) }
                for i in 0..<3 { for j in (i + 1)..<3 { XCTAssertTrue(classSets[i].isDisjoint(with: classSets[j])) } }
            }
        }
        XCTAssertEqual(SuitePlan.classSubsets(classes: 10, parts: 3, seed: 1), SuitePlan.classSubsets(classes: 10, parts: 3, seed: 1))
    }

    func testSizesThatDoNotFitAreErrors() {
        var s = spec(.tasks)
        s.trainImages = 5000
        XCTAssertThrowsError(try SuitePlan.splits(s, labels: labels)) { XCTAssertTrue("\($0)".contains("train_images (5000)")) }
    }

    func testShotsPerClass() {
        let idx = SuitePlan.shotIndices(labels: labels, classes: 10, shots: 3, seed: 1, task: "invert")
        XCTAssertEqual(idx.count, 30)
        XCTAssertEqual(Set(idx.map { labels[$0] }).count, 10)
    }
}
