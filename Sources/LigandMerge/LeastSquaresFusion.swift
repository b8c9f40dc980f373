import Foundation
import LigandNN
import LigandNumerics

/// Why a least-squares fusion (RegMean, progressive) refused its input, naming the layer or task at fault.
public enum FusionError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The normal equations of a layer cannot be solved (no ridge and a rank-deficient Gram matrix).
    case singular(layer: String, size: Int, detail: String)
    case emptyCalibration(task: String)
    case hyperparameter(name: String, value: Double, requirement: String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .singular(layer, size, detail):
            return "layer '\(layer)': the \(size)×\(size) Gram system is singular (\(detail)); use a positive relative ridge, e.g. --ridges 1e-4"
        case .emptyCalibration(let task):
            return "task '\(task)': the calibration split is empty, the fusion needs that task's calibration images"
        case let .hyperparameter(name, value, requirement): return "\(name) = \(value) is invalid: \(requirement)"
        case .invalidInput(let m): return m
        }
    }
    public var errorDescription: String? { description }
}

/// The backbone layers of an architecture in the order progressive fusion visits them (each layer after
/// every layer its input depends on), and the classification head's input.
public struct FusionPlan: Sendable {
    public let architecture: Architecture
    public let units: [WeightLayer]
    public let head: WeightLayer

    public init(_ a: Architecture) throws {
        let net: Network<Float>
        do { net = try Network<Float>(a, rng: .drawless) } catch { throw FusionError.invalidInput("\(error)") }
        architecture = a
        let map = net.layerMap
        units = map.body
        head = map.head
    }

    /// The layer's input for a batch: x is the network input [N, H, W, C], taps the captured activations of that batch.
    public func input(of unit: WeightLayer, image x: Tensor, taps: [Tensor]) throws -> Tensor {
        let n = x.shape[0]
        var t: Tensor
        switch unit.source {
        case .image: t = architecture.normalize.map { $0.apply(x) } ?? x
        case .tap(let i):
            guard i < taps.count else { throw FusionError.invalidInput("layer '\(unit.name)' reads tap \(i) but the network produced \(taps.count)") }
            t = taps[i]
        }
        guard t.count == n * unit.sourceShape.reduce(1, *) else {
            throw FusionError.invalidInput("layer '\(unit.name)': input of \(t.count) values does not fit \(n) × \(unit.sourceShape)")
        }
        t = t.reshaped([n] + unit.sourceShape)
        let pool = MaxPool2d<Float>(kernel: 2)
        for _ in 0..<unit.pools { t = pool.forward(t, training: false) }
        if unit.globalPool { t = GlobalAvgPool<Float>().forward(t, training: false) }
        return unit.isConv ? t : t.reshaped([n, -1])
    }
}

/// A layer as a matrix on its input rows: y = W·row + b, with W [out, columns] in im2col's tap-major column
/// order and any following BatchNorm (evaluation mode) folded in.
public struct FoldedLayer: Equatable, Sendable {
    public var weight: Matrix
    public var bias: [Double]
    public init(weight: Matrix, bias: [Double]) { self.weight = weight; self.bias = bias }

    /// [W | b] as one out × (columns + 1) matrix (the bias rides as the last column).
    public var augmented: Matrix {
        let o = weight.rows, p = weight.cols
        var m = Matrix(zeros: o, p + 1)
        for i in 0..<o {
            for j in 0..<p { m.data[i * (p + 1) + j] = weight.data[i * p + j] }
            m.data[i * (p + 1) + p] = bias[i]
        }
        return m
    }

    public init(augmented m: Matrix) {
        let p = m.cols - 1
        var w = Matrix(zeros: m.rows, p)
        for i in 0..<m.rows { for j in 0..<p { w.data[i * p + j] = m.data[i * m.cols + j] } }
        self.init(weight: w, bias: (0..<m.rows).map { m.data[$0 * m.cols + p] })
    }
}

/// RegMean and progressive least-squares fusion (algorithms.md, "One fused model for every task").
public enum LeastSquaresFusion {
    /// BatchNorm's ε (the engine's default, as in PyTorch).
    public static let batchNormEpsilon = BatchNorm2d<Float>(name: "probe", channels: 1).eps

