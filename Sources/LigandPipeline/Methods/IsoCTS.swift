import LigandMerge
import LigandNumerics
import LigandZoo

/// Iso-CTS (Marczak et al., "No Task Left Behind", ICML 2025, Sec. 4.2, Eq. 8-11): per layer weight matrix, the top
/// singular directions of the summed task vectors Σ_k τ_k form a common subspace (a `common_fraction` of the rank);
/// each task vector with that subspace projected out gives its top directions in the rest of the rank (on the rank
/// that holds the expert, then gathered); all are stacked, orthogonalised and their spectrum flattened to its mean
/// (`LayerTaskVectors.isoCTSMerge`); biases, norms and embeddings take the mean task vector; θ = θ_pre + α·that.
public enum IsoCTS: TaskVectorMerge {
    public static let name = "iso-cts"
    public static let summary = "Iso-C on a common subspace of the summed task vectors plus each task's own top directions outside it; α fitted on calibration"
    public static let paper = "Marczak et al., \"No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces\", ICML 2025"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, CommonParameters.scales, commonFraction]

    public static let commonFraction = MethodParameter(
        "common_fraction", .number(check: { $0 >= 0 && $0 <= 1 }), default: .numbers([0.8]),
        help: "share of each layer's rank given to the common subspace of the summed task vectors (the paper's 0.8)",
        requirement: "must be in [0, 1]")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        let k = c.shard.total, fraction = c.parameters.number(commonFraction)
        let sum = try c.taskVectorSum(c.experts)
        let delta = try c.layerwise(rest: sum.map { $0 / Double(k) }) { t in
            let d = LayerTaskVectors.isoCTSDimensions(rows: t.rows, cols: t.cols, tasks: k, fraction: fraction)
            let common = try LayerTaskVectors.Factors(t.matrix(sum), rank: d.common)
            let local = try c.experts.map { try LayerTaskVectors.taskSpecific(c.taskVector($0, t), common: common.u, rank: d.perTask).packed }
            let specific = try c.shard.gather(local).map { LayerTaskVectors.Factors(packed: $0, rows: t.rows, cols: t.cols)! }
            return try LayerTaskVectors.isoCTSMerge(specific: specific, common: common, rows: t.rows, cols: t.cols)
        }
        return try c.bestScale(delta, hyperparameters: ["common_fraction": MergeRun.formatted(fraction)])
    }
}
