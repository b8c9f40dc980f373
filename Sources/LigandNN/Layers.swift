import LigandNumerics

/// Fully connected layer y = x·Wᵀ + b with PyTorch's [out, in] weight layout.
public final class Linear<S: FloatScalar> {
    public let weight: Parameter<S>
    public let bias: Parameter<S>?
    public let inFeatures: Int, outFeatures: Int
    private var input: TensorOf<S>?

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true, rng: inout SeededRNG) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weight = Parameter("\(name).weight", heNormal([outFeatures, inFeatures], fanIn: inFeatures, rng: &rng), decays: true)
        self.bias = bias ? Parameter("\(name).bias", TensorOf<S>(zeros: [outFeatures]), decays: false) : nil
    }

    public var parameters: [Parameter<S>] { [weight] + (bias.map { [$0] } ?? []) }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let b = x.count / inFeatures
        precondition(b * inFeatures == x.count, "\(weight.name): input \(x.shape) is not a multiple of \(inFeatures) features")
        var y = TensorOf<S>(zeros: [b, outFeatures])
        if let bias { y.withUnsafeMutableBufferPointer { p in
            bias.value.withUnsafeBufferPointer { bv in for r in 0..<b { (p.baseAddress! + r * outFeatures).update(from: bv.baseAddress!, count: outFeatures) } }
        } }
        x.withUnsafeBufferPointer { px in weight.value.withUnsafeBufferPointer { pw in y.withUnsafeMutableBufferPointer { py in
            S.gemm(transA: false, transB: true, m: b, n: outFeatures, k: inFeatures, alpha: 1, a: px.baseAddress!, lda: inFeatures,
                   b: pw.baseAddress!, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: py.baseAddress!, ldc: outFeatures)
        } } }
        if training { input = x }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let x = input else { preconditionFailure("\(weight.name): backward without a training forward") }
        let b = dy.count / outFeatures
        dy.withUnsafeBufferPointer { pdy in
            x.withUnsafeBufferPointer { px in weight.grad.withUnsafeMutableBufferPointer { pg in
                S.gemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: b, alpha: 1, a: pdy.baseAddress!, lda: outFeatures,
                       b: px.baseAddress!, ldb: inFeatures, beta: 1, c: pg.baseAddress!, ldc: inFeatures)
            } }
            if let bias { addColumnSums(pdy, rows: b, cols: outFeatures, into: &bias.grad) }
        }
        var dx = TensorOf<S>(zeros: x.shape)
        dy.withUnsafeBufferPointer { pdy in weight.value.withUnsafeBufferPointer { pw in dx.withUnsafeMutableBufferPointer { pdx in
            S.gemm(transA: false, transB: false, m: b, n: inFeatures, k: outFeatures, alpha: 1, a: pdy.baseAddress!, lda: outFeatures,
                   b: pw.baseAddress!, ldb: inFeatures, beta: 0, c: pdx.baseAddress!, ldc: inFeatures)
        } } }
        input = nil
        return dx
    }
}

/// grad += column sums of a rows×cols matrix, summed in Float64.
@inline(__always) func addColumnSums<S: FloatScalar>(_ p: UnsafeBufferPointer<S>, rows: Int, cols: Int, into grad: inout TensorOf<S>) {
    var acc = [Double](repeating: 0, count: cols)
    acc.withUnsafeMutableBufferPointer { a in
        for r in 0..<rows { let row = p.baseAddress! + r * cols; for j in 0..<cols { a[j] += Double(row[j]) } }
    }
    grad.withUnsafeMutableBufferPointer { g in for j in 0..<cols { g[j] += S(acc[j]) } }
}

