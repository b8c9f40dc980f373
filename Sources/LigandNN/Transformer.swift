import LigandNumerics

// The Vision Transformer's layers (Dosovitskiy et al., ICLR 2021), laid out and named as timm's `VisionTransformer`.
// Token activations are [N, T, d] (T = 1 + patches); every linear layer treats the N·T tokens as rows.

/// Layer normalisation over the last axis (Ba et al. 2016; PyTorch's nn.LayerNorm): y = (x − μ)/√(σ² + ε)·γ + β,
/// μ and σ² per row in Float64. ε is a parameter: timm's ViT uses 1e-6.
public final class LayerNorm<S: FloatScalar> {
    public let name: String
    public let features: Int
    public let eps: Double
    public let weight: Parameter<S>, bias: Parameter<S>
    private var xhat: TensorOf<S>?
    private var invStd: [Double] = []

    public init(name: String, features: Int, eps: Double = 1e-6) {
        self.name = name; self.features = features; self.eps = eps
        weight = Parameter("\(name).weight", TensorOf<S>(shape: [features], repeating: 1), decays: false)
        bias = Parameter("\(name).bias", TensorOf<S>(zeros: [features]), decays: false)
    }

    public var parameters: [Parameter<S>] { [weight, bias] }

    /// x [..., d] → y [..., d].
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let d = features, rows = x.count / d
        precondition(rows * d == x.count, "\(name): input \(x.shape) is not a multiple of \(d) features")
        var normalised = TensorOf<S>(zeros: training ? x.shape : [0])
        var inv = [Double](repeating: 0, count: training ? rows : 0)
        let y = TensorOf<S>(shape: x.shape) { py in x.withUnsafeBufferPointer { px in normalised.withUnsafeMutableBufferPointer { pn in
            inv.withUnsafeMutableBufferPointer { pi in weight.value.withUnsafeBufferPointer { pg in bias.value.withUnsafeBufferPointer { pb in
                // An empty array's buffer may still have an address: evaluation keeps nothing.
                let np = training ? pn.baseAddress : nil, ip = training ? pi.baseAddress : nil
                let xp = px.baseAddress!, yp = py.baseAddress!, gp = pg.baseAddress!, bp = pb.baseAddress!
                Parallel.forEachChunk(rows: rows) { _, lo, hi in
                    RowQuad<S>.groups(lo, hi) { r, group in
                        let x4 = RowQuad(xp, first: r, count: group, stride: d)
                        var sum = SIMD4<Double>(repeating: 0)
                        for j in 0..<d { sum += x4.double(j) }
                        let mean = sum / Double(d)
                        var squares = SIMD4<Double>(repeating: 0)
                        for j in 0..<d { let c = x4.double(j) - mean; squares += c * c }
                        let scale = 1 / (squares / Double(d) + eps).squareRoot()
                        for i in 0..<group {
                            let row = xp + (r + i) * d, out = yp + (r + i) * d, mi = mean[i], s = scale[i]
                            for j in 0..<d {
                                let h = S((Double(row[j]) - mi) * s)
                                out[j] = h * gp[j] + bp[j]
                            }
                            if let np { for j in 0..<d { np[(r + i) * d + j] = S((Double(row[j]) - mi) * s) } }
                            if let ip { ip[r + i] = s }
                        }
                    }
                }
            } } }
        } } }
        if training { xhat = normalised; invStd = inv }
        return y
    }

    /// dy [..., d] → dx [..., d]: with g = dy·γ, dx = s·(g − mean(g) − x̂·mean(g·x̂)); dγ += Σ dy·x̂, dβ += Σ dy
    /// (Float64 per fixed row chunk, then the chunks in order).
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let xh = xhat else { preconditionFailure("\(name): backward without a training forward") }
        let d = features, rows = dy.count / d, chunks = Parallel.chunkCount(rows: rows)
        var partial = [Double](repeating: 0, count: chunks * 2 * d)
        let dx = TensorOf<S>(shape: dy.shape) { px in dy.withUnsafeBufferPointer { pd in xh.withUnsafeBufferPointer { ph in
            partial.withUnsafeMutableBufferPointer { pp in weight.value.withUnsafeBufferPointer { pg in invStd.withUnsafeBufferPointer { pi in
                let dp = pd.baseAddress!, hp = ph.baseAddress!, xp = px.baseAddress!, pa = pp.baseAddress!, gp = pg.baseAddress!, ip = pi.baseAddress!
                Parallel.forEachChunk(rows: rows) { chunk, lo, hi in
                    let sg = pa + chunk * 2 * d, sb = sg + d
                    // The row sums a, b.
                    RowQuad<S>.groups(lo, hi) { r, group in
                        let dy4 = RowQuad(dp, first: r, count: group, stride: d), h4 = RowQuad(hp, first: r, count: group, stride: d)
                        var a = SIMD4<Double>(repeating: 0), b = SIMD4<Double>(repeating: 0)
                        for j in 0..<d {
                            let g = dy4.double(j) * Double(gp[j])
                            a += g
                            b += g * h4.double(j)
                        }
                        a /= Double(d); b /= Double(d)
                        for i in 0..<group {
                            let o = (r + i) * d, s = ip[r + i], ai = a[i], bi = b[i]
                            for j in 0..<d { xp[o + j] = S(s * (Double(dp[o + j]) * Double(gp[j]) - ai - Double(hp[o + j]) * bi)) }
                        }
                    }
                    // dγ, dβ per feature over the chunk's rows in order (independent across j, so vectorised).
                    for r in lo..<hi {
                        let o = r * d
                        for j in 0..<d { sg[j] += Double(dp[o + j]) * Double(hp[o + j]); sb[j] += Double(dp[o + j]) }
                    }
                }
            } } }
        } } }
        weight.grad.withUnsafeMutableBufferPointer { gw in bias.grad.withUnsafeMutableBufferPointer { gb in
            for j in 0..<d {
                var sg = 0.0, sb = 0.0
                for c in 0..<chunks { sg += partial[c * 2 * d + j]; sb += partial[c * 2 * d + d + j] }
                gw[j] += S(sg); gb[j] += S(sb)
            }
        } }
        xhat = nil
        return dx
    }
}

