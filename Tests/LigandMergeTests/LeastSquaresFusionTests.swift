import XCTest
import LigandNN
import LigandNumerics
@testable import LigandMerge

final class LeastSquaresFusionTests: XCTestCase {
    static let mlp = Architecture.mlp(hidden: [10, 7], input: [4, 4, 1], classes: 3)
    static let vgg = Architecture.vgg([.conv(4), .pool, .conv(6), .conv(5), .pool], input: [6, 6, 2], classes: 3)
    static let vggBN = Architecture.vgg([.conv(4), .pool, .conv(6), .conv(5), .pool], input: [6, 6, 2], classes: 3, batchNorm: true)
    static let resnet = Architecture.resnet20(width: 1, input: [5, 5, 1], classes: 3)

    /// Random weights, biases and BatchNorm parameters and statistics.
    func expert(_ arch: Architecture, seed: UInt64) throws -> Network<Float> {
        let net = try Network<Float>(arch, seed: seed)
        var rng = SeededRNG(seed: seed, stream: "lsq-test-model")
        var s = net.stateDictionary()
        for name in s.keys.sorted() where s[name]!.rank == 1 {
            let t = s[name]!
            let bnWeight = name.hasSuffix(".weight") && s[String(name.dropLast(7)) + ".running_mean"] != nil
            s[name] = Tensor(shape: t.shape, storage: (0..<t.count).map { _ -> Float in
                if name.hasSuffix("running_var") { return Float(0.5 + rng.uniform()) }
                if bnWeight { return Float(0.5 + rng.uniform()) }
                return Float(0.1 + 0.2 * rng.normal())
            })
        }
        try net.load(s)
        return net
    }

    func batches(_ arch: Architecture, count: Int, size: Int, seed: UInt64) -> CalibrationBatches {
        var rng = SeededRNG(seed: seed, stream: "lsq-test-data")
        return CalibrationBatches((0..<count).map { _ in Tensor.randomNormal([size] + arch.input, rng: &rng) })
    }

    func relative(_ a: Matrix, _ b: Matrix) -> Double { (a - b).norm / max(b.norm, 1e-300) }

