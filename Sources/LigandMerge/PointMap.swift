import LigandNN
import LigandNumerics

/// The linear map of one merge point from model k's unit space into the reference's: x_ref ≈ M·x_k.
public struct PointMap: Equatable, Sendable {
    public let forward: Matrix
    public let inverse: Matrix
    /// Set for a permutation map: forward[i, permutation[i]] = 1 (reference unit i is model unit permutation[i]).
    public let permutation: [Int]?

    public init(forward: Matrix, inverse: Matrix) {
        self.forward = forward; self.inverse = inverse; permutation = nil
    }

    private init(forward: Matrix, inverse: Matrix, permutation: [Int]) {
        self.forward = forward; self.inverse = inverse; self.permutation = permutation
    }

    public var channels: Int { forward.rows }

    /// The permutation matrix P with P[i, perm[i]] = 1; its inverse is Pᵀ.
    public static func permutation(_ perm: [Int]) throws -> PointMap {
        let n = perm.count
        guard Set(perm) == Set(0..<n) else { throw MergeError.invalidInput("\(perm) is not a permutation of 0..<\(n)") }
        var p = Matrix(zeros: n, n)
        for (i, j) in perm.enumerated() { p[i, j] = 1 }
        return PointMap(forward: p, inverse: p.transposed, permutation: perm)
    }

    public static func identity(_ n: Int) -> PointMap {
        PointMap(forward: .identity(n), inverse: .identity(n), permutation: Array(0..<n))
    }

    /// The inverse map (reference space → model space).
    public var inverted: PointMap {
        if let p = permutation {
            var inv = [Int](repeating: 0, count: p.count)
            for (i, j) in p.enumerated() { inv[j] = i }
            return PointMap(forward: inverse, inverse: forward, permutation: inv)
        }
        return PointMap(forward: inverse, inverse: forward)
    }
}

/// Applies per-point maps to a model's tensors: W ← M_out·W·M_in⁻¹ (for a convolution, M⁻¹ acts on the
/// input-channel axis of every kernel tap), biases, LayerNorm γ and β, every BatchNorm vector (scale, shift, running mean
/// and running variance, as the reference does) and each token row of an embedding ← M_out·v. Points without a map keep the identity.
/// Computed in Float64; a permutation map reproduces every value exactly.
/// `frozen` kinds keep their values (BN's identity scale and statistics after `foldBatchNorm`).
/// `denseStream`: a ViT's residual stream may take a dense map, its LayerNorms folded first (`foldLayerNorms`, checked);
/// the normalisation n(M·x) ≠ M·n(x) then makes the mapped model an approximation (CCA's `stream: dense`).
public func applyMaps(_ state: StateDict, maps: [String: PointMap], graph: MergeGraph, model: String = "model",
                      frozen: Set<TensorRole.Kind> = [], denseStream: Bool = false) throws -> StateDict {
    try graph.validate(state, model: model)
    var frozen = frozen
    if denseStream {
        for t in graph.tensors where t.kind == .normWeight || t.kind == .normBias {
            let identity: Float = t.kind == .normWeight ? 1 : 0
            guard state[t.name]!.storage.allSatisfy({ $0 == identity }) else {
                throw MergeError.invalidInput("\(model): a dense map of the residual stream needs its LayerNorms folded first, but '\(t.name)' is not \(identity)")
            }
        }
        frozen.formUnion([.normWeight, .normBias])
    }
    for (p, m) in maps {
        guard let c = graph.channels(of: p) else { throw MergeError.unknownMergePoint(p) }
        for (label, a) in [("forward", m.forward), ("inverse", m.inverse)] where a.rows != c || a.cols != c {
            throw MergeError.mapShape(point: p, expected: c, found: "\(label) \(a.rows)×\(a.cols)")
        }
        if m.forward.firstNonFinite != nil || m.inverse.firstNonFinite != nil {
            throw MergeError.linalg(point: p, message: "its map holds a NaN or infinite value")
        }
        if let why = graph.permutationOnly[p], m.permutation == nil, !(denseStream && p == Network<Float>.vitStream) {
            throw MergeError.invalidInput("merge point '\(p)' takes permutations only: \(why)")
        }
    }
    // Attention: whole heads move (each reference head reads one model head), and Q, K and V of a head move together.
    for a in graph.attention {
        let heads = [a.qk, a.v].map { maps[$0]?.permutation.map { headPermutation($0, headWidth: a.headWidth) } }
        for (point, h) in zip([a.qk, a.v], heads) where h != nil && h! == nil {
            throw MergeError.invalidInput("merge point '\(point)': the permutation moves units between heads; heads move as wholes (\(a.heads) heads of \(a.headWidth))")
        }
        if let q = heads[0] ?? nil, let v = heads[1] ?? nil, q != v {
            throw MergeError.invalidInput("merge points '\(a.qk)' and '\(a.v)' match the heads differently (\(q) and \(v)); a head's q, k and v move together")
        }
        if (maps[a.qk] == nil) != (maps[a.v] == nil), let h = (heads[0] ?? nil) ?? (heads[1] ?? nil), h != Array(0..<a.heads) {
            throw MergeError.invalidInput("merge points '\(a.qk)' and '\(a.v)': one moves the heads, the other has no map")
        }
    }
    var out = state
    for role in graph.tensors where !frozen.contains(role.kind) {
        let outMap = role.outPoint.flatMap { maps[$0] }
        let inMap = role.inPoint.flatMap { maps[$0] }
        let segmented = role.outSegments?.contains { maps[$0] != nil } ?? false
        if outMap == nil && inMap == nil && !segmented { continue }
        let t = state[role.name]!
        var w = t.storage.map(Double.init)
        let d0 = t.shape[0], inner = t.count / max(d0, 1)
        if let segments = role.outSegments {
            // qkv's rows [q; k; v], each segment mapped by its own point.
            let each = d0 / segments.count, cols = inner
            for (j, point) in segments.enumerated() {
                guard let m = maps[point] else { continue }
                let rows = Array(w[(j * each * cols)..<((j + 1) * each * cols)])
                w.replaceSubrange((j * each * cols)..<((j + 1) * each * cols), with: leftMultiply(m.forward, rows, rows: each, cols: cols))
            }
        }
        if let m = outMap, role.kind == .embedding {
            // Token rows [n, d]: each row v becomes M·v, i.e. rows · Mᵀ.
            let d = t.shape[role.unitAxis]
            w = rightMultiplyInputAxis(w, m.forward.transposed, d0: t.count / d, d1: d, taps: 1)
        } else if let m = outMap { w = leftMultiply(m.forward, w, rows: d0, cols: inner) }
        if let m = inMap {
            let d1 = t.shape[1], taps = inner / d1
            w = rightMultiplyInputAxis(w, m.inverse, d0: d0, d1: d1, taps: taps)
        }
        out[role.name] = Tensor(shape: t.shape, storage: w.map { Float($0) })
    }
    return out
}

