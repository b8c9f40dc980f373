import LigandNN
import LigandNumerics

/// CCA Merge's map for one merge point, with the eigendecompositions of Σ_11 and Σ_kk computed once so that
/// every γ of a grid costs one SVD.
///
/// The ridge is RELATIVE: S_x = Σ_11 + γ·(tr Σ_11 / C)·I and S_y = Σ_kk + γ·(tr Σ_kk / C)·I, i.e. γ is a
/// fraction of the mean unit variance, so one grid serves every layer whatever its activation scale.
/// A dead unit (zero variance) is handled by the ridge; a point where every unit is constant is an error.
public struct CCASolver: Sendable {
    public let point: String
    let vx: Matrix, lx: [Double], vy: Matrix, ly: [Double]
    let cross: Matrix
    /// tr(Σ)/C of the reference and of model k: the units γ is measured in.
    public let meanVarianceX: Double, meanVarianceY: Double

    public init(_ s: PairStatistics) throws {
        try s.validate()
        guard s.c1 == s.ck else {
            throw MergeError.degenerateStatistics(point: s.point, reason: "CCA needs the same width in both models, got \(s.c1) and \(s.ck)")
        }
        point = s.point
        let sxx = s.covarianceXX, syy = s.covarianceYY
        cross = s.covarianceXY
        let c = Double(s.c1)
        meanVarianceX = (0..<s.c1).reduce(0) { $0 + sxx[$1, $1] } / c
        meanVarianceY = (0..<s.ck).reduce(0) { $0 + syy[$1, $1] } / c
        for (who, v) in [("the reference", meanVarianceX), ("the model", meanVarianceY)] where !(v > 0) {
            throw MergeError.degenerateStatistics(point: s.point, reason: "every unit of \(who) is constant on the calibration data (a dead layer): no map can be estimated")
        }
        do {
            (lx, vx) = try Linalg.symmetricEigen(sxx)
            (ly, vy) = try Linalg.symmetricEigen(syy)
        } catch { throw MergeError.linalg(point: s.point, message: "\(error)") }
    }

    /// V·diag(f(λ + g))·Vᵀ, with round-off negative eigenvalues of the covariance clamped to 0.
    static func spectral(_ v: Matrix, _ l: [Double], shift g: Double, _ f: (Double) -> Double) -> Matrix {
        v.scalingColumns(by: l.map { f(max($0, 0) + g) }).multiplied(by: v, transOther: true).symmetrized
    }

    /// M_k = S_x^{1/2} U Vᵀ S_y^{-1/2} and M_k⁻¹ = S_y^{1/2} V Uᵀ S_x^{-1/2}, from the SVD of S_x^{-1/2} Σ_1k S_y^{-1/2}.
    public func map(gamma: Double) throws -> PointMap {
        try checkGamma(gamma)
        let gx = gamma * meanVarianceX, gy = gamma * meanVarianceY
        let sxHalf = Self.spectral(vx, lx, shift: gx) { $0.squareRoot() }
        let sxInvHalf = Self.spectral(vx, lx, shift: gx) { 1 / $0.squareRoot() }
        let syHalf = Self.spectral(vy, ly, shift: gy) { $0.squareRoot() }
        let syInvHalf = Self.spectral(vy, ly, shift: gy) { 1 / $0.squareRoot() }
        let whitened = sxInvHalf * cross * syInvHalf
        let rotation: Matrix
        do {
            let (u, _, vt) = try Linalg.svd(whitened)
            rotation = u * vt
        } catch { throw MergeError.linalg(point: point, message: "\(error)") }
        let forward = sxHalf * rotation * syInvHalf
        let inverse = syHalf * rotation.transposed * sxInvHalf
        if forward.firstNonFinite != nil || inverse.firstNonFinite != nil {
            throw MergeError.linalg(point: point, message: "the CCA map at γ = \(gamma) is not finite; use a larger γ")
        }
        return PointMap(forward: forward, inverse: inverse)
    }
}