    /// A ViT's units read the right taps: each block's fc1, applied to the plan's input rows of its own and
    /// through GELU, is the block's MLP hidden activation (tap 5j + 3: norm1, heads, norm2, act, stream).
    func testViTPlanInputsReproduceTheMLPHiddenActivations() throws {
        let arch = Architecture.vit(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 2, input: [4, 4, 1], classes: 3)
        let net = try expert(arch, seed: 3)
        for p in net.parameters { var rng = SeededRNG(seed: 7, stream: p.name); p.value = Tensor.randomNormal(p.value.shape, std: 0.5, rng: &rng) }
        let plan = try FusionPlan(arch)
        XCTAssertEqual(plan.units.map(\.name), ["patch_embed.proj"] + (0..<2).flatMap { b in ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"].map { "blocks.\(b).\($0)" } })
        XCTAssertEqual(plan.head.source, .tap(10))
        var rng = SeededRNG(seed: 4, stream: "x")
        let x = Tensor.randomNormal([3] + arch.input, rng: &rng)
        let taps = LeastSquaresFusion.taps(net, x)
        XCTAssertEqual(taps.count, 11)
        let state = net.stateDictionary()
        let gelu = GELU<Double>()
        for (b, u) in plan.units.filter({ $0.name.hasSuffix("fc1") }).enumerated() {
            XCTAssertEqual(u.rowsPerSample, 5)
            let (m, rows) = LeastSquaresFusion.rows(u, try plan.input(of: u, image: x, taps: taps), images: 1..<3, extra: 0)
            let layer = try LeastSquaresFusion.fold(u, state)
            let y = Matrix(rows: m, cols: u.columns, data: rows).multiplied(by: layer.weight, transOther: true)
            let pre = TensorOf<Double>(shape: [m, u.outChannels], storage: (0..<(m * u.outChannels)).map { y[$0 / u.outChannels, $0 % u.outChannels] + layer.bias[$0 % u.outChannels] })
            let expected = taps[5 * b + 3].storage.suffix(m * u.outChannels)
            let worst = zip(gelu.forward(pre, training: false).storage, expected).map { abs($0 - Double($1)) }.max()!
            XCTAssertLessThan(worst, 1e-4, u.name)
        }
    }

    /// CLIP's tower: norm_pre is a tap of its own, `proj` a unit reading the final-normed class token, and the head
    /// reads the unit-length projection; the plan's rows through proj, normalised, are the network's features.
    func testCLIPPlanReadsTheProjectionAndTheUnitFeatures() throws {
        let arch = Architecture.clip(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 2, embed: 6, input: [4, 4, 1], classes: 3)
        let net = try expert(arch, seed: 3)
        for p in net.parameters { var rng = SeededRNG(seed: 7, stream: p.name); p.value = Tensor.randomNormal(p.value.shape, std: 0.5, rng: &rng) }
        let plan = try FusionPlan(arch)
        XCTAssertEqual(plan.units.first?.name, "patch_embed.proj")
        XCTAssertEqual(plan.units.last?.name, "proj")
        XCTAssertFalse(plan.units[0].hasBias, "CLIP's conv1 has no bias")
        var rng = SeededRNG(seed: 4, stream: "x")
        let x = Tensor.randomNormal([3] + arch.input, rng: &rng)
        let taps = LeastSquaresFusion.taps(net, x)
        XCTAssertEqual(taps.count, 1 + 5 * 2 + 2, "norm_pre, five per block, norm, proj")
        let features = net.features(x)
        XCTAssertEqual(try plan.input(of: plan.head, image: x, taps: taps).storage, features.storage)
        let u = plan.units.last!
        let (m, rows) = LeastSquaresFusion.rows(u, try plan.input(of: u, image: x, taps: taps), images: 0..<3, extra: 0)
        let y = Matrix(rows: m, cols: u.columns, data: rows).multiplied(by: try LeastSquaresFusion.fold(u, net.stateDictionary()).weight, transOther: true)
        for r in 0..<m {
            let row = (0..<u.outChannels).map { y[r, $0] }, norm = row.map { $0 * $0 }.reduce(0, +).squareRoot()
            for j in 0..<u.outChannels { XCTAssertEqual(row[j] / norm, Double(features[r * u.outChannels + j]), accuracy: 1e-5) }
        }
    }

    /// For every unit whose output feeds a ReLU tap directly, relu(W·rows + b) from the plan's input and the
    /// folded layer equals that tap: the plan's sources, pools, im2col order and BatchNorm folding are right.
    func testPlanInputsAndFoldedLayersReproduceTheNetwork() throws {
        // The last two carry an input normalisation, which the first layer's input must include.
        var (mlpN, vggN) = (Self.mlp, Self.vgg)
        mlpN.normalize = .init(mean: [0.3], std: [0.4])
        vggN.normalize = .init(mean: [0.2, -0.1], std: [0.5, 2])
        for arch in [Self.mlp, Self.vgg, Self.vggBN, Self.resnet, mlpN, vggN] {
            let net = try expert(arch, seed: 3)
            let plan = try FusionPlan(arch)
            var rng = SeededRNG(seed: 4, stream: "x")
            let x = Tensor.randomNormal([3] + arch.input, rng: &rng)
            let taps = LeastSquaresFusion.taps(net, x)
            let state = net.stateDictionary()
            var checked = 0
            for (i, u) in plan.units.enumerated() {
                // The tap this unit's ReLU writes: MLP/VGG layer i, ResNet stem 0, block j's conv1 1 + 2j.
                let out: Int?
                switch arch.kind {
                case .mlp, .vgg: out = i
                case .resnet20: out = u.name == "conv1" ? 0 : (u.name.hasSuffix(".conv1") ? 1 + 2 * blockIndex(u.name) : nil)
                case .vit: out = nil
                }
                guard let tapIndex = out else { continue }
                let input = try plan.input(of: u, image: x, taps: taps)
                let layer = try LeastSquaresFusion.fold(u, state)
                let (m, rows) = LeastSquaresFusion.rows(u, input, images: 0..<3, extra: 0)
                let y = Matrix(rows: m, cols: u.columns, data: rows).multiplied(by: layer.weight, transOther: true)
                let expected = taps[tapIndex].storage
                XCTAssertEqual(expected.count, m * u.outChannels, "\(arch.kind) \(u.name)")
                var worst = 0.0
                for r in 0..<m { for j in 0..<u.outChannels {
                    worst = max(worst, abs(max(0, y[r, j] + layer.bias[j]) - Double(expected[r * u.outChannels + j])))
                } }
                XCTAssertLessThan(worst, 1e-4, "\(arch.kind) \(u.name)")
                checked += 1
            }
            XCTAssertEqual(checked, arch.kind == .resnet20 ? 10 : plan.units.count)
            XCTAssertEqual(plan.units.count, arch.kind == .resnet20 ? 21 : (arch.kind == .mlp ? 2 : 3))
        }
    }

    func blockIndex(_ name: String) -> Int {
        let parts = name.split(separator: ".")
        return (Int(parts[0].dropFirst(5))! - 1) * 3 + Int(parts[1])!
    }

    /// Folding every unit and writing it back as folded convolution + identity BatchNorm keeps the network's function.
    func testUnfoldedFileIsTheSameFunction() throws {
        for arch in [Self.vgg, Self.vggBN, Self.resnet] {
            let net = try expert(arch, seed: 5)
            let plan = try FusionPlan(arch)
            var state = net.stateDictionary()
            for u in plan.units { for (n, t) in LeastSquaresFusion.unfold(u, try LeastSquaresFusion.fold(u, state)) { state[n] = t } }
            let copy = try Network<Float>(arch, seed: 0)
            try copy.load(state)
            var rng = SeededRNG(seed: 6, stream: "x")
            let x = Tensor.randomNormal([4] + arch.input, rng: &rng)
            let a = net.forward(x), b = copy.forward(x)
            XCTAssertLessThan(zip(a.storage, b.storage).map { abs($0 - $1) }.max()!, 1e-4, "\(arch.kind)")
            if arch.kind == .resnet20 { XCTAssertEqual(copy.batchNorms[0].runningMean.value.storage.max(), 0) }
        }
    }

    /// solution satisfies the normal equations (W − P)·ρ = (C − W·G)ᵀ-wise, checked as a zero gradient.
    func testProgressiveSolveExactAndNormalEquations() throws {
        let u = try FusionPlan(Self.mlp).units[0]
        var rng = SeededRNG(seed: 9, stream: "exact")
        let truth = FoldedLayer(weight: Matrix(rows: u.outChannels, cols: u.columns, data: (0..<(u.outChannels * u.columns)).map { _ in rng.normal() }),
                                bias: (0..<u.outChannels).map { _ in rng.normal() })
        var s = ProgressiveStatistics(u)
        for _ in 0..<2 {   // two "experts", both exact
            let x = Tensor.randomNormal([40] + Self.mlp.input, rng: &rng).reshaped([40, -1])
            s.accumulate(u, fusedInput: x, expertInput: x, expert: truth)
        }
        XCTAssertEqual(s.rows, 80)
        let prior = FoldedLayer(weight: Matrix(zeros: u.outChannels, u.columns), bias: [Double](repeating: 0, count: u.outChannels))
        let exact = try LeastSquaresFusion.progressiveSolve(layer: u.name, statistics: s, prior: prior, relativeRidge: 0)
        XCTAssertLessThan(relative(exact.augmented, truth.augmented), 1e-9)

        // Targets from a different layer than the inputs' and a ridge: gradient (W·(G + ρI) − C − ρP) = 0.
        var t = ProgressiveStatistics(u)
        let other = FoldedLayer(weight: Matrix(rows: u.outChannels, cols: u.columns, data: truth.weight.data.map { $0 * 0.5 + 0.1 }), bias: truth.bias)
        let xf = Tensor.randomNormal([30] + Self.mlp.input, rng: &rng).reshaped([30, -1])
        let xe = Tensor.randomNormal([30] + Self.mlp.input, rng: &rng).reshaped([30, -1])
        t.accumulate(u, fusedInput: xf, expertInput: xe, expert: other)
        let ridge = 0.05
        let w = try LeastSquaresFusion.progressiveSolve(layer: u.name, statistics: t, prior: truth, relativeRidge: ridge).augmented
        let a = u.columns + 1
        let g = Matrix(rows: a, cols: a, data: t.gram)
        let rho = ridge * (0..<a).reduce(0.0) { $0 + g[$1, $1] } / Double(a)
        var residual = w * g - Matrix(rows: a, cols: u.outChannels, data: t.cross).transposed
        let p = truth.augmented
        for i in 0..<residual.rows { for j in 0..<a { residual[i, j] += rho * (w[i, j] - p[i, j]) } }
        XCTAssertLessThan(residual.norm / (Matrix(rows: a, cols: u.outChannels, data: t.cross).norm), 1e-10)
    }

    /// RegMean: identical experts give their weight back (α = 1, no ridge); α = 0 is the per-input-feature
    /// Gram-diagonal-weighted average; a zero input feature without ridge is refused naming the layer.
    func testRegMeanSolve() throws {
        let u = try FusionPlan(Self.mlp).units[1]   // 10 → 7
        var rng = SeededRNG(seed: 10, stream: "regmean")
        func weight() -> Matrix { Matrix(rows: u.outChannels, cols: u.columns, data: (0..<(u.outChannels * u.columns)).map { _ in rng.normal() }) }
        let w1 = weight(), w2 = weight()
        var s1 = RegMeanStatistics(u), s2 = RegMeanStatistics(u)
        s1.accumulate(u, input: Tensor.randomNormal([50, u.columns], rng: &rng)); s1.weigh(w1)
        s2.accumulate(u, input: Tensor.randomNormal([20, u.columns], rng: &rng).storage.map { $0 * 3 }.tensor([20, u.columns])); s2.weigh(w2)
        let sum = try s1.unpacked(zip(s1.packed, s2.packed).map { $0 + $1 })
        let mean = Matrix(rows: w1.rows, cols: w1.cols, data: zip(w1.data, w2.data).map { ($0 + $1) / 2 })

        var same = s1; same.weigh(w1)
        let sameSum = try same.unpacked(zip(same.packed, same.packed).map { $0 + $1 })
        XCTAssertLessThan(relative(try LeastSquaresFusion.regmeanSolve(layer: u.name, statistics: sameSum, prior: w1, alpha: 1, relativeRidge: 0), w1), 1e-9)

        let diagonal = try LeastSquaresFusion.regmeanSolve(layer: u.name, statistics: sum, prior: mean, alpha: 0, relativeRidge: 0)
        let p = u.columns
        for i in 0..<u.outChannels { for j in 0..<p {
            let g1 = s1.gram[j * p + j], g2 = s2.gram[j * p + j]
            XCTAssertEqual(diagonal[i, j], (w1[i, j] * g1 + w2[i, j] * g2) / (g1 + g2), accuracy: 1e-9)
        } }
        // The full solve: W·(G1 + G2) = W1·G1 + W2·G2.
        let full = try LeastSquaresFusion.regmeanSolve(layer: u.name, statistics: sum, prior: mean, alpha: 1, relativeRidge: 0)
        let lhs = full * Matrix(rows: p, cols: p, data: sum.gram)
        let rhs = w1 * Matrix(rows: p, cols: p, data: s1.gram) + w2 * Matrix(rows: p, cols: p, data: s2.gram)
        XCTAssertLessThan(relative(lhs, rhs), 1e-9)

        var dead = RegMeanStatistics(u)
        var x = Tensor.randomNormal([30, u.columns], rng: &rng)
        for r in 0..<30 { x[r * u.columns + 4] = 0 }
        dead.accumulate(u, input: x); dead.weigh(w1)
        XCTAssertThrowsError(try LeastSquaresFusion.regmeanSolve(layer: "layers.2", statistics: dead, prior: w1, alpha: 1, relativeRidge: 0)) { error in
            XCTAssertEqual(error as? FusionError, .singular(layer: "layers.2", size: u.columns, detail: "input column 4 is zero on every calibration sample and there is no ridge"))
            XCTAssertTrue("\(error)".contains("layer 'layers.2'") && "\(error)".contains("ridge"), "\(error)")
        }
        XCTAssertNoThrow(try LeastSquaresFusion.regmeanSolve(layer: "layers.2", statistics: dead, prior: w1, alpha: 1, relativeRidge: 1e-6))
        XCTAssertThrowsError(try LeastSquaresFusion.regmeanSolve(layer: "layers.2", statistics: dead, prior: w1, alpha: 1.5, relativeRidge: 1e-6))
    }
}

private extension Array where Element == Float {
    func tensor(_ shape: [Int]) -> Tensor { Tensor(shape: shape, storage: self) }
}