/// Exact GELU (Hendrycks & Gimpel 2016; PyTorch's default, not the tanh approximation): y = x·Φ(x) = x/2·(1 + erf(x/√2)),
/// dy/dx = Φ(x) + x·φ(x). `quick`: OpenAI CLIP's QuickGELU, y = x·σ(1.702x), dy/dx = σ + 1.702x·σ(1 − σ).
public final class GELU<S: FloatScalar> {
    public let quick: Bool
    /// Training keeps x and the transcendental term, 1 + erf(x/√2) (QuickGELU: 1 + e^(−1.702x)), which the
    /// backward pass reuses instead of evaluating it again.
    private var saved: (input: TensorOf<S>, term: TensorOf<S>)?
    public init(quick: Bool = false) { self.quick = quick }

    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let r = S(0.5.squareRoot()), quick = quick, n = x.count
        var term = TensorOf<S>(zeros: training ? x.shape : [0])
        let y = TensorOf<S>(shape: x.shape) { py in x.withUnsafeBufferPointer { px in term.withUnsafeMutableBufferPointer { pt in
            // An empty array's buffer may still have an address: evaluation keeps nothing.
            let xp = px.baseAddress!, yp = py.baseAddress!, tp = training ? pt.baseAddress : nil
            Parallel.forEachChunk(rows: (n + 63) / 64) { _, lo, hi in
                for i in (lo * 64)..<min(n, hi * 64) {
                    let v = xp[i], e = quick ? 1 + S.exp(-S(1.702) * v) : 1 + S.erf(v * r)
                    yp[i] = quick ? v / e : S(0.5) * v * e
                    tp?[i] = e
                }
            }
        } } }
        if training { saved = (x, term) }
        return y
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let (x, term) = saved else { preconditionFailure("GELU: backward without a training forward") }
        let c = S(1 / (2 * Double.pi).squareRoot()), quick = quick
        let dx = TensorOf<S>(shape: dy.shape) { po in dy.withUnsafeBufferPointer { pd in x.withUnsafeBufferPointer { px in
            term.withUnsafeBufferPointer { pt in
                let dp = pd.baseAddress!, xp = px.baseAddress!, tp = pt.baseAddress!, op = po.baseAddress!, n = dy.count
                Parallel.forEachChunk(rows: (n + 63) / 64) { _, lo, hi in
                    for i in (lo * 64)..<min(n, hi * 64) {
                        let v = xp[i]
                        if quick {
                            let s = 1 / tp[i]
                            op[i] = dp[i] * (s + S(1.702) * v * s * (1 - s))
                        } else {
                            op[i] = dp[i] * (S(0.5) * tp[i] + v * c * S.exp(-S(0.5) * v * v))
                        }
                    }
                }
            }
        } } }
        saved = nil
        return dx
    }
}