func checkGamma(_ gamma: Double) throws {
    guard gamma.isFinite && gamma > 0 else {
        throw MergeError.hyperparameter(name: "γ", value: gamma, requirement: "the CCA ridge must be finite and > 0 (it is relative to the mean unit variance)")
    }
}

/// CCA solvers for every merge point of one model pair: one statistics pass, then any number of γ. Where the graph
/// takes permutations only (a ViT's residual stream and attention heads), the permutation of activation matching
/// stands in for the dense map, for every γ.
public struct CCAMapper: Sendable {
    public let solvers: [CCASolver]
    /// The permutation-only points' maps (empty for MLP, VGG, ResNet).
    public let permutations: [String: PointMap]

    /// `denseStream`: a ViT's residual stream takes CCA's dense map too (applied with `applyMaps(denseStream:)`).
    public init(_ stats: ModelPairStatistics, denseStream: Bool = false) throws {
        var only = stats.graph.permutationOnly
        if denseStream { only[Network<Float>.vitStream] = nil }
        permutations = only.isEmpty ? [:] : try permutationMaps(stats).filter { only[$0.key] != nil }
        solvers = try stats.points.filter { only[$0.point] == nil }.map { try CCASolver($0) }
    }

    public func maps(gamma: Double) throws -> [String: PointMap] {
        try checkGamma(gamma)
        return Dictionary(uniqueKeysWithValues: try solvers.map { ($0.point, try $0.map(gamma: gamma)) }).merging(permutations) { a, _ in a }
    }

    /// Maps for each γ of a grid, every γ checked before any work.
    public func maps(gammas: [Double]) throws -> [[String: PointMap]] {
        guard !gammas.isEmpty else { throw MergeError.invalidInput("the γ grid is empty") }
        for g in gammas { try checkGamma(g) }
        return try gammas.map { try maps(gamma: $0) }
    }
}

public func ccaMaps(_ stats: ModelPairStatistics, gamma: Double) throws -> [String: PointMap] {
    try checkGamma(gamma)
    return try CCAMapper(stats).maps(gamma: gamma)
}

/// Pearson correlation between reference unit i (row) and model unit j (column). A unit with zero variance
/// (dead on the calibration data) correlates 0 with everything, so the assignment may place it anywhere.
public func correlation(_ s: PairStatistics) throws -> Matrix {
    try s.validate()
    var c = s.covarianceXY
    let sx = s.covarianceXX, sy = s.covarianceYY
    let dx = (0..<s.c1).map { max(sx[$0, $0], 0).squareRoot() }, dy = (0..<s.ck).map { max(sy[$0, $0], 0).squareRoot() }
    for i in 0..<s.c1 { for j in 0..<s.ck {
        let d = dx[i] * dy[j]
        c[i, j] = d > 0 ? c[i, j] / d : 0
    } }
    return c
}

/// Permutation alignment: at every point, the linear assignment maximising the total correlation gives P_k (M = P, M⁻¹ = Pᵀ).
/// A ViT's attention points are matched head by head (`headMatching`).
public func permutationMaps(_ stats: ModelPairStatistics) throws -> [String: PointMap] {
    var maps: [String: PointMap] = [:]
    let attention = stats.graph.attention
    for a in attention {
        guard let qk = stats[a.qk], let v = stats[a.v] else { throw MergeError.unknownMergePoint(a.qk) }
        let perm = try headMatching(qk: correlation(qk), v: correlation(v), heads: a.heads, point: a.qk)
        maps[a.qk] = try PointMap.permutation(perm.qk)
        maps[a.v] = try PointMap.permutation(perm.v)
    }
    for s in stats.points where maps[s.point] == nil {
        guard s.c1 == s.ck else {
            throw MergeError.degenerateStatistics(point: s.point, reason: "a permutation needs the same width in both models, got \(s.c1) and \(s.ck)")
        }
        let perm: [Int]
        do { perm = try Assignment.solve(cost: try correlation(s), maximize: true) } catch let e as MergeError { throw e } catch {
            throw MergeError.linalg(point: s.point, message: "\(error)")
        }
        maps[s.point] = try PointMap.permutation(perm)
    }
    return maps
}

