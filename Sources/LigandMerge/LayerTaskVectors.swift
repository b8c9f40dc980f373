import LigandNumerics

/// Per-layer merges of task vectors, on one layer's weight matrices τ_k = θ_k − θ_pre (out × in; a convolution's kernel
/// as out × in·kh·kw): pure functions in Float64, the formula in each doc comment. The pipeline's method files (TSVM,
/// IsoC, IsoCTS, WUDI) say which rank computes what; every rank that calls these on the same inputs gets the same bits.
public enum LayerTaskVectors {
    /// A matrix's top-r singular triples, A ≈ U_r·diag(s_r)·V_rᵀ (U_r m × r, V_rᵀ r × n).
    public struct Factors: Equatable, Sendable {
        public var u: Matrix
        public var s: [Double]
        public var vt: Matrix

        public init(u: Matrix, s: [Double], vt: Matrix) {
            precondition(u.cols == s.count && vt.rows == s.count, "factors of rank \(s.count): U \(u.rows)×\(u.cols), Vᵀ \(vt.rows)×\(vt.cols)")
            self.u = u; self.s = s; self.vt = vt
        }

        /// The top `rank` triples of `a` (thin SVD, LAPACK dgesdd).
        public init(_ a: Matrix, rank: Int) throws {
            let (u, s, vt) = try Linalg.svd(a)
            let r = max(0, min(rank, s.count))
            self.init(u: u.columnRange(0..<r), s: Array(s[0..<r]), vt: vt.rowRange(0..<r))
        }

        public var rank: Int { s.count }

        /// U, s, Vᵀ row-major one after another (what a rank sends when the factors are gathered).
        public var packed: [Double] { u.data + s + vt.data }

        /// The inverse of `packed` for an m × n matrix; nil when the length fits no rank.
        public init?(packed p: [Double], rows m: Int, cols n: Int) {
            guard p.count % (m + n + 1) == 0 else { return nil }
            let r = p.count / (m + n + 1)
            self.init(u: Matrix(rows: m, cols: r, data: Array(p[0..<(m * r)])), s: Array(p[(m * r)..<(m * r + r)]),
                      vt: Matrix(rows: r, cols: n, data: Array(p[(m * r + r)...])))
        }
    }

    /// TSV-M's share of each task in an m × n layer: ⌊min(m, n)/K⌋ singular triples, at least one.
    public static func tsvRank(rows m: Int, cols n: Int, tasks k: Int) -> Int { max(1, min(m, n) / max(1, k)) }

    /// TSV-M (Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model Merging", CVPR 2025, Sec. 4,
    /// Eq. 9): stack the tasks' low-rank factors U = [U_1 … U_K], Σ = diag(Σ_1 … Σ_K), Vᵀ = [V_1ᵀ; …; V_Kᵀ], replace U
    /// and Vᵀ by their nearest orthogonal matrices P_U, P_V (the polar factors, from their SVDs) and return P_U·Σ·P_V.
    public static func tsvMerge(_ factors: [Factors], rows m: Int, cols n: Int) throws -> Matrix {
        guard let (pu, s, pv) = try orthogonalised(factors, rows: m, cols: n) else { return Matrix(zeros: m, n) }
        return pu.scalingColumns(by: s) * pv
    }

    /// Iso-C (Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces",
    /// ICML 2025, Eq. 6): the task-arithmetic sum Δ = Σ_k τ_k = UΣVᵀ with its spectrum flattened to the mean singular
    /// value (over all min(m, n) of them): σ̄·U·Vᵀ.
    public static func isotropic(_ sum: Matrix) throws -> Matrix {
        let (u, s, vt) = try Linalg.svd(sum)
        guard !s.isEmpty else { return sum }
        let mean = s.reduce(0, +) / Double(s.count)
        return u.scalingColumns(by: [Double](repeating: mean, count: s.count)) * vt
    }

    /// Iso-CTS's split of an m × n layer's rank r = min(m, n): the common subspace keeps ⌊r·fraction⌋ directions,
    /// adjusted so the rest divides evenly among the K tasks (round half to even, as the reference code's `round`).
    public static func isoCTSDimensions(rows m: Int, cols n: Int, tasks k: Int, fraction: Double) -> (common: Int, perTask: Int) {
        let r = min(m, n), k = max(1, k)
        let c0 = Int((Double(r) * fraction).rounded(.towardZero))
        let specific = Int((Double(r - c0) / Double(k)).rounded(.toNearestOrEven)) * k
        let common = max(0, r - specific)
        return (common, (r - common) / k)
    }

    /// Iso-CTS (Marczak et al., ICML 2025, Sec. 4.2, Eq. 8-11), step 2 for task k: its task vector with the common
    /// subspace projected out of its columns, (I − U_c·U_cᵀ)·τ_k, and that residual's top `rank` triples.
    public static func taskSpecific(_ tau: Matrix, common uc: Matrix, rank: Int) throws -> Factors {
        let residual = uc.cols == 0 ? tau : tau - uc * uc.multiplied(by: tau, transSelf: true)
        return try Factors(residual, rank: rank)
    }