/// 2-D convolution on NHWC activations through im2col + one GEMM; weights stored [out, in, kh, kw] as in PyTorch.
public final class Conv2d<S: FloatScalar> {
    public let weight: Parameter<S>
    public let bias: Parameter<S>?
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    private var cols: TensorOf<S>?
    private var inputShape: [Int] = []

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, rng: inout SeededRNG) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride; self.padding = padding
        let fanIn = inChannels * kernel * kernel
        weight = Parameter("\(name).weight", heNormal([outChannels, inChannels, kernel, kernel], fanIn: fanIn, rng: &rng), decays: true)
        self.bias = bias ? Parameter("\(name).bias", TensorOf<S>(zeros: [outChannels]), decays: false) : nil
    }

    public var parameters: [Parameter<S>] { [weight] + (bias.map { [$0] } ?? []) }

    func geometry(_ shape: [Int]) -> ConvGeometry {
        precondition(shape.count == 4 && shape[3] == inChannels, "\(weight.name): expected [N, H, W, \(inChannels)] input, got \(shape)")
        return ConvGeometry(height: shape[1], width: shape[2], channels: inChannels, kernelH: kernel, kernelW: kernel, stride: stride, padding: padding)
    }

    /// The weight as [out, kh·kw·in], matching im2col's (i, j, c) column order.
    func tapMajorWeight() -> [S] {
        let k2 = kernel * kernel, ci = inChannels
        var w = [S](repeating: 0, count: weight.value.count)
        weight.value.withUnsafeBufferPointer { src in
            w.withUnsafeMutableBufferPointer { dst in
                for o in 0..<outChannels { for c in 0..<ci { for t in 0..<k2 {
                    dst[o * k2 * ci + t * ci + c] = src[(o * ci + c) * k2 + t]
                } } }
            }
        }
        return w
    }

    var isPointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let g = geometry(x.shape)
        let n = x.shape[0], rows = n * g.outHeight * g.outWidth, kk = g.patchSize
        let col: TensorOf<S>
        if isPointwise { col = x } else {
            var c = TensorOf<S>(zeros: [rows, kk])
            x.withUnsafeBufferPointer { px in c.withUnsafeMutableBufferPointer { pc in im2col(px.baseAddress!, batch: n, geometry: g, into: pc.baseAddress!) } }
            col = c
        }
        var y = TensorOf<S>(zeros: [n, g.outHeight, g.outWidth, outChannels])
        if let bias { y.withUnsafeMutableBufferPointer { p in bias.value.withUnsafeBufferPointer { bv in
            for r in 0..<rows { (p.baseAddress! + r * outChannels).update(from: bv.baseAddress!, count: outChannels) }
        } } }
        let w = tapMajorWeight()
        col.withUnsafeBufferPointer { pc in w.withUnsafeBufferPointer { pw in y.withUnsafeMutableBufferPointer { py in
            S.gemm(transA: false, transB: true, m: rows, n: outChannels, k: kk, alpha: 1, a: pc.baseAddress!, lda: kk,
                   b: pw.baseAddress!, ldb: kk, beta: bias == nil ? 0 : 1, c: py.baseAddress!, ldc: outChannels)
        } } }
        if training { cols = col; inputShape = x.shape }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let col = cols else { preconditionFailure("\(weight.name): backward without a training forward") }
        let g = geometry(inputShape)
        let n = inputShape[0], rows = n * g.outHeight * g.outWidth, kk = g.patchSize, k2 = kernel * kernel, ci = inChannels
        var dw = [S](repeating: 0, count: outChannels * kk)
        dy.withUnsafeBufferPointer { pdy in
            col.withUnsafeBufferPointer { pc in dw.withUnsafeMutableBufferPointer { pw in
                S.gemm(transA: true, transB: false, m: outChannels, n: kk, k: rows, alpha: 1, a: pdy.baseAddress!, lda: outChannels,
                       b: pc.baseAddress!, ldb: kk, beta: 0, c: pw.baseAddress!, ldc: kk)
            } }
            if let bias { addColumnSums(pdy, rows: rows, cols: outChannels, into: &bias.grad) }
        }
        weight.grad.withUnsafeMutableBufferPointer { gw in dw.withUnsafeBufferPointer { src in
            for o in 0..<outChannels { for c in 0..<ci { for t in 0..<k2 { gw[(o * ci + c) * k2 + t] += src[o * kk + t * ci + c] } } }
        } }
        let w = tapMajorWeight()
        var dcol = TensorOf<S>(zeros: [rows, kk])
        dy.withUnsafeBufferPointer { pdy in w.withUnsafeBufferPointer { pw in dcol.withUnsafeMutableBufferPointer { pd in
            S.gemm(transA: false, transB: false, m: rows, n: kk, k: outChannels, alpha: 1, a: pdy.baseAddress!, lda: outChannels,
                   b: pw.baseAddress!, ldb: kk, beta: 0, c: pd.baseAddress!, ldc: kk)
        } } }
        cols = nil
        if isPointwise { return dcol.reshaped(inputShape) }
        var dx = TensorOf<S>(zeros: inputShape)
        dcol.withUnsafeBufferPointer { pd in dx.withUnsafeMutableBufferPointer { px in col2im(pd.baseAddress!, batch: n, geometry: g, into: px.baseAddress!) } }
        return dx
    }
}

