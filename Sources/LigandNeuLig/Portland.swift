import Foundation
import LigandCollective
import LigandNN
import LigandNumerics

// NeuLig's Portland (Li, Yu, Wang, "Multi-Level Collaboration in Model Merging", arXiv 2503.01268):
// β(x) = softmax(Wᵀ[f_1(x); …; f_K(x)] + b)  (Eq. of the Portland module),
// e(x) = Σ_k β_k(x) f_k(x), y = h_t(e(x)), loss = L_align + L_reg / scaling.
// W is row-partitioned: the rank holding model k holds W_k ∈ R^{d×K} (design.md, the distributed flow).
// The head is linear and Σ_k β_k = 1, so h_t(Σ_k β_k f_k) = Σ_k β_k h_t(f_k): each rank caches u_k = h_t(f_k(x))
// once, and a step moves B×K partial Portland logits and B×C weighted head outputs across ranks instead of
// the B×d feature ensemble (exact, and C ≪ d).
// Same-task suites (every model its own head h_k): the prediction is Σ_k β_k h_k(f_k(x)), the same sums with u_k = h_k(f_k(x)).

public enum AlignLoss: String, Codable, Sendable, CaseIterable {
    /// Cross-entropy against the labels.
    case sup
    /// Mean entropy of the prediction (label-free; the task still picks the head).
    case semi
    /// KL(p_ens ‖ prediction) with p_ens the all-reduced prediction ensemble (ours, label-free).
    case ensemble
}

public enum RegularizerKind: String, Codable, Sendable, CaseIterable {
    /// The paper's form: r(x) = β(x)·s with s the standardised per-model sums of θ_k − θ̄.
    case paper
    /// βᵀGβ with G_kl = ⟨ξ_k, ξ_l⟩/P: the squared norm of the weighted parameter offset (ours).
    case gram
    case none
}

/// How each model's features are scaled before the Portland's linear layer.
public enum FeatureNorm: String, Codable, Sendable, CaseIterable {
    /// z-scores per model and dimension, mean and std over the training samples of every task (ours).
    case standard
    /// The raw features, as in the paper.
    case none
}

public struct PortlandConfig: Codable, Equatable, Sendable {
    public var loss: AlignLoss = .semi
    public var regularizer: RegularizerKind = .paper
    public var featureNorm: FeatureNorm = .standard
    public var scaling: Double = 100
    public var learningRate: Double = 1e-3
    public var batchSize: Int = 128
    public var epochs: Int = 1000
    public var seed: UInt64 = 0
    public var beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8
    /// Sums over models by the rank-count-independent left fold (bitwise identical for any -np) or by plain allreduce.
    public var deterministic: Bool = true

    public init() {}

    public func validationErrors() -> [String] {
        var e: [String] = []
        if !(learningRate > 0) || !learningRate.isFinite { e.append("learning rate must be positive, got \(learningRate)") }
        if !(scaling > 0) { e.append("scaling must be positive, got \(scaling)") }
        if batchSize < 1 { e.append("batch size must be at least 1, got \(batchSize)") }
        if epochs < 0 { e.append("epochs must be non-negative, got \(epochs)") }
        return e
    }
}

/// A linear classification head: weight [classes, d] row-major and bias [classes].
public struct PortlandHead: Sendable {
    public let weight: [Double]
    public let bias: [Double]
    public init(weight: [Double], bias: [Double]) { self.weight = weight; self.bias = bias }
}

/// One task's cached inputs on this rank: its frozen head and, for every local model, the features of the task's samples.
public struct PortlandTask: Sendable {
    public let name: String
    /// Head h_t: weight [classes, d] row-major and bias [classes] (with `localHeads`, the weight is empty).
    public let headWeight: [Double]
    public let headBias: [Double]
    public let labels: [Int]
    /// features[i] is local model i's [count, d] Float32 features of this task's samples.
    public let features: [[Float]]
    /// Same-task suites: local model i reads its own head, so the prediction is Σ_k β_k h_k(f_k(x)) (nil: h_t for every model).
    public let localHeads: [PortlandHead]?