/// Rows scaled to unit length, as CLIP's classification heads read image features (PyTorch's F.normalize, ε 1e-12):
/// y = x / max(‖x‖, ε) with ‖x‖ in Float64; dx = (dy − y·(y·dy)) / ‖x‖ (dx = dy/ε below ε).
public final class UnitNorm<S: FloatScalar> {
    public static var eps: Double { 1e-12 }
    private var saved: (y: TensorOf<S>, norms: [Double])?
    public init() {}

    /// x [N, e] → y [N, e].
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let e = x.shape.last!, rows = x.count / max(e, 1)
        var y = x
        var norms = [Double](repeating: 0, count: rows)
        y.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                var s = 0.0
                for j in 0..<e { let v = Double(p[r * e + j]); s += v * v }
                let n = max(s.squareRoot(), Self.eps)
                norms[r] = n
                for j in 0..<e { p[r * e + j] = S(Double(p[r * e + j]) / n) }
            }
        }
        if training { saved = (y, norms) }
        return y
    }

    /// dy [N, e] → dx [N, e].
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let (y, norms) = saved else { preconditionFailure("UnitNorm: backward without a training forward") }
        let e = dy.shape.last!, rows = dy.count / max(e, 1)
        var dx = dy
        dx.withUnsafeMutableBufferPointer { p in y.withUnsafeBufferPointer { py in
            for r in 0..<rows {
                let below = norms[r] <= Self.eps
                var dot = 0.0
                if !below { for j in 0..<e { dot += Double(py[r * e + j]) * Double(p[r * e + j]) } }
                for j in 0..<e { p[r * e + j] = S((Double(p[r * e + j]) - Double(py[r * e + j]) * dot) / norms[r]) }
            }
        } }
        saved = nil
        return dx
    }
}

/// Multi-head self-attention as timm's `Attention`: [q k v] = x·W_qkvᵀ + b split as [T, 3, heads, d/heads]; per head
/// A = softmax(Q·Kᵀ/√d_h), O = A·V; the heads concatenated ([T, d], head-major columns) and projected.
/// Each (sample, head) pair is two GEMMs over strided views of the qkv rows; the pairs run in parallel.
public final class MultiHeadAttention<S: FloatScalar> {
    public let name: String
    public let width: Int, heads: Int
    public let qkv: Linear<S>, proj: Linear<S>
    private var saved: (qkv: TensorOf<S>, probabilities: [S], samples: Int, tokens: Int)?

    public init(name: String, width: Int, heads: Int, std: Double = 0.02, rng: inout SeededRNG) {
        precondition(heads > 0 && width % heads == 0, "\(name): width \(width) is not divisible by \(heads) heads")
        self.name = name; self.width = width; self.heads = heads
        qkv = Linear(name: "\(name).qkv", inFeatures: width, outFeatures: 3 * width, std: std, rng: &rng)
        proj = Linear(name: "\(name).proj", inFeatures: width, outFeatures: width, std: std, rng: &rng)
    }

    public var parameters: [Parameter<S>] { qkv.parameters + proj.parameters }