/// Attention heads matched as wholes (Verma & Elbayad 2024, "Merging Text Transformer Models from Different
/// Initializations", Sec. 3.2): for every pair (reference head a, model head b) the best within-head assignment of the
/// query/key correlations and of the value correlations scores the pair; one head assignment σ maximises the summed
/// scores; within each matched pair the two assignments give the unit permutations (perm[a·dh + i] = σ(a)·dh + π_a(i)).
func headMatching(qk: Matrix, v: Matrix, heads: Int, point: String) throws -> (qk: [Int], v: [Int]) {
    let d = qk.rows, dh = d / heads
    func block(_ c: Matrix, _ a: Int, _ b: Int) -> Matrix {
        var m = Matrix(zeros: dh, dh)
        for i in 0..<dh { for j in 0..<dh { m[i, j] = c[a * dh + i, b * dh + j] } }
        return m
    }
    func assign(_ m: Matrix) throws -> [Int] {
        do { return try Assignment.solve(cost: m, maximize: true) } catch { throw MergeError.linalg(point: point, message: "\(error)") }
    }
    var score = Matrix(zeros: heads, heads)
    var within: [[(qk: [Int], v: [Int])]] = []
    for a in 0..<heads {
        var row: [(qk: [Int], v: [Int])] = []
        for b in 0..<heads {
            let cq = block(qk, a, b), cv = block(v, a, b)
            let pq = try assign(cq), pv = try assign(cv)
            score[a, b] = (0..<dh).reduce(0.0) { $0 + cq[$1, pq[$1]] + cv[$1, pv[$1]] }
            row.append((pq, pv))
        }
        within.append(row)
    }
    let sigma = try assign(score)
    var pq = [Int](repeating: 0, count: d), pv = pq
    for a in 0..<heads {
        let (wq, wv) = within[a][sigma[a]]
        for i in 0..<dh { pq[a * dh + i] = sigma[a] * dh + wq[i]; pv[a * dh + i] = sigma[a] * dh + wv[i] }
    }
    return (pq, pv)
}

/// The outcome of Git Re-Basin weight matching.
public struct WeightMatchingResult: Sendable {
    /// perm[i] = the model unit placed at reference unit i, per merge point.
    public let permutations: [String: [Int]]
    public let maps: [String: PointMap]
    /// Full sweeps over the merge points, the last being the one without improvement unless `converged` is false.
    public let sweeps: Int
    public let converged: Bool
}