    /// The unit's layer from a state dict, BatchNorm folded in: W' = s·W, b' = β + s·(b − μ), s = γ/√(σ² + ε).
    public static func fold(_ unit: WeightLayer, _ state: StateDict, model: String = "model") throws -> FoldedLayer {
        func tensor(_ name: String) throws -> Tensor {
            guard let t = state[name] else { throw MergeError.missingTensor(model: model, tensor: name) }
            return t
        }
        let w = try tensor(unit.weightName), o = unit.outChannels, p = unit.columns
        guard w.count == o * p else { throw MergeError.shapeMismatch(model: model, tensor: unit.weightName, expected: [o, p], found: w.shape) }
        var m = Matrix(zeros: o, p)
        if unit.isConv {
            let k2 = unit.kernel * unit.kernel, ci = unit.inChannels
            for r in 0..<o { for c in 0..<ci { for t in 0..<k2 { m.data[r * p + t * ci + c] = Double(w[(r * ci + c) * k2 + t]) } } }
        } else {
            m.data = w.storage.map(Double.init)
        }
        var b = try unit.biasName.map { try tensor($0).storage.map(Double.init) } ?? [Double](repeating: 0, count: o)
        if let bn = unit.batchNorm {
            let gamma = try tensor(bn + ".weight"), beta = try tensor(bn + ".bias")
            let mean = try tensor(bn + ".running_mean"), variance = try tensor(bn + ".running_var")
            for r in 0..<o {
                let s = Double(gamma[r]) / (Double(variance[r]) + batchNormEpsilon).squareRoot()
                for j in 0..<p { m.data[r * p + j] *= s }
                b[r] = Double(beta[r]) + s * (b[r] - Double(mean[r]))
            }
        }
        return FoldedLayer(weight: m, bias: b)
    }

    /// State-dict tensors holding a folded layer: the weight in PyTorch layout; the bias in the layer's own bias or,
    /// with a BatchNorm, in an identity BatchNorm (mean 0, variance 1, γ = √(1 + ε)) whose β is the bias.
    public static func unfold(_ unit: WeightLayer, _ layer: FoldedLayer) -> [(name: String, value: Tensor)] {
        let o = unit.outChannels, p = unit.columns
        var w = [Float](repeating: 0, count: o * p)
        if unit.isConv {
            let k2 = unit.kernel * unit.kernel, ci = unit.inChannels
            for r in 0..<o { for c in 0..<ci { for t in 0..<k2 { w[(r * ci + c) * k2 + t] = Float(layer.weight.data[r * p + t * ci + c]) } } }
        } else {
            w = layer.weight.data.map { Float($0) }
        }
        let shape = unit.isConv ? [o, unit.inChannels, unit.kernel, unit.kernel] : [o, p]
        var out: [(name: String, value: Tensor)] = [(unit.weightName, Tensor(shape: shape, storage: w))]
        let bias = Tensor(shape: [o], storage: layer.bias.map { Float($0) })
        if let bn = unit.batchNorm {
            if let b = unit.biasName { out.append((b, Tensor(zeros: [o]))) }
            out.append((bn + ".weight", Tensor(shape: [o], repeating: Float((1 + batchNormEpsilon).squareRoot()))))
            out.append((bn + ".bias", bias))
            out.append((bn + ".running_mean", Tensor(zeros: [o])))
            out.append((bn + ".running_var", Tensor(shape: [o], repeating: 1)))
        } else if let b = unit.biasName {
            out.append((b, bias))
        }
        return out
    }

    /// The input rows of images [lo, hi) of a layer input (im2col rows for a convolution) in Float64,
    /// `extra` zero-initialised columns appended per row (the caller sets the ones column).
    static func rows(_ unit: WeightLayer, _ input: Tensor, images: Range<Int>, extra: Int) -> (count: Int, values: [Double]) {
        let p = unit.columns, width = p + extra
        let count = images.count * unit.rowsPerSample
        var out = [Double](repeating: 0, count: count * width)
        input.withUnsafeBufferPointer { px in
            if let g = unit.geometry {
                let col = UnsafeMutablePointer<Float>.allocate(capacity: count * p)
                defer { col.deallocate() }
                im2col(px.baseAddress! + images.lowerBound * g.height * g.width * g.channels, batch: images.count, geometry: g, into: col)
                for r in 0..<count { for j in 0..<p { out[r * width + j] = Double(col[r * p + j]) } }
            } else {
                let base = images.lowerBound * unit.rowsPerSample * p
                for r in 0..<count { for j in 0..<p { out[r * width + j] = Double(px[base + r * p + j]) } }
            }
        }
        return (count, out)
    }