    /// x [N, T, d] → [N, T, d]; `heads` sees the concatenated head outputs [N·T, d] (the projection's input).
    public func forward(_ x: TensorOf<S>, training: Bool, heads seen: ((TensorOf<S>) -> Void)? = nil) -> TensorOf<S> {
        precondition(x.rank == 3 && x.shape[2] == width, "\(name): expected [N, T, \(width)] tokens, got \(x.shape)")
        let n = x.shape[0], t = x.shape[1], d = width, h = heads, dh = d / h
        let q = qkv.forward(x.reshaped([n * t, d]), training: training)   // [N·T, 3d]
        // Training keeps every attention map for the backward pass; evaluation needs one map per pair at a time.
        var p = [S](repeating: 0, count: training ? n * h * t * t : 0)
        let scale = S(1 / Double(dh).squareRoot())
        // Every (sample, head) pair writes its own [T, d_h] block of o, so o needs no zero-fill.
        let o = TensorOf<S>(shape: [n * t, d]) { po in q.withUnsafeBufferPointer { pq in p.withUnsafeMutableBufferPointer { pp in
            let qp = pq.baseAddress!, op = po.baseAddress!, ap = training ? pp.baseAddress : nil
            // Blocks of 16 pairs over the workers; in evaluation each block reuses one scratch map.
            let pairs = n * h, block = 16
            Parallel.forEach((pairs + block - 1) / block) { chunk in
                let lo = chunk * block, hi = min(pairs, lo + block)
                let scratch = ap == nil ? UnsafeMutablePointer<S>.allocate(capacity: t * t) : nil
                defer { scratch?.deallocate() }
                for pair in lo..<hi {
                    let b = pair / h, head = pair % h
                    let base = qp + b * t * 3 * d + head * dh, a = ap.map { $0 + pair * t * t } ?? scratch!
                    // S = Q·Kᵀ/√d_h [T, T]
                    S.gemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: scale, a: base, lda: 3 * d,
                           b: base + d, ldb: 3 * d, beta: 0, c: a, ldc: t)
                    softmaxRows(a, rows: t, cols: t)
                    // O = A·V [T, d_h] into the head's columns
                    S.gemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: a, lda: t,
                           b: base + 2 * d, ldb: 3 * d, beta: 0, c: op + b * t * d + head * dh, ldc: d)
                }
            }
        } } }
        seen?(o)
        let y = proj.forward(o, training: training)
        if training { saved = (q, p, n, t) }
        return y.reshaped([n, t, d])
    }

    /// dy [N, T, d] → dx [N, T, d]. Per head: dA = dO·Vᵀ, dV = Aᵀ·dO, dS = A ⊙ (dA − rowsum(dA ⊙ A))/√d_h,
    /// dQ = dS·K, dK = dSᵀ·Q.
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        guard let (q, p, n, t) = saved else { preconditionFailure("\(name): backward without a training forward") }
        let d = width, h = heads, dh = d / h
        let dO = proj.backward(dy.reshaped([n * t, d]))
        let scale = S(1 / Double(dh).squareRoot())
        // Every pair's four β = 0 GEMMs write its head's q, k and v columns: dq needs no zero-fill.
        let dq = TensorOf<S>(shape: [n * t, 3 * d]) { pdq in dO.withUnsafeBufferPointer { pdo in q.withUnsafeBufferPointer { pq in p.withUnsafeBufferPointer { pp in
            let dop = pdo.baseAddress!, qp = pq.baseAddress!, ap = pp.baseAddress!, dqp = pdq.baseAddress!
            Parallel.forEach(n * h) { pair in
                let b = pair / h, head = pair % h
                let base = qp + b * t * 3 * d + head * dh, dbase = dqp + b * t * 3 * d + head * dh
                let a = ap + pair * t * t, g = dop + b * t * d + head * dh
                let da = UnsafeMutablePointer<S>.allocate(capacity: t * t)
                defer { da.deallocate() }
                S.gemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: g, lda: d, b: base + 2 * d, ldb: 3 * d, beta: 0, c: da, ldc: t)
                S.gemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: a, lda: t, b: g, ldb: d, beta: 0, c: dbase + 2 * d, ldc: 3 * d)
                // rowsum(dA ⊙ A)
                RowQuad<S>.groups(0, t) { r, group in
                    let da4 = RowQuad(UnsafePointer(da), first: r, count: group, stride: t), a4 = RowQuad(a, first: r, count: group, stride: t)
                    var s = SIMD4<Double>(repeating: 0)
                    for c in 0..<t { s += da4.double(c) * a4.double(c) }
                    for i in 0..<group {
                        let o = (r + i) * t, sS = S(s[i])
                        for c in 0..<t { da[o + c] = a[o + c] * (da[o + c] - sS) * scale }
                    }
                }
                S.gemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: da, lda: t, b: base + d, ldb: 3 * d, beta: 0, c: dbase, ldc: 3 * d)
                S.gemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: da, lda: t, b: base, ldb: 3 * d, beta: 0, c: dbase + d, ldc: 3 * d)
            }
        } } } }
        saved = nil
        return qkv.backward(dq).reshaped([n, t, d])
    }
}

