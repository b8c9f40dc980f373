import LigandMerge
import LigandNumerics
import LigandZoo

/// Iso-C (Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces",
/// ICML 2025, Eq. 6): per layer weight matrix, the task-arithmetic sum Δ = Σ_k τ_k = UΣVᵀ with its singular values
/// flattened to their mean, σ̄·U·Vᵀ (`LayerTaskVectors.isotropic`); biases, norms and embeddings take the mean task
/// vector; θ = θ_pre + α·that, α chosen on calibration.
public enum IsoC: TaskVectorMerge {
    public static let name = "iso-c"
    public static let summary = "per layer, the summed task vectors with their singular values flattened to the mean; α fitted on calibration"
    public static let paper = "Marczak et al., \"No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces\", ICML 2025"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, CommonParameters.scales]

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        let sum = try c.taskVectorSum(c.experts)
        let delta = try c.layerwise(rest: sum.map { $0 / Double(c.shard.total) }) { t in
            try LayerTaskVectors.isotropic(t.matrix(sum))
        }
        return try c.bestScale(delta)
    }
}
