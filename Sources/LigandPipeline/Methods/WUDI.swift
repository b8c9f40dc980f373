import LigandMerge
import LigandNumerics
import LigandZoo

/// WUDI (Cheng et al., "Whoever Started the Interference Should End It: Guiding Data-Free Model Merging via Task
/// Vectors", ICML 2025, Eq. 11): per layer weight matrix, the merged task vector τ minimising
/// Σ_k ‖(τ − τ_k)·τ_kᵀ‖²_F / ‖τ_k‖²_F (each task vector's rows stand in for its task's layer inputs), by the paper's Adam
/// steps from the task-arithmetic sum; each rank sums its experts' quadratic terms (`LayerTaskVectors.interferenceTerms`),
/// every rank takes the same steps on the total. Biases, norms and embeddings keep the sum Σ_k τ_k, as the reference
/// code does; θ = θ_pre + α·τ, α chosen on calibration (the paper adds τ as is: α = 1 is in the grid). Data-free.
public enum WUDI: TaskVectorMerge {
    public static let name = "wudi"
    public static let summary = "per layer, the task vector minimising Σ_k ‖(τ − τ_k)τ_kᵀ‖² / ‖τ_k‖² by Adam from the summed task vectors; data-free, α fitted on calibration"
    public static let paper = "Cheng et al., \"Whoever Started the Interference Should End It\", ICML 2025"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, CommonParameters.scales, steps, lr]

    public static let steps = MethodParameter(
        "wudi_steps", .integer(min: 0), default: .integer(300),
        help: "Adam steps per layer (the paper's 300)", requirement: "must be non-negative")
    public static let lr = MethodParameter(
        "wudi_lr", .number(check: { $0.isFinite && $0 > 0 }), default: .numbers([1e-5]),
        help: "Adam step size (the paper's 1e-5)", requirement: "must be finite and > 0")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        let n = c.parameters.integer(steps) ?? 300, rate = c.parameters.number(lr)
        let sum = try c.taskVectorSum(c.experts)
        let delta = try c.layerwise(rest: sum) { t in
            let terms = try c.shard.sum(c.experts.map { LayerTaskVectors.interferenceTerms(c.taskVector($0, t)) })
            let start = t.matrix(sum)
            return LayerTaskVectors.wudi(start: start, terms: terms, steps: n, lr: rate)
        }
        return try c.bestScale(delta, hyperparameters: ["wudi_steps": "\(n)", "wudi_lr": MergeRun.formatted(rate)])
    }
}
