import XCTest
import Foundation
import LigandNumerics
@testable import LigandNN

/// Every backward pass against central finite differences, in Float64.
final class GradientTests: XCTestCase {
    typealias T = TensorOf<Double>

    /// Relative error ‖a − n‖ / max(‖a‖, ‖n‖) between analytic and numeric gradients.
    func relativeError(_ a: [Double], _ n: [Double]) -> Double {
        var d = 0.0, na = 0.0, nn = 0.0
        for i in 0..<a.count { d += (a[i] - n[i]) * (a[i] - n[i]); na += a[i] * a[i]; nn += n[i] * n[i] }
        return d.squareRoot() / max(na.squareRoot(), nn.squareRoot(), 1e-12)
    }

    /// Numeric gradient of `f` at `x` for the entries in `coords`.
    func numericGradient(at x: T, coords: [Int], h: Double = 1e-6, _ f: (T) -> Double) -> [Double] {
        var y = x
        return coords.map { i in
            let old = y.storage[i]
            y.storage[i] = old + h; let fp = f(y)
            y.storage[i] = old - h; let fm = f(y)
            y.storage[i] = old
            return (fp - fm) / (2 * h)
        }
    }

    /// Numeric gradient of `f` with respect to a parameter, perturbed in place.
    func numericGradient(of p: Parameter<Double>, coords: [Int], h: Double = 1e-6, _ f: () -> Double) -> [Double] {
        coords.map { i in
            let old = p.value.storage[i]
            p.value.storage[i] = old + h; let fp = f()
            p.value.storage[i] = old - h; let fm = f()
            p.value.storage[i] = old
            return (fp - fm) / (2 * h)
        }
    }

    func coords(_ n: Int, max m: Int = 60, rng: inout SeededRNG) -> [Int] {
        n <= m ? Array(0..<n) : Array(rng.permutation(n).prefix(m))
    }

    /// Checks dL/dx and dL/dθ for L = Σ y ⊙ r with a fixed random r.
    func check(name: String, input shape: [Int], params: [Parameter<Double>], seed: UInt64 = 1,
               forward: @escaping (T) -> T, backward: @escaping (T) -> T, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededRNG(seed: seed)
        let x = T.randomNormal(shape, rng: &rng)
        let y0 = forward(x)
        let r = T.randomNormal(y0.shape, rng: &rng)
        let lossAt: (T) -> Double = { forward($0).dot(r) }
        let loss: () -> Double = { lossAt(x) }
        for p in params { p.zeroGrad() }
        _ = forward(x)
        let dx = backward(r)
        let cx = coords(x.count, rng: &rng)
        let nx = numericGradient(at: x, coords: cx, lossAt)
        let ex = relativeError(cx.map { dx.storage[$0] }, nx)
        XCTAssertLessThan(ex, 1e-4, "\(name): dL/dx relative error \(ex)", file: file, line: line)
        for p in params {
            let analytic = p.grad
            let cp = coords(p.value.count, rng: &rng)
            let np = numericGradient(of: p, coords: cp, loss)
            let ep = relativeError(cp.map { analytic.storage[$0] }, np)
            XCTAssertLessThan(ep, 1e-4, "\(name): dL/d\(p.name) relative error \(ep)", file: file, line: line)
        }
    }

    func testLinear() {
        var rng = SeededRNG(seed: 3)
        for (b, i, o, bias) in [(5, 7, 4, true), (1, 3, 6, false), (9, 12, 12, true)] {
            let l = Linear<Double>(name: "fc", inFeatures: i, outFeatures: o, bias: bias, rng: &rng)
            check(name: "Linear \(b)×\(i)→\(o)", input: [b, i], params: l.parameters,
                  forward: { l.forward($0, training: true) }, backward: { l.backward($0) })
        }
    }

    func testConv2d() {
        var rng = SeededRNG(seed: 4)
        for (n, h, w, ci, co, k, s, p, bias) in [(2, 5, 6, 3, 4, 3, 1, 1, true), (1, 7, 7, 2, 3, 3, 2, 1, false),
                                                  (2, 6, 5, 3, 5, 1, 1, 0, true), (2, 8, 8, 4, 2, 1, 2, 0, false),
                                                  (1, 6, 6, 1, 2, 5, 1, 2, true), (3, 4, 4, 2, 2, 2, 2, 0, true)] {
            let l = Conv2d<Double>(name: "conv", inChannels: ci, outChannels: co, kernel: k, stride: s, padding: p, bias: bias, rng: &rng)
            check(name: "Conv2d k\(k) s\(s) p\(p)", input: [n, h, w, ci], params: l.parameters,
                  forward: { l.forward($0, training: true) }, backward: { l.backward($0) })
        }
    }