    /// Iso-CTS, step 3: the task-specific factors of every task then the common ones stacked, U and Vᵀ replaced by their
    /// polar factors and the spectrum flattened to its mean: σ̄·P_U·P_V.
    public static func isoCTSMerge(specific: [Factors], common: Factors, rows m: Int, cols n: Int) throws -> Matrix {
        guard let (pu, s, pv) = try orthogonalised(specific + [common], rows: m, cols: n) else { return Matrix(zeros: m, n) }
        let mean = s.reduce(0, +) / Double(s.count)
        return pu.scalingColumns(by: [Double](repeating: mean, count: s.count)) * pv
    }

    /// WUDI's objective on one layer (Cheng et al., "Whoever Started the Interference Should End It: Guiding Data-Free
    /// Model Merging via Task Vectors", ICML 2025, Eq. 11): L(τ) = Σ_k ‖(τ − τ_k)·τ_kᵀ‖²_F / ‖τ_k‖²_F, whose gradient is
    /// 2(τ·G − T) with G = Σ_k τ_kᵀτ_k / ‖τ_k‖²_F (n × n) and T = Σ_k τ_k·τ_kᵀτ_k / ‖τ_k‖²_F (m × n). This is task k's
    /// share [G_k, T_k] row-major (zeros for a zero task vector, whose terms vanish); the sum over tasks is a plain sum.
    public static func interferenceTerms(_ tau: Matrix) -> [Double] {
        let norm2 = tau.data.reduce(0) { $0 + $1 * $1 }
        guard norm2 > 0 else { return [Double](repeating: 0, count: tau.cols * tau.cols + tau.rows * tau.cols) }
        let g = tau.multiplied(by: tau, transSelf: true)
        let t = tau * g
        return g.data.map { $0 / norm2 } + t.data.map { $0 / norm2 }
    }

    /// WUDI's merged task vector: Adam (β = 0.9, 0.999, ε = 1e-8, the paper's optimiser) on L from `start` (the
    /// task-arithmetic sum Σ_k τ_k) for `steps` steps of size `lr`, given the summed terms [G, T] of `interferenceTerms`.
    public static func wudi(start: Matrix, terms: [Double], steps: Int, lr: Double) -> Matrix {
        let m = start.rows, n = start.cols
        precondition(terms.count == n * n + m * n, "WUDI terms: \(terms.count) values for a \(m)×\(n) layer")
        let g = Matrix(rows: n, cols: n, data: Array(terms[0..<(n * n)]))
        let t = Array(terms[(n * n)...])
        var tau = start
        var adam = Adam(count: m * n, lr: lr)
        for _ in 0..<max(0, steps) {
            let tg = tau * g
            adam.step(&tau.data, (0..<(m * n)).map { 2 * (tg.data[$0] - t[$0]) })
        }
        return tau
    }

    /// The stacked factors with U and Vᵀ replaced by their polar factors (the nearest matrices with orthonormal columns,
    /// rows): (P_U, s, P_V); nil when no factor has rank.
    static func orthogonalised(_ factors: [Factors], rows m: Int, cols n: Int) throws -> (Matrix, [Double], Matrix)? {
        let all = concatenated(factors, rows: m, cols: n)
        guard all.rank > 0 else { return nil }
        return (try Linalg.orthogonalProcrustes(all.u), all.s, try Linalg.orthogonalProcrustes(all.vt))
    }

    /// The factors side by side: U = [U_1 … U_K] (m × Σr), s concatenated, Vᵀ = [V_1ᵀ; …; V_Kᵀ] (Σr × n).
    static func concatenated(_ factors: [Factors], rows m: Int, cols n: Int) -> Factors {
        let r = factors.reduce(0) { $0 + $1.rank }
        var u = Matrix(zeros: m, r), vt = [Double](), s = [Double]()
        var c = 0
        for f in factors {
            precondition(f.u.rows == m && f.vt.cols == n, "factors of a \(f.u.rows)×\(f.vt.cols) layer in a \(m)×\(n) merge")
            for i in 0..<m { for j in 0..<f.rank { u.data[i * r + c + j] = f.u.data[i * f.rank + j] } }
            c += f.rank
            s += f.s; vt += f.vt.data
        }
        return Factors(u: u, s: s, vt: Matrix(rows: r, cols: n, data: vt))
    }
}

extension Matrix {
    /// Columns `range` of the matrix.
    public func columnRange(_ range: Range<Int>) -> Matrix {
        var out = Matrix(zeros: rows, range.count)
        for i in 0..<rows { for (j, c) in range.enumerated() { out.data[i * range.count + j] = data[i * cols + c] } }
        return out
    }

    /// Rows `range` of the matrix.
    public func rowRange(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }
}
