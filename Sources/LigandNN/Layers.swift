import LigandNumerics

/// Fully connected layer y = x·Wᵀ + b with PyTorch's [out, in] weight layout.
/// GEMMs run in fixed row blocks so the result is the same for any number of workers.
public final class Linear<S: FloatScalar> {
    public let weight: Parameter<S>
    public let bias: Parameter<S>?
    public let inFeatures: Int, outFeatures: Int
    private var input: TensorOf<S>?
    static var block: Int { 64 }

    /// `std`: normal weights of that deviation (a transformer's 0.02, as timm draws them); nil: He normal.
    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true, std: Double? = nil, rng: inout SeededRNG) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        let w: TensorOf<S> = std.map { normalWeights([outFeatures, inFeatures], std: $0, rng: &rng) } ?? heNormal([outFeatures, inFeatures], fanIn: inFeatures, rng: &rng)
        weight = Parameter("\(name).weight", w, decays: true)
        self.bias = bias ? Parameter("\(name).bias", TensorOf<S>(zeros: [outFeatures]), decays: false) : nil
    }

    public var parameters: [Parameter<S>] { [weight] + (bias.map { [$0] } ?? []) }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let b = x.count / inFeatures, fi = inFeatures, fo = outFeatures
        precondition(b * fi == x.count, "\(weight.name): input \(x.shape) is not a multiple of \(fi) features")
        let biasValues = bias?.value.storage
        // The bias copy or the β = 0 GEMM writes every element of y.
        let y = TensorOf<S>(shape: [b, fo]) { py in x.withUnsafeBufferPointer { px in weight.value.withUnsafeBufferPointer { pw in
            let xp = px.baseAddress!, wp = pw.baseAddress!, yp = py.baseAddress!
            Parallel.forEach((b + Self.block - 1) / Self.block) { chunk in
                let lo = chunk * Self.block, rows = min(Self.block, b - lo)
                if let biasValues { biasValues.withUnsafeBufferPointer { bv in for r in lo..<(lo + rows) { (yp + r * fo).initialize(from: bv.baseAddress!, count: fo) } } }
                S.gemm(transA: false, transB: true, m: rows, n: fo, k: fi, alpha: 1, a: xp + lo * fi, lda: fi,
                       b: wp, ldb: fi, beta: biasValues == nil ? 0 : 1, c: yp + lo * fo, ldc: fo)
            }
        } } }
        if training { input = x }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> { backward(dy, inputGradient: true)! }

    /// Accumulates dW and db; returns dx, or nil without `inputGradient` (the first layer's dx, which nothing reads).
    public func backward(_ dy: TensorOf<S>, inputGradient: Bool) -> TensorOf<S>? {
        guard let x = input else { preconditionFailure("\(weight.name): backward without a training forward") }
        let b = dy.count / outFeatures, fi = inFeatures, fo = outFeatures
        dy.withUnsafeBufferPointer { pdy in
            let dyp = pdy.baseAddress!
            x.withUnsafeBufferPointer { px in weight.grad.withUnsafeMutableBufferPointer { pg in
                let xp = px.baseAddress!, gp = pg.baseAddress!
                // dW rows are independent: each block of output units is one GEMM over the whole batch.
                Parallel.forEach((fo + Self.block - 1) / Self.block) { chunk in
                    let lo = chunk * Self.block, rows = min(Self.block, fo - lo)
                    S.gemm(transA: true, transB: false, m: rows, n: fi, k: b, alpha: 1, a: dyp + lo, lda: fo,
                           b: xp, ldb: fi, beta: 1, c: gp + lo * fi, ldc: fi)
                }
            } }
            if let bias { addColumnSums(pdy, rows: b, cols: fo, into: &bias.grad) }
        }
        guard inputGradient else { input = nil; return nil }
        // The β = 0 GEMMs write every element of dx.
        let dx = TensorOf<S>(shape: x.shape) { pdx in dy.withUnsafeBufferPointer { pdy in weight.value.withUnsafeBufferPointer { pw in
            let dyp = pdy.baseAddress!, wp = pw.baseAddress!, dxp = pdx.baseAddress!
            Parallel.forEach((b + Self.block - 1) / Self.block) { chunk in
                let lo = chunk * Self.block, rows = min(Self.block, b - lo)
                S.gemm(transA: false, transB: false, m: rows, n: fi, k: fo, alpha: 1, a: dyp + lo * fo, lda: fo,
                       b: wp, ldb: fi, beta: 0, c: dxp + lo * fi, ldc: fi)
            }
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

/// 2-D convolution on NHWC activations through im2col + GEMM; weights stored [out, in, kh, kw] as in PyTorch.
/// The batch is cut into chunks of whole images whose patch matrix fits in L2, processed in parallel;
/// backward recomputes each chunk's patches instead of keeping the whole batch's (memory traffic, not FLOPs, bounds small convolutions).
public final class Conv2d<S: FloatScalar> {
    public let weight: Parameter<S>
    public let bias: Parameter<S>?
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    private var input: TensorOf<S>?

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, std: Double? = nil, rng: inout SeededRNG) {
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride; self.padding = padding
        let fanIn = inChannels * kernel * kernel, shape = [outChannels, inChannels, kernel, kernel]
        let w: TensorOf<S> = std.map { normalWeights(shape, std: $0, rng: &rng) } ?? heNormal(shape, fanIn: fanIn, rng: &rng)
        weight = Parameter("\(name).weight", w, decays: true)
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

    /// Images per chunk: enough rows to amortise a GEMM call, few enough that the patches stay in L2.
    func imagesPerChunk(_ g: ConvGeometry, batch: Int) -> Int {
        let bytesPerImage = g.outHeight * g.outWidth * max(g.patchSize, outChannels) * MemoryLayout<S>.size
        return max(1, min(batch, (768 * 1024) / max(1, bytesPerImage)))
    }

    /// Patches of images [first, first + count) into `col`, or the input itself for a pointwise convolution.
    @inline(__always)
    func withPatches<R>(_ px: UnsafePointer<S>, first: Int, count: Int, _ g: ConvGeometry, _ body: (UnsafePointer<S>) -> R) -> R {
        let imageSize = g.height * g.width * g.channels
        if isPointwise { return body(px + first * imageSize) }
        let rows = count * g.outHeight * g.outWidth
        let col = UnsafeMutablePointer<S>.allocate(capacity: rows * g.patchSize)
        defer { col.deallocate() }
        im2col(px + first * imageSize, batch: count, geometry: g, into: col)
        return body(col)
    }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let t0 = ConvProfiler.enabled ? ConvProfiler.now() : 0
        let g = geometry(x.shape)
        let n = x.shape[0], spatial = g.outHeight * g.outWidth, kk = g.patchSize, co = outChannels
        let w = tapMajorWeight()
        let per = imagesPerChunk(g, batch: n)
        let chunks = (n + per - 1) / per
        let biasValues = bias?.value.storage
        // The bias copy or the β = 0 GEMM writes every element of y.
        let y = TensorOf<S>(shape: [n, g.outHeight, g.outWidth, co]) { py in x.withUnsafeBufferPointer { px in w.withUnsafeBufferPointer { pw in
            let xp = px.baseAddress!, wp = pw.baseAddress!, yp = py.baseAddress!
            Parallel.forEach(chunks) { chunk in
                let first = chunk * per, count = min(per, n - first), rows = count * spatial
                let out = yp + first * spatial * co
                if let biasValues { for r in 0..<rows { biasValues.withUnsafeBufferPointer { (out + r * co).initialize(from: $0.baseAddress!, count: co) } } }
                withPatches(xp, first: first, count: count, g) { col in
                    S.gemm(transA: false, transB: true, m: rows, n: co, k: kk, alpha: 1, a: col, lda: kk,
                           b: wp, ldb: kk, beta: biasValues == nil ? 0 : 1, c: out, ldc: co)
                }
            }
        } } }
        if training { input = x }
        if ConvProfiler.enabled { ConvProfiler.record(forward: true, since: t0, flops: 2.0 * Double(n * spatial * kk * co)) }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> { backward(dy, inputGradient: true)! }

    /// Accumulates dW and db; returns dx, or nil without `inputGradient` (the first layer's dx, which nothing reads).
    public func backward(_ dy: TensorOf<S>, inputGradient: Bool) -> TensorOf<S>? {
        guard let x = input else { preconditionFailure("\(weight.name): backward without a training forward") }
        let t0 = ConvProfiler.enabled ? ConvProfiler.now() : 0
        let g = geometry(x.shape)
        let n = x.shape[0], spatial = g.outHeight * g.outWidth, kk = g.patchSize, co = outChannels
        let k2 = kernel * kernel, ci = inChannels
        let w = tapMajorWeight()
        let per = imagesPerChunk(g, batch: n)
        let chunks = (n + per - 1) / per
        var partials = [S](repeating: 0, count: chunks * co * kk)
        var dx = TensorOf<S>(zeros: inputGradient ? x.shape : [0])
        let imageSize = g.height * g.width * g.channels
        x.withUnsafeBufferPointer { px in dy.withUnsafeBufferPointer { pdy in w.withUnsafeBufferPointer { pw in
            partials.withUnsafeMutableBufferPointer { pp in dx.withUnsafeMutableBufferPointer { pdx in
                let xp = px.baseAddress!, dyp = pdy.baseAddress!, wp = pw.baseAddress!, pap = pp.baseAddress!
                // Without an input gradient dx is empty and nothing is written.
                let dxBase = inputGradient ? pdx.baseAddress : nil
                Parallel.forEach(chunks) { chunk in
                    let first = chunk * per, count = min(per, n - first), rows = count * spatial
                    let d = dyp + first * spatial * co
                    withPatches(xp, first: first, count: count, g) { col in
                        S.gemm(transA: true, transB: false, m: co, n: kk, k: rows, alpha: 1, a: d, lda: co,
                               b: col, ldb: kk, beta: 0, c: pap + chunk * co * kk, ldc: kk)
                    }
                    guard let dxp = dxBase else { return }
                    if isPointwise {
                        S.gemm(transA: false, transB: false, m: rows, n: kk, k: co, alpha: 1, a: d, lda: co,
                               b: wp, ldb: kk, beta: 0, c: dxp + first * imageSize, ldc: kk)
                    } else {
                        let dcol = UnsafeMutablePointer<S>.allocate(capacity: rows * kk)
                        defer { dcol.deallocate() }
                        S.gemm(transA: false, transB: false, m: rows, n: kk, k: co, alpha: 1, a: d, lda: co,
                               b: wp, ldb: kk, beta: 0, c: dcol, ldc: kk)
                        col2im(dcol, batch: count, geometry: g, into: dxp + first * imageSize)
                    }
                }
            } }
            if let bias { addColumnSums(pdy, rows: n * spatial, cols: co, into: &bias.grad) }
        } } }
        // Chunk partials are summed in chunk order in Float64, so the result does not depend on the worker count.
        weight.grad.withUnsafeMutableBufferPointer { gw in partials.withUnsafeBufferPointer { src in
            for o in 0..<co { for c in 0..<ci { for t in 0..<k2 {
                var acc = 0.0
                for chunk in 0..<chunks { acc += Double(src[chunk * co * kk + o * kk + t * ci + c]) }
                gw[(o * ci + c) * k2 + t] += S(acc)
            } } }
        } }
        input = nil
        if ConvProfiler.enabled { ConvProfiler.record(forward: false, since: t0, flops: Double(inputGradient ? 4 : 2) * Double(n * spatial * kk * co)) }
        return inputGradient ? dx : nil
    }
}

/// BatchNorm over the channel (last) axis of NHWC activations; statistics in Float64, summed per fixed row
/// chunk and then across chunks in order, so results do not depend on the number of workers.
public final class BatchNorm2d<S: FloatScalar> {
    public let weight: Parameter<S>, bias: Parameter<S>
    public let runningMean: Buffer<S>, runningVar: Buffer<S>
    public var numBatchesTracked: Int64 = 0
    public let name: String
    public let channels: Int
    public let momentum: Double, eps: Double
    private var input: TensorOf<S>?
    private var mean: [S] = [], invStd: [S] = [], invStdDouble: [Double] = []
    /// Sees every forward's per-channel Σx, Σx² and row count (training and, when set, eval), so statistics can be re-estimated exactly after merging.
    public var statisticsObserver: ((_ sum: [Double], _ sumOfSquares: [Double], _ rows: Int) -> Void)?
    /// A training forward normalises with the running statistics and leaves them alone, so gradients are those of the
    /// model's inference behaviour (the Fisher information); the backward treats the statistics as constants.
    public var frozen = false
    private var frozenForward = false

    public init(name: String, channels: Int, momentum: Double = 0.1, eps: Double = 1e-5) {
        self.name = name; self.channels = channels; self.momentum = momentum; self.eps = eps
        weight = Parameter("\(name).weight", TensorOf<S>(shape: [channels], repeating: 1), decays: false)
        bias = Parameter("\(name).bias", TensorOf<S>(zeros: [channels]), decays: false)
        runningMean = Buffer("\(name).running_mean", TensorOf<S>(zeros: [channels]))
        runningVar = Buffer("\(name).running_var", TensorOf<S>(shape: [channels], repeating: 1))
    }

    public var parameters: [Parameter<S>] { [weight, bias] }

    /// Per-channel Σa and Σa·b over the rows (b = a when `second` is nil), in Float64.
    static func channelSums(_ a: UnsafePointer<S>, _ second: UnsafePointer<S>?, rows: Int, c: Int,
                            transform: ((S, Int) -> S)? = nil) -> ([Double], [Double]) {
        let chunks = Parallel.chunkCount(rows: rows)
        var partial = [Double](repeating: 0, count: chunks * 2 * c)
        partial.withUnsafeMutableBufferPointer { pp in
            let base = pp.baseAddress!
            Parallel.forEachChunk(rows: rows) { chunk, lo, hi in
                let s1 = base + chunk * 2 * c, s2 = s1 + c
                for r in lo..<hi {
                    let o = r * c
                    if let b = second {
                        for j in 0..<c { let v = Double(a[o + j]); s1[j] += v; s2[j] += v * Double(b[o + j]) }
                    } else {
                        for j in 0..<c { let v = Double(a[o + j]); s1[j] += v; s2[j] += v * v }
                    }
                }
            }
        }
        var t1 = [Double](repeating: 0, count: c), t2 = [Double](repeating: 0, count: c)
        for chunk in 0..<chunks { for j in 0..<c { t1[j] += partial[chunk * 2 * c + j]; t2[j] += partial[chunk * 2 * c + c + j] } }
        return (t1, t2)
    }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let c = channels, rows = x.count / c
        precondition(x.shape.last == c, "\(name): expected \(c) channels last, got \(x.shape)")
        var m = [Double](repeating: 0, count: c), inv = [Double](repeating: 0, count: c)
        if training && !frozen {
            let (s1, s2) = x.withUnsafeBufferPointer { Self.channelSums($0.baseAddress!, nil, rows: rows, c: c) }
            statisticsObserver?(s1, s2, rows)
            let n = Double(rows)
            for j in 0..<c {
                m[j] = s1[j] / n
                let variance = max(s2[j] / n - m[j] * m[j], 0)
                inv[j] = 1 / (variance + eps).squareRoot()
                let unbiased = rows > 1 ? variance * n / (n - 1) : variance
                runningMean.value[j] = S((1 - momentum) * Double(runningMean.value[j]) + momentum * m[j])
                runningVar.value[j] = S((1 - momentum) * Double(runningVar.value[j]) + momentum * unbiased)
            }
            numBatchesTracked += 1
        } else {
            // Eval-mode statistics feed REPAIR's targets: what a trained model's BN sees at inference.
            if let observe = statisticsObserver {
                let (s1, s2) = x.withUnsafeBufferPointer { Self.channelSums($0.baseAddress!, nil, rows: rows, c: c) }
                observe(s1, s2, rows)
            }
            for j in 0..<c { m[j] = Double(runningMean.value[j]); inv[j] = 1 / (Double(runningVar.value[j]) + eps).squareRoot() }
        }
        let scale = (0..<c).map { S(inv[$0] * Double(weight.value[$0])) }
        let shift = (0..<c).map { S(Double(bias.value[$0]) - m[$0] * inv[$0] * Double(weight.value[$0])) }
        let y = TensorOf<S>(shape: x.shape) { py in x.withUnsafeBufferPointer { px in scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { sh in
            let xp = px.baseAddress!, yp = py.baseAddress!, scp = sc.baseAddress!, shp = sh.baseAddress!
            Parallel.forEachChunk(rows: rows) { _, lo, hi in
                for r in lo..<hi { let o = r * c; for j in 0..<c { yp[o + j] = xp[o + j] * scp[j] + shp[j] } }
            }
        } } } }
        if training { input = x; mean = m.map { S($0) }; invStd = inv.map { S($0) }; invStdDouble = inv; frozenForward = frozen }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let x = input else { preconditionFailure("\(name): backward without a training forward") }
        let c = channels, rows = dy.count / c
        // Σ dy·x̂ = inv·(Σ dy·x − mean·Σ dy), so one pass over dy and x gives both sums.
        let (sumDy, sumDyX) = dy.withUnsafeBufferPointer { pd in x.withUnsafeBufferPointer { px in
            Self.channelSums(pd.baseAddress!, px.baseAddress!, rows: rows, c: c)
        } }
        var sumDyXhat = [Double](repeating: 0, count: c)
        for j in 0..<c {
            sumDyXhat[j] = invStdDouble[j] * (sumDyX[j] - Double(mean[j]) * sumDy[j])
            weight.grad[j] += S(sumDyXhat[j]); bias.grad[j] += S(sumDy[j])
        }
        let n = Double(rows)
        // dx = γ·inv·(dy − mean(dy) − x̂·mean(dy·x̂)), with x̂ = (x − μ)·inv recomputed on the fly.
        let a = (0..<c).map { S(Double(weight.value[$0]) * invStdDouble[$0]) }
        // Frozen statistics are constants: dx = γ·inv·dy.
        let k = (0..<c).map { frozenForward ? 0 : S(sumDyXhat[$0] / n * invStdDouble[$0]) }
        let b0 = (0..<c).map { frozenForward ? 0 : S(sumDy[$0] / n) - mean[$0] * k[$0] }
        var dx = TensorOf<S>(zeros: dy.shape)
        dy.withUnsafeBufferPointer { pd in x.withUnsafeBufferPointer { px in dx.withUnsafeMutableBufferPointer { pdx in
            a.withUnsafeBufferPointer { pa in k.withUnsafeBufferPointer { pk in b0.withUnsafeBufferPointer { pb in
                let dp = pd.baseAddress!, xp = px.baseAddress!, op = pdx.baseAddress!
                let ap = pa.baseAddress!, kp = pk.baseAddress!, bp = pb.baseAddress!
                Parallel.forEachChunk(rows: rows) { _, lo, hi in
                    for r in lo..<hi { let o = r * c; for j in 0..<c { op[o + j] = ap[j] * (dp[o + j] - xp[o + j] * kp[j] - bp[j]) } }
                }
            } } }
        } } }
        input = nil
        return dx
    }
}

/// max(0, x), remembering the output for the backward mask.
public final class ReLU<S: FloatScalar> {
    private var output: TensorOf<S>?
    public init() {}
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let y = TensorOf<S>(shape: x.shape) { py in x.withUnsafeBufferPointer { px in
            let xp = px.baseAddress!, yp = py.baseAddress!
            Parallel.forEachChunk(rows: (x.count + 63) / 64) { _, lo, hi in
                for i in (lo * 64)..<min(x.count, hi * 64) { yp[i] = max(xp[i], 0) }
            }
        } }
        if training { output = y }
        return y
    }
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let y = output else { preconditionFailure("ReLU: backward without a training forward") }
        let dx = TensorOf<S>(shape: dy.shape) { px in dy.withUnsafeBufferPointer { pd in y.withUnsafeBufferPointer { py in
            let dp = pd.baseAddress!, yp = py.baseAddress!, xp = px.baseAddress!
            Parallel.forEachChunk(rows: (dy.count + 63) / 64) { _, lo, hi in
                let start = lo * 64, end = min(dy.count, hi * 64)
                if S.self == Float.self {
                    passWherePositive(UnsafeRawPointer(yp + start).assumingMemoryBound(to: Float.self),
                                      UnsafeRawPointer(dp + start).assumingMemoryBound(to: Float.self),
                                      UnsafeMutableRawPointer(xp + start).assumingMemoryBound(to: Float.self), count: end - start)
                } else {
                    for i in start..<end { xp[i] = yp[i] > 0 ? dp[i] : 0 }
                }
            }
        } } }
        output = nil
        return dx
    }
}

/// out = y > 0 ? d : 0, eight lanes at a time as a select: the scalar ternary compiles to a branch per element,
/// which mispredicts on the signs.
private func passWherePositive(_ y: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 8 <= count {
        let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
        var r = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<Float>.self)
        r.replace(with: 0, where: .!(yv .> 0))
        UnsafeMutableRawPointer(out + i).storeBytes(of: r, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { out[i] = y[i] > 0 ? d[i] : 0; i += 1 }
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