    /// Images per chunk so a chunk's rows hold about a million Float64 values (memory O(width²), not O(data)).
    static func imagesPerChunk(_ unit: WeightLayer, batch: Int) -> Int {
        max(1, min(batch, (1 << 20) / max(1, unit.rowsPerSample * (unit.columns + 1))))
    }

    /// The ridge system A·X = B for symmetric positive semidefinite A: refuses a singular A when there is no ridge,
    /// naming the layer, rather than returning noise.
    static func solve(layer: String, _ a: Matrix, _ b: Matrix, ridge: Double) throws -> Matrix {
        let n = a.rows
        let diagonal = (0..<n).map { a.data[$0 * n + $0] }
        let top = diagonal.max() ?? 0
        if ridge == 0, let j = diagonal.firstIndex(where: { $0 <= 1e-12 * top }) {
            throw FusionError.singular(layer: layer, size: n, detail: "input column \(j) is zero on every calibration sample and there is no ridge")
        }
        do {
            let x = try Linalg.solveSymmetricPositive(a, b)
            if let bad = x.firstNonFinite { throw FusionError.singular(layer: layer, size: n, detail: "the solution has a non-finite entry at \(bad.row), \(bad.col)") }
            return x
        } catch let e as LinalgError {
            throw FusionError.singular(layer: layer, size: n, detail: ridge == 0 ? "\(e)" : "even with ridge \(ridge): \(e)")
        }
    }

    static func checkRidge(_ r: Double) throws {
        guard r >= 0 else { throw FusionError.hyperparameter(name: "relative ridge", value: r, requirement: "must be ≥ 0 (inf: the prior itself)") }
    }

    /// Progressive least squares for one layer: [W b] = argmin Σ_k ‖Y_k − [W b]·[X̃_k; 1]‖² + ρ‖[W b] − [W̄ b̄]‖²,
    /// i.e. (C + ρ·P)(G + ρI)⁻¹ with G = Σ [X̃ 1]ᵀ[X̃ 1], C = Σ Yᵀ[X̃ 1], P the experts' mean [W̄ b̄], and
    /// ρ = relativeRidge × the mean diagonal of G. With K = 1 and X̃ = X the expert itself is the exact minimiser.
    public static func progressiveSolve(layer: String, statistics s: ProgressiveStatistics, prior: FoldedLayer, relativeRidge r: Double) throws -> FoldedLayer {
        try checkRidge(r)
        // ρ = ∞: the minimiser is the prior.
        if r == .infinity { return prior }
        let a = s.columns + 1, o = s.outputs
        var g = Matrix(rows: a, cols: a, data: s.gram)
        let rho = r * (0..<a).reduce(0.0) { $0 + g.data[$1 * a + $1] } / Double(a)
        var rhs = Matrix(rows: a, cols: o, data: s.cross)
        let p = prior.augmented
        if rho > 0 {
            for i in 0..<a { g.data[i * a + i] += rho }
            for i in 0..<a { for j in 0..<o { rhs.data[i * o + j] += rho * p.data[j * a + i] } }
        }
        return FoldedLayer(augmented: try solve(layer: layer, g.symmetrized, rhs, ridge: rho).transposed)
    }

    /// RegMean for one layer: W = (Σ_k W_k G̃_k + ρW̄)(Σ_k G̃_k + ρI)⁻¹ with G̃_k = α·G_k + (1 − α)·diag(G_k),
    /// from the α-free sums Σ G_k, Σ W_k G_k and Σ W_k diag(G_k) (G̃ is linear in α, so one pass serves the grid).
    public static func regmeanSolve(layer: String, statistics s: RegMeanStatistics, prior: Matrix, alpha: Double, relativeRidge r: Double) throws -> Matrix {
        try checkRidge(r)
        guard alpha.isFinite && alpha >= 0 && alpha <= 1 else { throw FusionError.hyperparameter(name: "RegMean α", value: alpha, requirement: "must be in [0, 1]") }
        if r == .infinity { return prior }
        let p = s.columns, o = s.outputs
        var g = Matrix(zeros: p, p)
        for i in 0..<p { for j in 0..<p { g.data[i * p + j] = (i == j ? 1 : alpha) * s.gram[i * p + j] } }
        let rho = r * (0..<p).reduce(0.0) { $0 + s.gram[$1 * p + $1] } / Double(max(1, p))
        var rhs = Matrix(zeros: p, o)
        for j in 0..<o { for i in 0..<p {
            rhs.data[i * o + j] = alpha * s.weightedGram[j * p + i] + (1 - alpha) * s.weightedDiagonal[j * p + i] + rho * prior.data[j * p + i]
        } }
        if rho > 0 { for i in 0..<p { g.data[i * p + i] += rho } }
        return try solve(layer: layer, g.symmetrized, rhs, ridge: rho).transposed
    }
}