    public init(name: String, headWeight: [Double], headBias: [Double], labels: [Int], features: [[Float]]) {
        self.name = name; self.headWeight = headWeight; self.headBias = headBias; self.labels = labels; self.features = features
        localHeads = nil
    }

    /// A task where every model keeps its own head (models of one task from different seeds or data splits).
    public init(name: String, classes: Int, localHeads: [PortlandHead], labels: [Int], features: [[Float]]) {
        self.name = name; headWeight = []; headBias = [Double](repeating: 0, count: classes)
        self.labels = labels; self.features = features; self.localHeads = localHeads
    }
    public var count: Int { labels.count }
    public var classes: Int { headBias.count }
}

public enum PortlandError: Error, CustomStringConvertible {
    case invalidConfig([String])
    case invalidInput(String)
    public var description: String {
        switch self {
        case .invalidConfig(let e): return "invalid Portland configuration: " + e.joined(separator: "; ")
        case .invalidInput(let m): return m
        }
    }
}

/// Portland training state on one rank: W_k for its models, the replicated bias, Adam moments.
public final class Portland {
    public let comm: Communicator
    public let totalModels: Int
    public let localModels: Range<Int>
    public let width: Int
    public let config: PortlandConfig
    public let tasks: [PortlandTask]
    /// Regulariser input: s [K] (paper) or G [K×K] (gram), identical on every rank.
    public let regularizer: [Double]
    /// Local blocks, model-major: W[(i·d + row)·K + j] for local model i.
    public private(set) var weights: [Double]
    public private(set) var bias: [Double]
    private var mW: [Double], vW: [Double], mB: [Double], vB: [Double]
    public private(set) var step = 0
    public private(set) var epoch = 0
    /// Per task, p_ens [count, classes] (only for the `ensemble` loss).
    private var ensembleTargets: [[Double]] = []
    /// Per task and local model, u_k = h_t(f_k(x)) [count, classes].
    private var headOutputs: [[[Double]]] = []
    /// Floats that crossed ranks per step (for the report's communication volume).
    public private(set) var floatsPerStep = 0
    /// Per local model, z = (f − shift)·scale per dimension (identity for `FeatureNorm.none`).
    private var featureShift: [[Double]] = [], featureScale: [[Double]] = []

