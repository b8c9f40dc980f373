import XCTest
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
        ]
        for arch in archs {
            let net = try Network<Double>(arch, seed: 11)
            var rng = SeededRNG(seed: 13)
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

    func testLosses() {
        var rng = SeededRNG(seed: 12)
        let b = 5, c = 4
        let labels = (0..<b).map { _ in rng.int(below: c) }
        let target = Loss.softmax(T.randomNormal([b, c], rng: &rng))
        let cases: [(String, (T) -> (Double, T))] = [
            ("cross-entropy", { Loss.crossEntropy($0, labels: labels) }),
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
    }
}