/// One expert's (or their sum's) progressive statistics of one layer: G = Σ [X̃ 1]ᵀ[X̃ 1] and C = Σ [X̃ 1]ᵀ Y in
/// Float64, with X̃ the fused network's input rows and Y the expert's own pre-activations. Plain sums, so
/// shares from other experts, batches or ranks combine by adding `packed`.
public struct ProgressiveStatistics: Equatable, Sendable {
    public let columns: Int, outputs: Int
    public var rows: Double = 0
    /// (columns + 1)², row-major.
    public var gram: [Double]
    /// (columns + 1) × outputs, row-major.
    public var cross: [Double]

    public init(_ unit: WeightLayer) {
        columns = unit.columns; outputs = unit.outChannels
        gram = .init(repeating: 0, count: (columns + 1) * (columns + 1))
        cross = .init(repeating: 0, count: (columns + 1) * outputs)
    }

    /// Adds a batch: the fused network's and the expert's inputs to `unit` for the same samples, and the expert's layer.
    public mutating func accumulate(_ unit: WeightLayer, fusedInput: Tensor, expertInput: Tensor, expert: FoldedLayer) {
        let n = fusedInput.shape[0], a = columns + 1, p = columns, o = outputs
        let per = LeastSquaresFusion.imagesPerChunk(unit, batch: n)
        for lo in stride(from: 0, to: n, by: per) {
            let range = lo..<min(n, lo + per)
            var (m, x) = LeastSquaresFusion.rows(unit, fusedInput, images: range, extra: 1)
            for r in 0..<m { x[r * a + p] = 1 }
            let (_, xk) = LeastSquaresFusion.rows(unit, expertInput, images: range, extra: 0)
            var y = [Double](repeating: 0, count: m * o)
            for r in 0..<m { for j in 0..<o { y[r * o + j] = expert.bias[j] } }
            x.withUnsafeBufferPointer { px in xk.withUnsafeBufferPointer { pk in y.withUnsafeMutableBufferPointer { py in
                expert.weight.data.withUnsafeBufferPointer { pw in gram.withUnsafeMutableBufferPointer { pg in cross.withUnsafeMutableBufferPointer { pc in
                    BLAS.dgemm(transB: true, m: m, n: o, k: p, a: pk.baseAddress!, lda: p, b: pw.baseAddress!, ldb: p, beta: 1, c: py.baseAddress!, ldc: o)
                    BLAS.dgemm(transA: true, m: a, n: a, k: m, a: px.baseAddress!, lda: a, b: px.baseAddress!, ldb: a, beta: 1, c: pg.baseAddress!, ldc: a)
                    BLAS.dgemm(transA: true, m: a, n: o, k: m, a: px.baseAddress!, lda: a, b: py.baseAddress!, ldb: o, beta: 1, c: pc.baseAddress!, ldc: o)
                } } }
            } } }
            rows += Double(m)
        }
    }

    public var packed: [Double] { [rows] + gram + cross }

    public func unpacked(_ v: [Double]) throws -> ProgressiveStatistics {
        guard v.count == packed.count else { throw FusionError.invalidInput("packed progressive statistics hold \(v.count) values, expected \(packed.count)") }
        var s = self
        let a = columns + 1
        s.rows = v[0]; s.gram = Array(v[1..<(1 + a * a)]); s.cross = Array(v[(1 + a * a)...])
        return s
    }
}

/// One expert's RegMean statistics of one layer: its Gram G = XᵀX over its own inputs, and with its weight W the
/// products W·G and W·diag(G) — the terms Σ_k W_k G̃_k needs for any α. Plain sums, combined by adding `packed`.
public struct RegMeanStatistics: Equatable, Sendable {
    public let columns: Int, outputs: Int
    public var rows: Double = 0
    /// columns², row-major.
    public var gram: [Double]
    /// outputs × columns each.
    public var weightedGram: [Double], weightedDiagonal: [Double]