/// BatchNorm over the channel (last) axis of NHWC activations; statistics in Float64.
public final class BatchNorm2d<S: FloatScalar> {
    public let weight: Parameter<S>, bias: Parameter<S>
    public let runningMean: Buffer<S>, runningVar: Buffer<S>
    public var numBatchesTracked: Int64 = 0
    public let name: String
    public let channels: Int
    public let momentum: Double, eps: Double
    private var xhat: TensorOf<S>?
    private var invStd: [Double] = []

    public init(name: String, channels: Int, momentum: Double = 0.1, eps: Double = 1e-5) {
        self.name = name; self.channels = channels; self.momentum = momentum; self.eps = eps
        weight = Parameter("\(name).weight", TensorOf<S>(shape: [channels], repeating: 1), decays: false)
        bias = Parameter("\(name).bias", TensorOf<S>(zeros: [channels]), decays: false)
        runningMean = Buffer("\(name).running_mean", TensorOf<S>(zeros: [channels]))
        runningVar = Buffer("\(name).running_var", TensorOf<S>(shape: [channels], repeating: 1))
    }

    public var parameters: [Parameter<S>] { [weight, bias] }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let c = channels, rows = x.count / c
        precondition(x.shape.last == c, "\(name): expected \(c) channels last, got \(x.shape)")
        var mean = [Double](repeating: 0, count: c), inv = [Double](repeating: 0, count: c)
        if training {
            var sq = [Double](repeating: 0, count: c)
            x.withUnsafeBufferPointer { p in
                for r in 0..<rows { let row = p.baseAddress! + r * c; for j in 0..<c { let v = Double(row[j]); mean[j] += v; sq[j] += v * v } }
            }
            let n = Double(rows)
            for j in 0..<c {
                mean[j] /= n
                let variance = max(sq[j] / n - mean[j] * mean[j], 0)
                inv[j] = 1 / (variance + eps).squareRoot()
                let unbiased = rows > 1 ? variance * n / (n - 1) : variance
                runningMean.value[j] = S((1 - momentum) * Double(runningMean.value[j]) + momentum * mean[j])
                runningVar.value[j] = S((1 - momentum) * Double(runningVar.value[j]) + momentum * unbiased)
            }
            numBatchesTracked += 1
        } else {
            for j in 0..<c { mean[j] = Double(runningMean.value[j]); inv[j] = 1 / (Double(runningVar.value[j]) + eps).squareRoot() }
        }
        var y = TensorOf<S>(zeros: x.shape)
        var xh = training ? TensorOf<S>(zeros: x.shape) : TensorOf<S>(zeros: [0])
        let scale = (0..<c).map { S(inv[$0] * Double(weight.value[$0])) }
        let shift = (0..<c).map { S(Double(bias.value[$0]) - mean[$0] * inv[$0] * Double(weight.value[$0])) }
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
            for r in 0..<rows { let o = r * c; for j in 0..<c { py[o + j] = px[o + j] * scale[j] + shift[j] } }
        } }
        if training {
            let m = mean.map { S($0) }, iv = inv.map { S($0) }
            x.withUnsafeBufferPointer { px in xh.withUnsafeMutableBufferPointer { ph in
                for r in 0..<rows { let o = r * c; for j in 0..<c { ph[o + j] = (px[o + j] - m[j]) * iv[j] } }
            } }
            xhat = xh; invStd = inv
        }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let xh = xhat else { preconditionFailure("\(name): backward without a training forward") }
        let c = channels, rows = dy.count / c
        var sumDy = [Double](repeating: 0, count: c), sumDyX = [Double](repeating: 0, count: c)
        dy.withUnsafeBufferPointer { pd in xh.withUnsafeBufferPointer { ph in
            for r in 0..<rows { let o = r * c; for j in 0..<c { let d = Double(pd[o + j]); sumDy[j] += d; sumDyX[j] += d * Double(ph[o + j]) } }
        } }
        for j in 0..<c { weight.grad[j] += S(sumDyX[j]); bias.grad[j] += S(sumDy[j]) }
        let n = Double(rows)
        let a = (0..<c).map { S(Double(weight.value[$0]) * invStd[$0]) }
        let mDy = sumDy.map { S($0 / n) }, mDyX = sumDyX.map { S($0 / n) }
        var dx = TensorOf<S>(zeros: dy.shape)
        dy.withUnsafeBufferPointer { pd in xh.withUnsafeBufferPointer { ph in dx.withUnsafeMutableBufferPointer { px in
            for r in 0..<rows { let o = r * c; for j in 0..<c { px[o + j] = a[j] * (pd[o + j] - mDy[j] - ph[o + j] * mDyX[j]) } }
        } } }
        xhat = nil
        return dx
    }
}