/// Git Re-Basin weight matching (data-free): coordinate descent over the merge points in a seeded random order;
/// each step solves the linear assignment maximising Σ ⟨W_ref, W_k⟩ over every tensor touching that point,
/// with the other points' current permutations applied, until a full sweep improves nothing.
/// BN running statistics are left out (they describe data, not weights) unless `includeRunningStatistics`.
public func weightMatching(reference: StateDict, model: StateDict, graph: MergeGraph, seed: UInt64,
                           maxSweeps: Int = 100, includeRunningStatistics: Bool = false) throws -> WeightMatchingResult {
    guard maxSweeps >= 1 else { throw MergeError.hyperparameter(name: "maxSweeps", value: Double(maxSweeps), requirement: "at least one sweep") }
    try graph.validate(reference, model: "the reference")
    try graph.validate(model, model: "the model")
    var perms = Dictionary(uniqueKeysWithValues: graph.points.map { ($0.name, Array(0..<$0.channels)) })
    let touching = Dictionary(uniqueKeysWithValues: graph.points.map { p in
        (p.name, graph.touching(p.name).filter { includeRunningStatistics || !$0.role.isRunningStatistic })
    })
    // The reference side never changes: its unfoldings along each point are computed once.
    let refSlices = Dictionary(uniqueKeysWithValues: graph.points.map { p in
        (p.name, touching[p.name]!.map { unfold(reference[$0.role.name]!, role: $0.role, axis: $0.axis, otherAxisPermutation: nil) })
    })
    var rng = SeededRNG(seed: seed, stream: "weight-matching")
    var sweeps = 0, converged = false
    while sweeps < maxSweeps && !converged {
        sweeps += 1
        var improved = false
        for pi in rng.permutation(graph.points.count) {
            let p = graph.points[pi]
            // Attention points stay as they are: heads would have to move as wholes, which a per-point assignment ignores.
            if graph.attentionGroup(of: p.name) != nil { continue }
            var sim = Matrix(zeros: p.channels, p.channels)
            for (k, (role, axis)) in touching[p.name]!.enumerated() {
                let other = axis == 0 ? role.inPoint.flatMap { perms[$0] } : role.outPoint.flatMap { perms[$0] }
                let mine = unfold(model[role.name]!, role: role, axis: axis, otherAxisPermutation: other)
                sim = sim + refSlices[p.name]![k].multiplied(by: mine, transOther: true)
            }
            let old = perms[p.name]!
            let new: [Int]
            do { new = try Assignment.solve(cost: sim, maximize: true) } catch {
                throw MergeError.linalg(point: p.name, message: "weight matching: \(error)")
            }
            let oldScore = (0..<p.channels).reduce(0.0) { $0 + sim[$1, old[$1]] }
            let newScore = (0..<p.channels).reduce(0.0) { $0 + sim[$1, new[$1]] }
            if newScore > oldScore + 1e-12 * max(1, abs(oldScore)) { perms[p.name] = new; improved = true }
        }
        converged = !improved
    }
    let maps = try perms.mapValues { try PointMap.permutation($0) }
    return WeightMatchingResult(permutations: perms, maps: maps, sweeps: sweeps, converged: converged)
}

/// A tensor as [units of the point it touches, everything else]: an embedding's token rows [n, d] transposed, else `unfold`.
func unfold(_ t: Tensor, role: TensorRole, axis: Int, otherAxisPermutation perm: [Int]?) -> Matrix {
    guard role.kind == .embedding else { return unfold(t, axis: axis, otherAxisPermutation: perm) }
    let d = t.shape[role.unitAxis]
    return Matrix(rows: t.count / d, cols: d, data: t.storage.map(Double.init)).transposed
}

/// A tensor as [units along `axis`, everything else], with the other unit axis (of a weight) permuted:
/// column block o (axis 1) or i (axis 0) reads unit otherAxisPermutation[o].
func unfold(_ t: Tensor, axis: Int, otherAxisPermutation perm: [Int]?) -> Matrix {
    let d0 = t.shape[0]
    if t.rank == 1 { return Matrix(rows: d0, cols: 1, data: t.storage.map(Double.init)) }
    let d1 = t.shape[1], taps = t.count / (d0 * d1)
    let s = t.storage
    if axis == 0 {
        var m = Matrix(zeros: d0, d1 * taps)
        for o in 0..<d0 { for i in 0..<d1 {
            let src = (o * d1 + (perm?[i] ?? i)) * taps, dst = o * d1 * taps + i * taps
            for k in 0..<taps { m.data[dst + k] = Double(s[src + k]) }
        } }
        return m
    }
    var m = Matrix(zeros: d1, d0 * taps)
    for i in 0..<d1 { for o in 0..<d0 {
        let src = ((perm?[o] ?? o) * d1 + i) * taps, dst = i * d0 * taps + o * taps
        for k in 0..<taps { m.data[dst + k] = Double(s[src + k]) }
    } }
    return m
}