    public init(_ unit: WeightLayer) {
        columns = unit.columns; outputs = unit.outChannels
        gram = .init(repeating: 0, count: columns * columns)
        weightedGram = .init(repeating: 0, count: columns * outputs); weightedDiagonal = weightedGram
    }

    public mutating func accumulate(_ unit: WeightLayer, input: Tensor) {
        let n = input.shape[0], p = columns
        let per = LeastSquaresFusion.imagesPerChunk(unit, batch: n)
        for lo in stride(from: 0, to: n, by: per) {
            let (m, x) = LeastSquaresFusion.rows(unit, input, images: lo..<min(n, lo + per), extra: 0)
            x.withUnsafeBufferPointer { px in gram.withUnsafeMutableBufferPointer { pg in
                BLAS.dgemm(transA: true, m: p, n: p, k: m, a: px.baseAddress!, lda: p, b: px.baseAddress!, ldb: p, beta: 1, c: pg.baseAddress!, ldc: p)
            } }
            rows += Double(m)
        }
    }

    /// Sets W·G and W·diag(G) from the accumulated Gram and the expert's (folded) weight.
    public mutating func weigh(_ weight: Matrix) {
        let p = columns, o = outputs
        weightedGram = (weight * Matrix(rows: p, cols: p, data: gram)).data
        for r in 0..<o { for j in 0..<p { weightedDiagonal[r * p + j] = weight.data[r * p + j] * gram[j * p + j] } }
    }

    public var packed: [Double] { [rows] + gram + weightedGram + weightedDiagonal }

    public func unpacked(_ v: [Double]) throws -> RegMeanStatistics {
        guard v.count == packed.count else { throw FusionError.invalidInput("packed RegMean statistics hold \(v.count) values, expected \(packed.count)") }
        var s = self
        let p = columns, q = columns * outputs
        s.rows = v[0]; s.gram = Array(v[1..<(1 + p * p)])
        s.weightedGram = Array(v[(1 + p * p)..<(1 + p * p + q)]); s.weightedDiagonal = Array(v[(1 + p * p + q)...])
        return s
    }
}

/// The calibration images of one task in fixed batches.
public struct CalibrationBatches {
    public let count: Int
    public let batch: (Int) -> Tensor
    public init(count: Int, batch: @escaping (Int) -> Tensor) { self.count = count; self.batch = batch }
    public init(_ batches: [Tensor]) { self.init(count: batches.count) { batches[$0] } }
}

extension LeastSquaresFusion {
    /// The activations of every tap of one forward, in call order.
    public static func taps(_ net: Network<Float>, _ x: Tensor) -> [Tensor] {
        var out: [Tensor] = []
        _ = net.features(x, training: false) { _, a in out.append(a) }
        return out
    }

    /// Expert k's progressive statistics of `unit` on its task's batches: X̃ from the fused network, Y from the expert.
    public static func progressiveContribution(_ plan: FusionPlan, _ unit: WeightLayer, fused: Network<Float>, expert: Network<Float>,
                                               expertLayer: FoldedLayer, data: CalibrationBatches) throws -> ProgressiveStatistics {
        var s = ProgressiveStatistics(unit)
        for b in 0..<data.count {
            let x = data.batch(b)
            let xf = try plan.input(of: unit, image: x, taps: unit.source == .image ? [] : taps(fused, x))
            let xe = try plan.input(of: unit, image: x, taps: unit.source == .image ? [] : taps(expert, x))
            s.accumulate(unit, fusedInput: xf, expertInput: xe, expert: expertLayer)
        }
        return s
    }

    /// Expert k's RegMean statistics of every unit (default: the plan's backbone units) on its task's batches (one forward per batch).
    public static func regmeanContribution(_ plan: FusionPlan, units: [WeightLayer]? = nil, expert: Network<Float>, data: CalibrationBatches) throws -> [RegMeanStatistics] {
        let units = units ?? plan.units
        var stats = units.map { RegMeanStatistics($0) }
        let state = expert.stateDictionary()
        for b in 0..<data.count {
            let x = data.batch(b)
            let t = taps(expert, x)
            for (i, u) in units.enumerated() { stats[i].accumulate(u, input: try plan.input(of: u, image: x, taps: t)) }
        }
        for (i, u) in units.enumerated() { stats[i].weigh(try fold(u, state).weight) }
        return stats
    }
}