/// Four rows of a row-major matrix read as SIMD lanes, one row per lane, so four dependent Float64 sums advance
/// together while each lane still sums its row in the scalar order. A group of fewer than four rows repeats its last
/// row in the spare lanes, which are read and discarded.
struct RowQuad<S: FloatScalar> {
    let p0: UnsafePointer<S>, p1: UnsafePointer<S>, p2: UnsafePointer<S>, p3: UnsafePointer<S>

    /// Rows first ..< first + count (count 1…4) of `base`, `stride` elements apart.
    @inline(__always) init(_ base: UnsafePointer<S>, first: Int, count: Int, stride: Int) {
        p0 = base + first * stride
        p1 = base + (first + min(1, count - 1)) * stride
        p2 = base + (first + min(2, count - 1)) * stride
        p3 = base + (first + min(3, count - 1)) * stride
    }

    @inline(__always) subscript(_ j: Int) -> SIMD4<S> { SIMD4(p0[j], p1[j], p2[j], p3[j]) }
    @inline(__always) func double(_ j: Int) -> SIMD4<Double> { SIMD4(Double(p0[j]), Double(p1[j]), Double(p2[j]), Double(p3[j])) }

    /// body(first, count) over rows [lo, hi) in groups of four.
    @inline(__always) static func groups(_ lo: Int, _ hi: Int, _ body: (Int, Int) -> Void) {
        var r = lo
        while r < hi { body(r, min(4, hi - r)); r += 4 }
    }
}

/// Row-wise softmax in place, the max subtracted first and the normaliser summed in Float64, column by column, four
/// rows at a time (`RowQuad`); the exponentials run in a pass of their own, with no running sum live across the calls.
@inline(__always) func softmaxRows<S: FloatScalar>(_ a: UnsafeMutablePointer<S>, rows: Int, cols: Int) {
    RowQuad<S>.groups(0, rows) { r, group in
        let a4 = RowQuad(UnsafePointer(a), first: r, count: group, stride: cols)
        var m = a4[0]
        for c in 1..<cols { let v = a4[c]; m.replace(with: v, where: v .> m) }
        for i in 0..<group {
            let row = a + (r + i) * cols, mi = m[i]
            for c in 0..<cols { row[c] = S.exp(row[c] - mi) }
        }
        var z = SIMD4<Double>(repeating: 0)
        for c in 0..<cols { z += a4.double(c) }
        for i in 0..<group {
            let row = a + (r + i) * cols, inv = S(1 / z[i])
            for c in 0..<cols { row[c] *= inv }
        }
    }
}

/// timm's pre-norm `Block`: h = x + attn(norm1(x)); y = h + fc2(gelu(fc1(norm2(h)))).
public final class TransformerBlock<S: FloatScalar> {
    public let name: String
    public let norm1: LayerNorm<S>, attn: MultiHeadAttention<S>, norm2: LayerNorm<S>
    public let fc1: Linear<S>, act: GELU<S>, fc2: Linear<S>
    private var shape: [Int] = []

    /// `quickGELU`: OpenAI CLIP's activation; `eps`: the two LayerNorms' (timm 1e-6, open_clip 1e-5).
    public init(name: String, width: Int, heads: Int, hidden: Int, eps: Double = 1e-6, quickGELU: Bool = false, std: Double = 0.02, rng: inout SeededRNG) {
        self.name = name
        act = GELU(quick: quickGELU)
        norm1 = LayerNorm(name: "\(name).norm1", features: width, eps: eps)
        attn = MultiHeadAttention(name: "\(name).attn", width: width, heads: heads, std: std, rng: &rng)
        norm2 = LayerNorm(name: "\(name).norm2", features: width, eps: eps)
        fc1 = Linear(name: "\(name).mlp.fc1", inFeatures: width, outFeatures: hidden, std: std, rng: &rng)
        fc2 = Linear(name: "\(name).mlp.fc2", inFeatures: hidden, outFeatures: width, std: std, rng: &rng)
    }