    public init(comm: Communicator, totalModels: Int, localModels: Range<Int>, width: Int, tasks: [PortlandTask],
                regularizer: [Double], config: PortlandConfig) throws {
        let problems = config.validationErrors()
        guard problems.isEmpty else { throw PortlandError.invalidConfig(problems) }
        guard totalModels >= 1, width >= 1 else { throw PortlandError.invalidInput("Portland needs at least one model and a positive feature width") }
        guard !tasks.isEmpty else { throw PortlandError.invalidInput("Portland needs at least one task") }
        for t in tasks {
            guard t.count > 0 else { throw PortlandError.invalidInput("task '\(t.name)': the calibration split is empty") }
            if let heads = t.localHeads {
                guard t.classes > 0, heads.count == localModels.count else {
                    throw PortlandError.invalidInput("task '\(t.name)': \(heads.count) heads for \(localModels.count) local models")
                }
                for (i, h) in heads.enumerated() where h.weight.count != t.classes * width || h.bias.count != t.classes {
                    throw PortlandError.invalidInput("task '\(t.name)': model \(localModels.lowerBound + i)'s head has \(h.weight.count) weights and \(h.bias.count) biases, expected \(t.classes)×\(width) and \(t.classes) (models with different feature widths or class counts cannot be fused)")
                }
            } else {
                guard t.classes > 0, t.headWeight.count == t.classes * width else {
                    throw PortlandError.invalidInput("task '\(t.name)': head weight has \(t.headWeight.count) values, expected \(t.classes)×\(width)")
                }
            }
            guard t.features.count == localModels.count else {
                throw PortlandError.invalidInput("task '\(t.name)': features for \(t.features.count) local models, expected \(localModels.count)")
            }
            for (i, f) in t.features.enumerated() where f.count != t.count * width {
                throw PortlandError.invalidInput("task '\(t.name)': model \(localModels.lowerBound + i) has \(f.count / max(1, t.count)) features per sample, expected \(width) (experts with different feature widths cannot be fused)")
            }
            if let bad = t.labels.first(where: { $0 < 0 || $0 >= t.classes }) {
                throw PortlandError.invalidInput("task '\(t.name)': label \(bad) out of range 0..<\(t.classes)")
            }
        }
        switch config.regularizer {
        case .paper: guard regularizer.count == totalModels else { throw PortlandError.invalidInput("paper regulariser needs \(totalModels) scores, got \(regularizer.count)") }
        case .gram: guard regularizer.count == totalModels * totalModels else { throw PortlandError.invalidInput("gram regulariser needs a \(totalModels)×\(totalModels) matrix") }
        case .none: break
        }
        self.comm = comm; self.totalModels = totalModels; self.localModels = localModels; self.width = width
        self.tasks = tasks; self.regularizer = regularizer; self.config = config
        // nn.Linear's default range, drawn per model so the initial W does not depend on the rank layout.
        let bound = 1 / Double(totalModels * width).squareRoot()
        var w: [Double] = []
        for k in localModels {
            var rng = SeededRNG(seed: config.seed, stream: "portland-W-\(k)")
            for _ in 0..<(width * totalModels) { w.append((2 * rng.uniform() - 1) * bound) }
        }
        var rngB = SeededRNG(seed: config.seed, stream: "portland-b")
        bias = (0..<totalModels).map { _ in (2 * rngB.uniform() - 1) * bound }
        weights = w
        mW = [Double](repeating: 0, count: w.count); vW = mW
        (featureShift, featureScale) = Portland.featureStatistics(tasks: tasks, localCount: localModels.count, width: width, norm: config.featureNorm)
        mB = [Double](repeating: 0, count: totalModels); vB = mB
        headOutputs = tasks.map { t in
            t.features.enumerated().map { i, f in
                let head = t.localHeads?[i] ?? PortlandHead(weight: t.headWeight, bias: t.headBias)
                return headForward(head, TensorOf<Double>(shape: [t.count, width], storage: f.map(Double.init))).storage
            }
        }
        if config.loss == .ensemble { ensembleTargets = try tasks.indices.map { try ensembleTarget($0) } }
    }

    /// Σ over models of per-model contributions, every rank receiving the sum.
    func sumOverModels(_ perModel: [[Double]], length: Int) throws -> [Double] {
        floatsPerStep += length
        if config.deterministic {
            let contributions = perModel.enumerated().map { (index: localModels.lowerBound + $0.offset, values: $0.element) }
            return try deterministicSum(contributions: contributions, total: totalModels, comm: comm)
        }
        var s = [Double](repeating: 0, count: length)
        for v in perModel { for i in 0..<length { s[i] += v[i] } }
        try comm.allreduce(&s, op: .sum)
        return s
    }

    /// p_ens = (1/K) Σ_k softmax(h_t(f_k(x))) over the task's samples.
    func ensembleTarget(_ ti: Int) throws -> [Double] {
        let t = tasks[ti], n = t.count, c = t.classes
        let perModel = headOutputs[ti].map { Loss.softmax(TensorOf<Double>(shape: [n, c], storage: $0)).storage }
        return try sumOverModels(perModel, length: n * c).map { $0 / Double(totalModels) }
    }

