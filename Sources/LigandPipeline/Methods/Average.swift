import LigandZoo

/// Weight averaging: θ = (1/K) Σ_k θ_k (Wortsman et al., "Model soups", ICML 2022, uniform soup), summed in
/// Float64 in model order. On a same-task suite the models are averaged as trained (no alignment).
public enum Average: SameTaskAlignment, TaskVectorMerge {
    public static let name = "average"
    public static let summary = "plain weight averaging θ = (1/K) Σ_k θ_k"
    public static let paper = "Wortsman et al., \"Model soups\", ICML 2022"
    public static let accepts: Set<SuiteKind> = [.tasks, .seeds, .splits]
    public static let family = MethodFamily.alignment
    public static let parameters = [CommonParameters.calibrationSamples, CommonParameters.bnSamples, CommonParameters.batchNorm]

    public static func align(_ c: AlignmentContext) throws -> AlignmentOutcome {
        AlignmentOutcome(fused: c.averaged, aligned: c.states)
    }

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome { TaskVectorOutcome(backbone: c.average) }
}