    /// In timm's state_dict order.
    public var parameters: [Parameter<S>] { norm1.parameters + attn.parameters + norm2.parameters + fc1.parameters + fc2.parameters }
    public var layerNorms: [LayerNorm<S>] { [norm1, norm2] }

    /// This block's attention as merge points (see `AttentionPoints`).
    public var attentionPoints: AttentionPoints {
        AttentionPoints(qk: "\(name).attn.qk", v: "\(name).attn.v", heads: attn.heads, width: attn.width, input: inputNames.qkv,
                        qkv: "\(name).attn.qkv")
    }

    /// The names under which `forward`'s `inputs` reports each linear layer's input, in call order.
    public var inputNames: (qkv: String, proj: String, fc1: String, fc2: String) {
        ("\(name).norm1", "\(name).attn.heads", "\(name).norm2", "\(name).mlp.act")
    }

    /// x [N, T, d] → [N, T, d]; `inputs` sees the input rows [N·T, ·] of qkv, proj, fc1 and fc2, in that order
    /// (the last, the MLP's hidden activation, is a merge point).
    public func forward(_ x: TensorOf<S>, training: Bool, inputs: ((String, TensorOf<S>) -> Void)? = nil) -> TensorOf<S> {
        let n = x.shape[0], t = x.shape[1], d = x.shape[2]
        shape = x.shape
        let names = inputNames
        let a = norm1.forward(x, training: training)
        inputs?(names.qkv, a.reshaped([n * t, d]))
        var h = attn.forward(a, training: training, heads: inputs.map { f in { f(names.proj, $0) } })
        add(&h, x)
        let m = norm2.forward(h, training: training).reshaped([n * t, d])
        inputs?(names.fc1, m)
        let g = act.forward(fc1.forward(m, training: training), training: training)
        inputs?(names.fc2, g)
        var y = fc2.forward(g, training: training).reshaped([n, t, d])
        add(&y, h)
        return y
    }

    /// dy [N, T, d] → dx [N, T, d].
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        let (n, t, d) = (shape[0], shape[1], shape[2])
        var dh = norm2.backward(fc1.backward(act.backward(fc2.backward(dy.reshaped([n * t, d])))).reshaped(shape))
        add(&dh, dy)
        var dx = norm1.backward(attn.backward(dh))
        add(&dx, dh)
        return dx
    }
}

/// a += b elementwise (same element count).
@inline(__always) func add<S: FloatScalar>(_ a: inout TensorOf<S>, _ b: TensorOf<S>) {
    precondition(a.count == b.count, "add: \(a.shape) and \(b.shape) differ")
    a.withUnsafeMutableBufferPointer { pa in b.withUnsafeBufferPointer { pb in
        let ap = pa.baseAddress!, bp = pb.baseAddress!, n = pa.count
        Parallel.forEachChunk(rows: (n + 63) / 64) { _, lo, hi in for i in (lo * 64)..<min(n, hi * 64) { ap[i] += bp[i] } }
    } }
}

/// timm's `PatchEmbed` with the class token and position embedding: patches = conv_{p×p, stride p}(x) [N, gh, gw, d]
/// read row-major as [N, P, d]; tokens = [cls; patches] + pos_embed → [N, 1 + P, d].
public final class TokenEmbedding<S: FloatScalar> {
    public let proj: Conv2d<S>
    /// [1, 1, d] and [1, 1 + P, d], as in timm.
    public let classToken: Parameter<S>, positions: Parameter<S>
    public let patches: Int, width: Int
    private var gridShape: [Int] = []