    func headForward(_ h: PortlandHead, _ e: TensorOf<Double>) -> TensorOf<Double> {
        let c = h.bias.count
        var y = matmul(e, TensorOf<Double>(shape: [c, width], storage: h.weight), transB: true)
        for r in 0..<e.shape[0] { for j in 0..<c { y.storage[r * c + j] += h.bias[j] } }
        return y
    }

    /// Per local model, the mean and 1/std of every feature dimension over all tasks' samples (Float64 sums).
    static func featureStatistics(tasks: [PortlandTask], localCount: Int, width d: Int, norm: FeatureNorm) -> (shift: [[Double]], scale: [[Double]]) {
        guard norm == .standard else {
            return ([[Double]](repeating: [Double](repeating: 0, count: d), count: localCount), [[Double]](repeating: [Double](repeating: 1, count: d), count: localCount))
        }
        var shifts: [[Double]] = [], scales: [[Double]] = []
        for i in 0..<localCount {
            var sum = [Double](repeating: 0, count: d), sq = sum
            var n = 0
            for t in tasks {
                t.features[i].withUnsafeBufferPointer { f in
                    for r in 0..<t.count { for j in 0..<d { let v = Double(f[r * d + j]); sum[j] += v; sq[j] += v * v } }
                }
                n += t.count
            }
            let mean = sum.map { $0 / Double(max(1, n)) }
            // A constant (dead) dimension is centred to 0 and left unscaled.
            let scale = (0..<d).map { j -> Double in
                let v = max(0, sq[j] / Double(max(1, n)) - mean[j] * mean[j])
                return v > 1e-12 * max(1, mean[j] * mean[j]) ? 1 / v.squareRoot() : 1
            }
            shifts.append(mean); scales.append(scale)
        }
        return (shifts, scales)
    }

    /// Local models' features of the given rows, normalised, as Float64 [rows, d] per local model.
    func gather(_ t: PortlandTask, _ rows: [Int]) -> [TensorOf<Double>] {
        let d = width
        return t.features.enumerated().map { i, f in
            var z = [Double](repeating: 0, count: rows.count * d)
            let shift = featureShift[i], scale = featureScale[i]
            f.withUnsafeBufferPointer { src in z.withUnsafeMutableBufferPointer { dst in
                shift.withUnsafeBufferPointer { sh in scale.withUnsafeBufferPointer { sc in
                    for (r, i) in rows.enumerated() {
                        let from = src.baseAddress! + i * d, to = dst.baseAddress! + r * d
                        for j in 0..<d { to[j] = (Double(from[j]) - sh[j]) * sc[j] }
                    }
                } }
            } }
            return TensorOf<Double>(shape: [rows.count, d], storage: z)
        }
    }

    /// β [rows, K] (identical on every rank).
    func betas(_ zs: [TensorOf<Double>], rows b: Int) throws -> [Double] {
        // A rank holding no model still takes part in the sums, with the batch's row count.
        let k = totalModels
        let perModel = zs.enumerated().map { (i, z) -> [Double] in
            let wk = TensorOf<Double>(shape: [width, k], storage: Array(weights[(i * width * k)..<((i + 1) * width * k)]))
            return matmul(z, wk).storage
        }
        var logits = try sumOverModels(perModel, length: b * k)
        for r in 0..<b { for j in 0..<k { logits[r * k + j] += bias[j] } }
        return Loss.softmax(TensorOf<Double>(shape: [b, k], storage: logits)).storage
    }

    public struct StepResult { public let loss: Double; public let align: Double; public let reg: Double }