/// max(0, x), remembering the mask for backward.
public final class ReLU<S: FloatScalar> {
    private var output: TensorOf<S>?
    public init() {}
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        var y = x
        y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count where p[i] < 0 { p[i] = 0 } }
        if training { output = y }
        return y
    }
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let y = output else { preconditionFailure("ReLU: backward without a training forward") }
        var dx = dy
        dx.withUnsafeMutableBufferPointer { p in y.withUnsafeBufferPointer { py in for i in 0..<p.count where py[i] <= 0 { p[i] = 0 } } }
        output = nil
        return dx
    }
}

/// Max pooling with a square window on NHWC activations.
public final class MaxPool2d<S: FloatScalar> {
    public let kernel: Int, stride: Int
    private var argmax: [Int32] = []
    private var inputShape: [Int] = []
    public init(kernel: Int = 2, stride: Int? = nil) { self.kernel = kernel; self.stride = stride ?? kernel }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        precondition(x.rank == 4, "MaxPool2d: expected [N, H, W, C], got \(x.shape)")
        let n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
        let oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1
        var y = TensorOf<S>(zeros: [n, oh, ow, c])
        var am = [Int32](repeating: 0, count: n * oh * ow * c)
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in am.withUnsafeMutableBufferPointer { pa in
            for b in 0..<n { for i in 0..<oh { for j in 0..<ow {
                let o = ((b * oh + i) * ow + j) * c
                for ch in 0..<c {
                    var best = -S.infinity, bi = 0
                    for di in 0..<kernel { for dj in 0..<kernel {
                        let idx = ((b * h + i * stride + di) * w + j * stride + dj) * c + ch
                        if px[idx] > best { best = px[idx]; bi = idx }
                    } }
                    py[o + ch] = best; pa[o + ch] = Int32(bi)
                }
            } } }
        } } }
        if training { argmax = am; inputShape = x.shape }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        var dx = TensorOf<S>(zeros: inputShape)
        dx.withUnsafeMutableBufferPointer { px in dy.withUnsafeBufferPointer { pd in
            for i in 0..<pd.count { px[Int(argmax[i])] += pd[i] }
        } }
        return dx
    }
}

/// Mean over the spatial positions: [N, H, W, C] → [N, C].
public final class GlobalAvgPool<S: FloatScalar> {
    private var inputShape: [Int] = []
    public init() {}
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        precondition(x.rank == 4, "GlobalAvgPool: expected [N, H, W, C], got \(x.shape)")
        let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
        var y = TensorOf<S>(zeros: [n, c])
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
            var acc = [Double](repeating: 0, count: c)
            for b in 0..<n {
                for j in 0..<c { acc[j] = 0 }
                for p in 0..<hw { let o = (b * hw + p) * c; for j in 0..<c { acc[j] += Double(px[o + j]) } }
                for j in 0..<c { py[b * c + j] = S(acc[j] / Double(hw)) }
            }
        } }
        inputShape = x.shape
        return y
    }
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3]
        var dx = TensorOf<S>(zeros: inputShape)
        let inv = S(1) / S(hw)
        dx.withUnsafeMutableBufferPointer { px in dy.withUnsafeBufferPointer { pd in
            for b in 0..<n { for p in 0..<hw { let o = (b * hw + p) * c; for j in 0..<c { px[o + j] = pd[b * c + j] * inv } } }
        } }
        return dx
    }
}