    /// `bias`: false for CLIP's bias-free `conv1`.
    public init(channels: Int, patch: Int, grid: (h: Int, w: Int), width: Int, bias: Bool = true, std: Double = 0.02, rng: inout SeededRNG) {
        self.width = width; patches = grid.h * grid.w
        // timm draws cls_token with std 1e-6 and pos_embed with std 0.02; its patch projection keeps PyTorch's default.
        classToken = Parameter("cls_token", normalWeights([1, 1, width], std: 1e-6, rng: &rng), decays: false)
        positions = Parameter("pos_embed", normalWeights([1, 1 + patches, width], std: std, rng: &rng), decays: false)
        proj = Conv2d(name: "patch_embed.proj", inChannels: channels, outChannels: width, kernel: patch, stride: patch, bias: bias, std: std, rng: &rng)
    }

    /// In timm's state_dict order.
    public var parameters: [Parameter<S>] { [classToken, positions] + proj.parameters }

    /// x [N, H, W, C] → [N, 1 + P, d].
    public func forward(_ x: TensorOf<S>, training: Bool) -> TensorOf<S> {
        let grid = proj.forward(x, training: training)
        gridShape = grid.shape
        let n = x.shape[0], p = patches, d = width, t = p + 1
        precondition(grid.count == n * p * d, "patch_embed: \(grid.shape) is not \(p) patches of \(d)")
        var y = TensorOf<S>(zeros: [n, t, d])
        grid.withUnsafeBufferPointer { pg in y.withUnsafeMutableBufferPointer { py in
            classToken.value.withUnsafeBufferPointer { pc in positions.value.withUnsafeBufferPointer { pe in
                let gp = pg.baseAddress!, yp = py.baseAddress!, cp = pc.baseAddress!, ep = pe.baseAddress!
                for b in 0..<n {
                    let out = yp + b * t * d
                    for j in 0..<d { out[j] = cp[j] + ep[j] }
                    for i in 0..<(p * d) { out[d + i] = gp[b * p * d + i] + ep[d + i] }
                }
            } }
        } }
        return y
    }

    /// dy [N, 1 + P, d] → dx [N, H, W, C]; d cls += Σ_n dy[n, 0], d pos += Σ_n dy[n] (Float64, samples in order).
    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> { backward(dy, inputGradient: true)! }

    /// As `backward(_:)`; without `inputGradient` the patch projection skips dx and nil is returned.
    public func backward(_ dy: TensorOf<S>, inputGradient: Bool) -> TensorOf<S>? {
        let n = dy.shape[0], p = patches, d = width, t = p + 1
        var dgrid = TensorOf<S>(zeros: gridShape)
        var sum = [Double](repeating: 0, count: t * d)
        dy.withUnsafeBufferPointer { pd in dgrid.withUnsafeMutableBufferPointer { pg in
            let dp = pd.baseAddress!, gp = pg.baseAddress!
            for b in 0..<n {
                let src = dp + b * t * d
                for i in 0..<(t * d) { sum[i] += Double(src[i]) }
                (gp + b * p * d).update(from: src + d, count: p * d)
            }
        } }
        classToken.grad.withUnsafeMutableBufferPointer { g in for j in 0..<d { g[j] += S(sum[j]) } }
        positions.grad.withUnsafeMutableBufferPointer { g in for i in 0..<(t * d) { g[i] += S(sum[i]) } }
        return proj.backward(dgrid, inputGradient: inputGradient)
    }
}

/// One attention block's units as merge points. Permuting the query and key units of a head alike keeps every score
/// q·k (a sum over the head's units), permuting its value units and the projection's matching inputs keeps its output,
/// and permuting whole heads (their q, k and v together) keeps the block's output: so a map here is a head permutation
/// σ with a permutation within each head, one for Q and K (point `qk`) and one for V (point `v`), σ shared by both.
public struct AttentionPoints: Equatable, Sendable {
    /// Point of the query and key units (rows 0..<d and d..<2d of qkv), and of the value units (rows 2d..<3d; the
    /// projection's input columns).
    public let qk: String, v: String
    public let heads: Int, width: Int
    /// The tap of qkv's input (norm1's output), from which the query and key rows are computed for statistics.
    public let input: String
    /// qkv's state-dict prefix.
    public let qkv: String

    public var headWidth: Int { width / heads }
}