    /// Loss and gradients for a batch of task `ti`; gradients are returned, not applied (so tests can check them).
    func lossAndGradients(task ti: Int, rows: [Int]) throws -> (StepResult, gW: [Double], gB: [Double]) {
        let t = tasks[ti], b = rows.count, k = totalModels, c = t.classes
        let zs = gather(t, rows)
        let beta = try betas(zs, rows: b)
        // y = Σ_k β_k u_k + (nothing: h_t's bias is inside every u_k and Σ_k β_k = 1), summed over models.
        let us = headOutputs[ti].map { u -> [Double] in
            var g = [Double](repeating: 0, count: b * c)
            for (r, i) in rows.enumerated() { for j in 0..<c { g[r * c + j] = u[i * c + j] } }
            return g
        }
        let perModel = us.enumerated().map { (i, u) -> [Double] in
            let kk = localModels.lowerBound + i
            var y = [Double](repeating: 0, count: b * c)
            for r in 0..<b { let w = beta[r * k + kk]; for j in 0..<c { y[r * c + j] = w * u[r * c + j] } }
            return y
        }
        let y = TensorOf<Double>(shape: [b, c], storage: try sumOverModels(perModel, length: b * c))
        let (align, dy): (Double, TensorOf<Double>)
        switch config.loss {
        case .sup: (align, dy) = Loss.crossEntropy(y, labels: rows.map { t.labels[$0] })
        case .semi: (align, dy) = Loss.entropy(y)
        case .ensemble:
            var target = [Double](repeating: 0, count: b * c)
            for (r, i) in rows.enumerated() { for j in 0..<c { target[r * c + j] = ensembleTargets[ti][i * c + j] } }
            (align, dy) = Loss.klDivergence(target: TensorOf<Double>(shape: [b, c], storage: target), logits: y)
        }
        // dL/dβ_k = Σ_j dy_j·u_kj depends on local data only: gather the columns, no sum needed.
        var localG = [Double](repeating: 0, count: b * localModels.count)
        for (i, u) in us.enumerated() {
            for r in 0..<b { var s = 0.0; for j in 0..<c { s += dy.storage[r * c + j] * u[r * c + j] }; localG[r * localModels.count + i] = s }
        }
        floatsPerStep += localG.count
        let gathered = try comm.allgatherv(localG)
        var gBeta = [Double](repeating: 0, count: b * k)
        var first = 0
        for part in gathered {
            let m = part.count / max(1, b)
            for r in 0..<b { for i in 0..<m { gBeta[r * k + first + i] = part[r * m + i] } }
            first += m
        }
        var reg = 0.0
        let scale = 1 / (config.scaling * Double(b))
        for r in 0..<b {
            let row = Array(beta[(r * k)..<((r + 1) * k)])
            switch config.regularizer {
            case .paper:
                var rv = 0.0
                for j in 0..<k { rv += row[j] * regularizer[j] }
                reg += rv * rv
                for j in 0..<k { gBeta[r * k + j] += 2 * rv * regularizer[j] * scale }
            case .gram:
                for j in 0..<k {
                    var gj = 0.0
                    for l in 0..<k { gj += regularizer[j * k + l] * row[l] }
                    reg += row[j] * gj
                    gBeta[r * k + j] += 2 * gj * scale
                }
            case .none: break
            }
        }
        reg /= Double(b)
        // Softmax backward, then dW_k = z_kᵀ·dlogits locally and db = column sums.
        var dLogits = [Double](repeating: 0, count: b * k)
        for r in 0..<b {
            var dot = 0.0
            for j in 0..<k { dot += beta[r * k + j] * gBeta[r * k + j] }
            for j in 0..<k { dLogits[r * k + j] = beta[r * k + j] * (gBeta[r * k + j] - dot) }
        }
        let dl = TensorOf<Double>(shape: [b, k], storage: dLogits)
        var gW: [Double] = []
        for z in zs { gW += matmul(z, dl, transA: true).storage }
        var gB = [Double](repeating: 0, count: k)
        for r in 0..<b { for j in 0..<k { gB[j] += dLogits[r * k + j] } }
        return (StepResult(loss: align + reg / config.scaling, align: align, reg: reg), gW, gB)
    }

    /// Loss only (for finite differences in tests).
    func loss(task ti: Int, rows: [Int]) throws -> Double { try lossAndGradients(task: ti, rows: rows).0.loss }

