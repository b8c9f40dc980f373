import Foundation
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics
import LigandZoo

/// AdaMerging, layer-wise (Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024,
/// Eq. 4 and 6): θ_l = θ_pre,l + Σ_k λ_k,l·τ_k,l with one coefficient per (task, parameter tensor), clamped to [0, 1] and
/// learned by Adam on L(λ) = Σ_t mean_x H(softmax(h_t(f_θ(x)))) over a batch of task t's calibration images (labels
/// unused). ∂L/∂λ_k,l = ⟨∂L/∂θ_l, τ_k,l⟩: each rank runs Ligand's backward pass for the tasks it holds (BatchNorm frozen at
/// the experts' averaged running statistics), the gradients are summed (`shard.sum`), each expert's inner products are
/// taken on the rank that holds it and gathered, and every rank takes the same Adam step.
public enum AdaMerging: TaskVectorMerge {
    public static let name = "adamerging"
    public static let summary = "layer-wise AdaMerging: one coefficient per task and layer, learned by minimising the prediction entropy on unlabelled calibration images"
    public static let paper = "Yang et al., \"AdaMerging: Adaptive Model Merging for Multi-Task Learning\", ICLR 2024"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, steps, lr, batch, prior]

    public static let steps = MethodParameter(
        "adamerging_steps", .integer(min: 0), default: .integer(500),
        help: "Adam steps on the coefficients (the paper's 500), each on one batch of every task", requirement: "must be non-negative")
    public static let lr = MethodParameter(
        "adamerging_lr", .number(check: { $0.isFinite && $0 > 0 }), default: .numbers([1e-3]),
        help: "Adam step size on the coefficients (the paper's 1e-3)", requirement: "must be finite and > 0")
    public static let batch = MethodParameter(
        "adamerging_batch", .integer(min: 1), default: .integer(16),
        help: "unlabelled calibration images per task and step (the paper's 16; at least the calibration size: all of them)",
        requirement: "must be positive")
    public static let prior = MethodParameter(
        "adamerging_prior", .number(check: { $0.isFinite && $0 >= 0 && $0 <= 1 }), default: .numbers([0.3]),
        help: "every coefficient's starting value (the paper's 0.3)", requirement: "must be in [0, 1]")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        guard let data = c.taskData else { throw PipelineError("adamerging needs each task's calibration images; run it with `ligand merge` on a tasks suite") }
        let n = c.parameters.integer(steps) ?? 500, rate = c.parameters.number(lr), size = c.parameters.integer(batch) ?? 16
        let start = c.parameters.number(prior)
        let layers = c.tensors.filter { $0.count > 0 && c.isParameter[$0.offset] }
        let byName = Dictionary(uniqueKeysWithValues: layers.map { ($0.name, $0) })
        let width = layers.count, total = c.pretrained.count, local = Array(c.shard.local)
        // λ_k,l at [k·width + l], the same on every rank.
        var lambda = [Double](repeating: start, count: c.shard.total * width)
        func clamped(_ x: Double) -> Double { min(max(x, 0), 1) }

        /// θ_pre + Σ_k clamp(λ_k,l)·τ_k,l on parameters, the experts' average on running statistics.
        func backbone() throws -> [Double] {
            let parts = zip(local, c.experts).map { k, e -> [Double] in
                var v = [Double](repeating: 0, count: total)
                for (l, t) in layers.enumerated() {
                    let w = clamped(lambda[k * width + l])
                    for j in t.offset..<(t.offset + t.count) { v[j] = w * (e[j] - c.pretrained[j]) }
                }
                return v
            }
            return c.combine(try c.shard.sum(parts), 1)
        }
        /// ∂L/∂λ (zero where the clamp is flat) and L on step `s`'s batches, every task's batch drawn from (seed, s, task).
        func gradient(step s: Int) throws -> (grad: [Double], entropy: Double) {
            let theta = try backbone()
            let perTask = try local.map { t -> [Double] in
                let net = try data.network(t, theta)
                for bn in net.batchNorms { bn.frozen = true }
                let images = data.calibration(t)
                var rng = SeededRNG(seed: c.seed, stream: "adamerging/\(s)/\(t)")
                let rows = size >= images.count ? Array(0..<images.count) : Array(rng.permutation(images.count).prefix(size))
                net.zeroGrad()
                let (h, dLogits) = Loss.entropy(net.forward(images.subset(rows).tensor(), training: true))
                net.backwardParameters(dLogits)
                // [∂H_t/∂θ in the backbone's flat order, H_t]; the head's gradient is not the backbone's.
                var g = [Double](repeating: 0, count: total + 1)
                for p in net.parameters {
                    guard let t = byName[p.name] else { continue }
                    p.grad.withUnsafeBufferPointer { d in for j in 0..<t.count { g[t.offset + j] = Double(d[j]) } }
                }
                g[total] = h
                return g
            }
            let sum = try c.shard.sum(perTask)
            let mine = zip(local, c.experts).map { k, e in
                layers.enumerated().map { l, t -> Double in
                    let x = lambda[k * width + l]
                    guard x >= 0, x <= 1 else { return 0 }
                    var d = 0.0
                    for j in t.offset..<(t.offset + t.count) { d += sum[j] * (e[j] - c.pretrained[j]) }
                    return d
                }
            }
            return (try c.shard.gather(mine).flatMap { $0 }, sum[total])
        }

        let initial = try c.score(try backbone())
        var adam = Adam(count: lambda.count, lr: rate)
        var firstGradient: [Double] = []
        let started = Date()
        for s in 0..<n {
            let (g, h) = try gradient(step: s)
            if s == 0 { firstGradient = g }
            if s % 50 == 0 || s == n - 1 {
                data.log(String(format: "adamerging: step %d/%d, entropy %.4f, %.0f s", s + 1, n, h, Date().timeIntervalSince(started)))
            }
            adam.step(&lambda, g)
        }
        let fused = try backbone()
        let score = try c.score(fused)
        let used = lambda.map(clamped)
        var outcome = TaskVectorOutcome(
            backbone: fused,
            hyperparameters: ["adamerging_steps": "\(n)", "adamerging_lr": MergeRun.formatted(rate), "adamerging_batch": "\(size)",
                              "adamerging_prior": MergeRun.formatted(start),
                              "mean_lambda": String(format: "%.3f", used.reduce(0, +) / Double(max(1, used.count)))],
            calibrationScores: ["prior": initial, "adamerging": score])
        let shape = [c.shard.total, width]
        outcome.diagnostics = [("lambda", shape, used)] + (firstGradient.isEmpty ? [] : [("gradient", shape, firstGradient)])
        outcome.diagnosticsMetadata = ["ligand.layers": layers.map(\.name).joined(separator: ",")]
        return outcome
    }
}
