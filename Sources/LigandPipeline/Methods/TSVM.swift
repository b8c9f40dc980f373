import LigandMerge
import LigandNumerics
import LigandZoo

/// TSV-M (Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model Merging", CVPR 2025, Eq. 9):
/// per layer weight matrix, each task vector's top ⌊min(m, n)/K⌋ singular triples (computed on the rank that holds the
/// expert, then gathered), the stacked singular vectors orthogonalised across tasks, Δ = P_U·Σ·P_V
/// (`LayerTaskVectors.tsvMerge`); biases, norms and embeddings take the mean task vector; θ = θ_pre + α·Δ, α chosen on
/// calibration (the paper's α = 1 is in the default grid).
public enum TSVM: TaskVectorMerge {
    public static let name = "tsv-m"
    public static let summary = "per layer, each task vector's top 1/K of singular vectors, orthogonalised across tasks and summed; α fitted on calibration"
    public static let paper = "Gargiulo et al., \"Task Singular Vectors: Reducing Task Interference in Model Merging\", CVPR 2025"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, CommonParameters.scales]

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        let k = c.shard.total
        let mean = try c.taskVectorSum(c.experts).map { $0 / Double(k) }
        let delta = try c.layerwise(rest: mean) { t in
            let r = LayerTaskVectors.tsvRank(rows: t.rows, cols: t.cols, tasks: k)
            let local = try c.experts.map { try LayerTaskVectors.Factors(c.taskVector($0, t), rank: r).packed }
            let all = try c.shard.gather(local).map { LayerTaskVectors.Factors(packed: $0, rows: t.rows, cols: t.cols)! }
            return try LayerTaskVectors.tsvMerge(all, rows: t.rows, cols: t.cols)
        }
        return try c.bestScale(delta)
    }
}