/// M·A for A stored row-major [rows, cols].
func leftMultiply(_ m: Matrix, _ a: [Double], rows: Int, cols: Int) -> [Double] {
    var c = [Double](repeating: 0, count: rows * cols)
    m.data.withUnsafeBufferPointer { pm in a.withUnsafeBufferPointer { pa in c.withUnsafeMutableBufferPointer { pc in
        BLAS.dgemm(m: rows, n: cols, k: rows, a: pm.baseAddress!, lda: rows, b: pa.baseAddress!, ldb: cols, c: pc.baseAddress!, ldc: cols)
    } } }
    return c
}

/// w'[o, i, t] = Σ_b w[o, b, t]·R[b, i] for w stored [d0, d1, taps].
func rightMultiplyInputAxis(_ w: [Double], _ r: Matrix, d0: Int, d1: Int, taps: Int) -> [Double] {
    // Tap-major layout [d0, taps, d1] turns the product into one GEMM.
    var u = w
    if taps > 1 { for o in 0..<d0 { for b in 0..<d1 { for t in 0..<taps { u[(o * taps + t) * d1 + b] = w[(o * d1 + b) * taps + t] } } } }
    var v = [Double](repeating: 0, count: w.count)
    u.withUnsafeBufferPointer { pu in r.data.withUnsafeBufferPointer { pr in v.withUnsafeMutableBufferPointer { pv in
        BLAS.dgemm(m: d0 * taps, n: d1, k: d1, a: pu.baseAddress!, lda: d1, b: pr.baseAddress!, ldb: d1, c: pv.baseAddress!, ldc: d1)
    } } }
    if taps == 1 { return v }
    var back = v
    for o in 0..<d0 { for i in 0..<d1 { for t in 0..<taps { back[(o * d1 + i) * taps + t] = v[(o * taps + t) * d1 + i] } } }
    return back
}

/// The head permutation σ (σ[a] = the model head at reference head a) of a unit permutation that moves whole heads,
/// nil when some head's units come from several heads.
public func headPermutation(_ perm: [Int], headWidth: Int) -> [Int]? {
    guard headWidth > 0, perm.count % headWidth == 0 else { return nil }
    var sigma: [Int] = []
    for a in 0..<(perm.count / headWidth) {
        let block = perm[(a * headWidth)..<((a + 1) * headWidth)].map { $0 / headWidth }
        guard let first = block.first, block.allSatisfy({ $0 == first }) else { return nil }
        sigma.append(first)
    }
    return sigma
}