    func testBatchNormTraining() {
        for (shape, seed) in [([4, 3, 3, 5], UInt64(5)), ([2, 2, 5, 3], 6), ([7, 1, 1, 4], 7)] {
            let l = BatchNorm2d<Double>(name: "bn", channels: shape[3])
            var rng = SeededRNG(seed: seed)
            l.weight.value = T.randomNormal([shape[3]], rng: &rng)
            l.bias.value = T.randomNormal([shape[3]], rng: &rng)
            check(name: "BatchNorm2d \(shape)", input: shape, params: l.parameters, seed: seed,
                  forward: { l.forward($0, training: true) }, backward: { l.backward($0) })
        }
    }

    func testBatchNormEvalUsesRunningStatistics() {
        let l = BatchNorm2d<Double>(name: "bn", channels: 2)
        l.runningMean.value = T(shape: [2], storage: [1, -2])
        l.runningVar.value = T(shape: [2], storage: [4, 0.25])
        let y = l.forward(T(shape: [1, 1, 1, 2], storage: [3, -1]), training: false)
        XCTAssertEqual(y.storage[0], 2 / (4 + 1e-5).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(y.storage[1], 1 / (0.25 + 1e-5).squareRoot(), accuracy: 1e-12)
    }

    /// A frozen BatchNorm (what the Fisher information differentiates) is the eval-mode affine map: its training
    /// forward equals the eval forward, leaves the running statistics alone, and its backward is that map's.
    func testFrozenBatchNorm() {
        let l = BatchNorm2d<Double>(name: "bn", channels: 3)
        var rng = SeededRNG(seed: 8)
        l.weight.value = T.randomNormal([3], rng: &rng)
        l.bias.value = T.randomNormal([3], rng: &rng)
        l.runningMean.value = T.randomNormal([3], rng: &rng)
        l.runningVar.value = T(shape: [3], storage: [0.5, 2, 1.5])
        l.frozen = true
        let x = T.randomNormal([2, 2, 3, 3], rng: &rng)
        XCTAssertEqual(l.forward(x, training: true).storage, l.forward(x, training: false).storage)
        XCTAssertEqual(l.runningVar.value.storage, [0.5, 2, 1.5])
        XCTAssertEqual(l.numBatchesTracked, 0)
        check(name: "frozen BatchNorm2d", input: [2, 2, 3, 3], params: l.parameters, seed: 9,
              forward: { l.forward($0, training: true) }, backward: { l.backward($0) })
    }

    func testReLUMaxPoolGlobalAvgPool() {
        let relu = ReLU<Double>()
        check(name: "ReLU", input: [3, 7], params: [], forward: { relu.forward($0, training: true) }, backward: { relu.backward($0) })
        let pool = MaxPool2d<Double>(kernel: 2)
        check(name: "MaxPool2d", input: [2, 6, 4, 3], params: [], forward: { pool.forward($0, training: true) }, backward: { pool.backward($0) })
        let gap = GlobalAvgPool<Double>()
        check(name: "GlobalAvgPool", input: [2, 3, 5, 4], params: [], forward: { gap.forward($0, training: true) }, backward: { gap.backward($0) })
    }

    func testBasicBlockWithAndWithoutProjection() {
        var rng = SeededRNG(seed: 8)
        for (ci, co, s) in [(3, 3, 1), (2, 4, 2)] {
            let b = BasicBlock<Double>(name: "layer", inChannels: ci, outChannels: co, stride: s, rng: &rng)
            for bn in b.batchNorms { bn.weight.value = T.randomNormal([co], rng: &rng); bn.bias.value = T.randomNormal([co], rng: &rng) }
            check(name: "BasicBlock \(ci)→\(co) s\(s)", input: [3, 6, 6, ci], params: b.parameters,
                  forward: { b.forward($0, training: true) }, backward: { b.backward($0) })
        }
    }

    func testWholeNetworks() throws {
        let archs: [Architecture] = [
            .mlp(hidden: [6, 5], input: [3, 3, 1], classes: 4),
            .vgg([.conv(3), .pool, .conv(4)], input: [6, 6, 2], classes: 3),
            .vgg([.conv(3), .pool, .conv(4)], input: [6, 6, 2], classes: 3, batchNorm: true),
            .resnet20(width: 1, input: [8, 8, 1], classes: 3),
            .vit(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 1.5, input: [4, 6, 2], classes: 3),
            // CLIP's tower: norm_pre, QuickGELU, ε 1e-5, a bias-free patch projection, proj and unit-length features.
            .clip(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 1.5, embed: 5, input: [4, 6, 2], classes: 3),
        ]
        for arch in archs {
            let net = try Network<Double>(arch, seed: 11)
            var rng = SeededRNG(seed: 13)
            // timm's 0.02 initialisation leaves a ViT nearly linear: random weights exercise every path.
            if arch.kind == .vit { for p in net.parameters { p.value = T.randomNormal(p.value.shape, std: 0.5, rng: &rng) } }
            for bn in net.batchNorms {
                bn.weight.value = T.randomNormal(bn.weight.value.shape, rng: &rng)
                bn.bias.value = T.randomNormal(bn.bias.value.shape, rng: &rng)
            }
            let n = 4
            let labels = (0..<n).map { $0 % arch.classes }
            let x = T.randomNormal([n] + arch.input, rng: &rng)
            let lossAt: (T) -> Double = { Loss.crossEntropy(net.forward($0, training: true), labels: labels).loss }
            let loss: () -> Double = { lossAt(x) }
            net.zeroGrad()
            let dx = net.backward(Loss.crossEntropy(net.forward(x, training: true), labels: labels).grad)
            // ResNet-20 has ~65 tensors: a few coordinates of each keep the debug-build test short.
            let perTensor = arch.kind == .resnet20 ? 2 : 12
            let cx = coords(x.count, max: 24, rng: &rng)
            let ex = relativeError(cx.map { dx.storage[$0] }, numericGradient(at: x, coords: cx, lossAt))
            XCTAssertLessThan(ex, 1e-4, "\(arch): dL/dx relative error \(ex)")
            for p in net.parameters {
                let analytic = p.grad
                let cp = coords(p.value.count, max: perTensor, rng: &rng)
                let ep = relativeError(cp.map { analytic.storage[$0] }, numericGradient(of: p, coords: cp, loss))
                XCTAssertLessThan(ep, 1e-4, "\(arch): dL/d\(p.name) relative error \(ep)")
            }
        }
    }

    /// A loss on the features alone (`backwardParameters(features:)`, the feature anchor's): every backbone gradient
    /// against finite differences of L = Σ features ⊙ r, and none for the head.
    func testFeatureBackward() throws {
        let archs: [Architecture] = [
            .mlp(hidden: [6, 5], input: [3, 3, 1], classes: 4),
            .vit(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 1.5, input: [4, 6, 2], classes: 3),
        ]
        for arch in archs {
            let net = try Network<Double>(arch, seed: 21)
            var rng = SeededRNG(seed: 22)
            if arch.kind == .vit { for p in net.parameters { p.value = T.randomNormal(p.value.shape, std: 0.5, rng: &rng) } }
            let x = T.randomNormal([3] + arch.input, rng: &rng)
            let r = T.randomNormal([3, net.featureWidth], rng: &rng)
            let loss: () -> Double = { net.features(x, training: true).dot(r) }
            net.zeroGrad()
            _ = net.features(x, training: true)
            net.backwardParameters(features: r)
            let head = Set(net.head.parameters.map(\.name))
            for p in net.parameters {
                if head.contains(p.name) { XCTAssertTrue(p.grad.storage.allSatisfy { $0 == 0 }, "\(arch.kind): \(p.name)"); continue }
                let cp = coords(p.value.count, max: 12, rng: &rng)
                let ep = relativeError(cp.map { p.grad.storage[$0] }, numericGradient(of: p, coords: cp, loss))
                XCTAssertLessThan(ep, 1e-4, "\(arch.kind): dL/d\(p.name) relative error \(ep)")
            }
        }
    }

    /// Training's backward (parameters only, no input gradient for the first layer) leaves every gradient bitwise as
    /// the full backward does, for each kind of first layer: linear, convolution, patch embedding.
    func testParameterBackwardMatchesFullBackward() throws {
        let archs: [Architecture] = [
            .mlp(hidden: [6, 5], input: [3, 3, 1], classes: 4),
            .vgg([.conv(3), .pool, .conv(4)], input: [6, 6, 2], classes: 3, batchNorm: true),
            .resnet20(width: 1, input: [8, 8, 1], classes: 3),
            .vit(patch: 2, width: 8, depth: 2, heads: 2, mlpRatio: 1.5, input: [4, 6, 2], classes: 3),
        ]
        for arch in archs {
            let net = try Network<Float>(arch, seed: 3)
            var rng = SeededRNG(seed: 4)
            let x = TensorOf<Float>.randomNormal([5] + arch.input, rng: &rng)
            let labels = (0..<5).map { $0 % arch.classes }
            func gradients(_ backward: (TensorOf<Float>) -> Void) -> [[Float]] {
                net.zeroGrad()
                backward(Loss.crossEntropy(net.forward(x, training: true), labels: labels).grad)
                return net.parameters.map(\.grad.storage)
            }
            let full = gradients { _ = net.backward($0) }, parameters = gradients { net.backwardParameters($0) }
            XCTAssertEqual(full.count, parameters.count)
            for (p, (a, b)) in zip(net.parameters, zip(full, parameters)) {
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(arch.kind): \(p.name)")
                XCTAssertTrue(a.contains { $0 != 0 }, "\(arch.kind): \(p.name) has no gradient")
            }
        }
    }

    func testLayerNorm() {
        var rng = SeededRNG(seed: 21)
        for (shape, eps) in [([3, 4, 5], 1e-6), ([6, 7], 1e-5), ([1, 1, 9], 1e-3)] {
            let l = LayerNorm<Double>(name: "norm", features: shape.last!, eps: eps)
            l.weight.value = T.randomNormal([shape.last!], rng: &rng)
            l.bias.value = T.randomNormal([shape.last!], rng: &rng)
            check(name: "LayerNorm \(shape) ε \(eps)", input: shape, params: l.parameters, seed: 22,
                  forward: { l.forward($0, training: true) }, backward: { l.backward($0) })
        }
    }

    func testLayerNormMatchesItsDefinition() {
        let l = LayerNorm<Double>(name: "norm", features: 4, eps: 1e-6)
        let y = l.forward(T(shape: [1, 4], storage: [1, 2, 3, 6]), training: false)
        // μ = 3, σ² = (4 + 1 + 0 + 9)/4 = 3.5: biased variance, as PyTorch.
        for (i, v) in [1.0, 2, 3, 6].enumerated() { XCTAssertEqual(y.storage[i], (v - 3) / (3.5 + 1e-6).squareRoot(), accuracy: 1e-12) }
    }

    func testGELUIsExactAndDifferentiable() {
        let g = GELU<Double>()
        check(name: "GELU", input: [4, 9], params: [], forward: { g.forward($0, training: true) }, backward: { g.backward($0) })
        // x·Φ(x) at x = 1 and −2 (the erf form, not the tanh approximation: 0.841192 at 1).
        let y = g.forward(T(shape: [2], storage: [1, -2]), training: false)
        XCTAssertEqual(y.storage[0], 0.8413447460685429, accuracy: 1e-12)
        XCTAssertEqual(y.storage[1], -2 * 0.022750131948179195, accuracy: 1e-12)
    }

    func testQuickGELUIsCLIPsAndDifferentiable() {
        let g = GELU<Double>(quick: true)
        check(name: "QuickGELU", input: [4, 9], params: [], forward: { g.forward($0, training: true) }, backward: { g.backward($0) })
        // x·σ(1.702x) at x = 1: 1 / (1 + e^−1.702).
        XCTAssertEqual(g.forward(T(shape: [1], storage: [1]), training: false).storage[0], 1 / (1 + Foundation.exp(-1.702)), accuracy: 1e-12)
    }

    func testUnitNorm() {
        let u = UnitNorm<Double>()
        check(name: "UnitNorm", input: [5, 7], params: [], forward: { u.forward($0, training: true) }, backward: { u.backward($0) })
        let y = u.forward(T(shape: [2, 2], storage: [3, 4, 0, 0]), training: false)
        XCTAssertEqual(y.storage, [0.6, 0.8, 0, 0], "rows scaled to length 1; a zero row stays zero (F.normalize's ε)")
    }

    func testMultiHeadAttention() {
        var rng = SeededRNG(seed: 23)
        for (n, t, d, h) in [(2, 5, 8, 2), (1, 3, 6, 3), (3, 4, 4, 1)] {
            let a = MultiHeadAttention<Double>(name: "attn", width: d, heads: h, std: 0.5, rng: &rng)
            for p in a.parameters where p.name.hasSuffix("bias") { p.value = T.randomNormal(p.value.shape, rng: &rng) }
            check(name: "attention \(h) heads, \(t) tokens of \(d)", input: [n, t, d], params: a.parameters, seed: 24,
                  forward: { a.forward($0, training: true) }, backward: { a.backward($0) })
        }
    }

    func testAttentionHeadsAreIndependentSoftmaxes() {
        // With Q = K = 0 every head averages its values: the output is the mean token's value, projected.
        var rng = SeededRNG(seed: 25)
        let a = MultiHeadAttention<Double>(name: "attn", width: 4, heads: 2, std: 0.5, rng: &rng)
        var w = a.qkv.weight.value
        for r in 0..<8 { for c in 0..<4 { w.storage[r * 4 + c] = 0 } }
        a.qkv.weight.value = w
        a.qkv.bias!.value = T(zeros: [12])
        var heads: T?
        let x = T.randomNormal([1, 3, 4], rng: &rng)
        _ = a.forward(x, training: false) { heads = $0 }
        let v = a.qkv.forward(x.reshaped([3, 4]), training: false)
        for j in 0..<4 {
            let mean = (0..<3).map { v.storage[$0 * 12 + 8 + j] }.reduce(0, +) / 3
            for r in 0..<3 { XCTAssertEqual(heads!.storage[r * 4 + j], mean, accuracy: 1e-12) }
        }
    }

    func testTransformerBlockAndTokens() {
        var rng = SeededRNG(seed: 26)
        let b = TransformerBlock<Double>(name: "blocks.0", width: 6, heads: 3, hidden: 10, std: 0.5, rng: &rng)
        for p in b.parameters where !p.name.contains("weight") || p.name.contains("norm") { p.value = T.randomNormal(p.value.shape, rng: &rng) }
        check(name: "transformer block", input: [2, 4, 6], params: b.parameters, seed: 27,
              forward: { b.forward($0, training: true) }, backward: { b.backward($0) })
        let e = TokenEmbedding<Double>(channels: 2, patch: 2, grid: (2, 3), width: 5, std: 0.5, rng: &rng)
        e.classToken.value = T.randomNormal([1, 1, 5], rng: &rng)
        check(name: "token embedding", input: [2, 4, 6, 2], params: e.parameters, seed: 28,
              forward: { e.forward($0, training: true) }, backward: { e.backward($0) })
    }

    func testLosses() {
        var rng = SeededRNG(seed: 12)
        let b = 5, c = 4
        let labels = (0..<b).map { _ in rng.int(below: c) }
        let target = Loss.softmax(T.randomNormal([b, c], rng: &rng))
        let cases: [(String, (T) -> (Double, T))] = [
            ("cross-entropy", { Loss.crossEntropy($0, labels: labels) }),
            ("cross-entropy, label smoothing 0.1", { Loss.crossEntropy($0, labels: labels, smoothing: 0.1) }),
            ("entropy", { Loss.entropy($0) }),
            ("KL", { Loss.klDivergence(target: target, logits: $0) }),
        ]
        for (name, f) in cases {
            let z = T.randomNormal([b, c], std: 2, rng: &rng)
            let analytic = f(z).1
            let numeric = numericGradient(at: z, coords: Array(0..<z.count)) { f($0).0 }
            let e = relativeError(analytic.storage, numeric)
            XCTAssertLessThan(e, 1e-6, "\(name) gradient relative error \(e)")
        }
        // KL of a distribution with itself is zero; entropy of uniform logits is log C.
        let z = T.randomNormal([3, c], rng: &rng)
        XCTAssertEqual(Loss.klDivergence(target: Loss.softmax(z), logits: z).loss, 0, accuracy: 1e-12)
        XCTAssertEqual(Loss.entropy(T(zeros: [2, c])).loss, Foundation.log(Double(c)), accuracy: 1e-12)
        // Smoothing ε: the loss is (1 − ε)·CE + ε·(mean over classes of −log p); uniform logits give log C for any ε.
        let ce = Loss.crossEntropy(z, labels: [0, 1, 2]).loss
        let uniformPart = (0..<3).map { r -> Double in
            let row = Array(z.storage[(r * c)..<(r * c + c)])
            let lz = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
            return row.map { lz - $0 }.reduce(0, +) / Double(c)
        }.reduce(0, +) / 3
        XCTAssertEqual(Loss.crossEntropy(z, labels: [0, 1, 2], smoothing: 0.2).loss, 0.8 * ce + 0.2 * uniformPart, accuracy: 1e-12)
        XCTAssertEqual(Loss.crossEntropy(T(zeros: [2, c]), labels: [0, 3], smoothing: 0.3).loss, Foundation.log(Double(c)), accuracy: 1e-12)
    }
}