    func perturbWeight(_ i: Int, by h: Double) { weights[i] += h }
    func perturbBias(_ j: Int, by h: Double) { bias[j] += h }

    /// One Adam step on a batch of task `ti`.
    @discardableResult
    public func step(task ti: Int, rows: [Int]) throws -> StepResult {
        let (result, gW, gB) = try lossAndGradients(task: ti, rows: rows)
        step += 1
        let c1 = 1 - pow(config.beta1, Double(step)), c2 = 1 - pow(config.beta2, Double(step))
        let (beta1, beta2, lr, eps) = (config.beta1, config.beta2, config.learningRate, config.eps)
        func adam(_ p: inout [Double], _ m: inout [Double], _ v: inout [Double], _ g: [Double]) {
            p.withUnsafeMutableBufferPointer { p in m.withUnsafeMutableBufferPointer { m in v.withUnsafeMutableBufferPointer { v in
                g.withUnsafeBufferPointer { g in
                    for i in 0..<p.count {
                        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
                        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                        p[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + eps)
                    }
                }
            } } }
        }
        adam(&weights, &mW, &vW, gW)
        adam(&bias, &mB, &vB, gB)
        return result
    }

    /// One epoch: tasks visited round-robin, one single-task batch each, every task's order reshuffled from the seed.
    @discardableResult
    public func trainEpoch() throws -> Double {
        let orders = tasks.enumerated().map { (ti, t) -> [Int] in
            var rng = SeededRNG(seed: config.seed, stream: "portland-epoch-\(epoch)-task-\(ti)")
            return rng.permutation(t.count)
        }
        let batches = tasks.map { ($0.count + config.batchSize - 1) / config.batchSize }
        var total = 0.0, steps = 0
        for bi in 0..<(batches.max() ?? 0) {
            for ti in tasks.indices where bi < batches[ti] {
                let lo = bi * config.batchSize
                total += try step(task: ti, rows: Array(orders[ti][lo..<min(lo + config.batchSize, tasks[ti].count)])).loss
                steps += 1
            }
        }
        epoch += 1
        return total / Double(max(1, steps))
    }

    /// β(x) for every sample of task `ti`, [count, K], identical on every rank.
    public func betas(task ti: Int) throws -> [Double] {
        var out: [Double] = []
        let n = tasks[ti].count
        var lo = 0
        while lo < n {
            let rows = Array(lo..<min(n, lo + 1024))
            out += try betas(gather(tasks[ti], rows), rows: rows.count)
            lo += 1024
        }
        return out
    }

    /// β(x) [count, K] for any inputs, given the local models' features of them ([count, d] each); identical on every rank.
    public func betas(localFeatures: [[Float]], count: Int) throws -> [Double] {
        guard localFeatures.count == localModels.count, localFeatures.allSatisfy({ $0.count == count * width }) else {
            throw PortlandError.invalidInput("features for \(localFeatures.count) local models of \(count) samples do not fit \(localModels.count) models of width \(width)")
        }
        let t = PortlandTask(name: "inputs", headWeight: [Double](repeating: 0, count: width), headBias: [0], labels: [Int](repeating: 0, count: count), features: localFeatures)
        var out: [Double] = []
        var lo = 0
        while lo < count {
            out += try betas(gather(t, Array(lo..<min(count, lo + 1024))), rows: min(count, lo + 1024) - lo)
            lo += 1024
        }
        return out
    }

    /// β̄ per task (`task` mode) and over every task's samples (`global` mode).
    public func meanCoefficients() throws -> (perTask: [[Double]], global: [Double]) {
        let k = totalModels
        var perTask: [[Double]] = []
        var global = [Double](repeating: 0, count: k)
        var total = 0
        for ti in tasks.indices {
            let b = try betas(task: ti)
            let n = tasks[ti].count
            var mean = [Double](repeating: 0, count: k)
            for r in 0..<n { for j in 0..<k { mean[j] += b[r * k + j] } }
            for j in 0..<k { global[j] += mean[j]; mean[j] /= Double(n) }
            perTask.append(mean)
            total += n
        }
        return (perTask, global.map { $0 / Double(total) })
    }

    /// Training state on this rank (local W blocks, bias, Adam moments, counters), for checkpoints.
    public var state: [Double] { [Double(step), Double(epoch)] + weights + bias + mW + vW + mB + vB }

    public func restore(_ s: [Double]) throws {
        let n = weights.count, k = totalModels
        guard s.count == 2 + 3 * n + 3 * k else { throw PortlandError.invalidInput("checkpoint holds \(s.count) values, this Portland needs \(2 + 3 * n + 3 * k)") }
        step = Int(s[0]); epoch = Int(s[1])
        var o = 2
        func take(_ c: Int) -> [Double] { defer { o += c }; return Array(s[o..<(o + c)]) }
        weights = take(n); bias = take(k); mW = take(n); vW = take(n); mB = take(k); vB = take(k)
    }
}

/// The regulariser's inputs from the models' parameters (each rank passes its local models' flat parameter vectors).
public enum PortlandRegularizer {
    /// s_k = Σ_p (θ_k − θ̄)_p in Float64, standardised across models (mean 0, unbiased std 1); the paper's form.
    public static func paperScores(localParameters: [[Float]], localModels: Range<Int>, totalModels: Int, comm: Communicator) throws -> [Double] {
        let mean = try parameterMean(localParameters, localModels: localModels, totalModels: totalModels, comm: comm)
        let local = localParameters.map { p -> Double in
            var s = 0.0
            for i in 0..<p.count { s += Double(p[i]) - mean[i] }
            return s
        }
        let s = try comm.allgatherv(local).flatMap { $0 }
        guard s.count == totalModels else { throw PortlandError.invalidInput("gathered \(s.count) scores for \(totalModels) models") }
        let mu = s.reduce(0, +) / Double(totalModels)
        let variance = totalModels > 1 ? s.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(totalModels - 1) : 0
        let sd = variance.squareRoot()
        return s.map { sd > 0 ? ($0 - mu) / sd : 0 }
    }

    /// G_kl = ⟨θ_k − θ̄, θ_l − θ̄⟩ / P. Each model's offset is broadcast once from its rank: O(K·P) traffic, paid once.
    public static func gram(localParameters: [[Float]], localModels: Range<Int>, totalModels: Int, comm: Communicator) throws -> [Double] {
        let mean = try parameterMean(localParameters, localModels: localModels, totalModels: totalModels, comm: comm)
        let p = mean.count
        let offsets = localParameters.map { v in (0..<p).map { Double(v[$0]) - mean[$0] } }
        var g = [Double](repeating: 0, count: totalModels * totalModels)
        let owners = try comm.allgather([Double(localModels.lowerBound), Double(localModels.count)])
        for r in 0..<comm.size {
            let lo = Int(owners[2 * r]), count = Int(owners[2 * r + 1])
            for j in 0..<count {
                var xi = comm.rank == r ? offsets[j] : [Double](repeating: 0, count: p)
                try comm.broadcast(&xi, root: r)
                for (i, mine) in offsets.enumerated() {
                    var dot = 0.0
                    for q in 0..<p { dot += mine[q] * xi[q] }
                    g[(localModels.lowerBound + i) * totalModels + lo + j] = dot / Double(p)
                }
            }
        }
        try comm.allreduce(&g, op: .sum)
        return g
    }

    static func parameterMean(_ local: [[Float]], localModels: Range<Int>, totalModels: Int, comm: Communicator) throws -> [Double] {
        let contributions = local.enumerated().map { (index: localModels.lowerBound + $0.offset, values: $0.element.map(Double.init)) }
        return try deterministicSum(contributions: contributions, total: totalModels, comm: comm).map { $0 / Double(totalModels) }
    }
}
