import LigandZoo

/// Progressive least-squares fusion (this project, docs/fusion.md): layer by layer from the input, the ridge least
/// squares W = argmin Σ_k ‖W X̃_k − W_k X_k‖² + ρ‖W − W̄‖² mapping the FUSED network's inputs X̃_k to each expert's
/// own pre-activations; label-free, one model for every task (FusionRun).
public enum Progressive: MergeMethod {
    public static let name = "progressive"
    public static let summary = "ours: layer by layer from the input, the ridge least squares that maps the fused network's inputs to each expert's own pre-activations; label-free, one model for every task"
    public static let paper = "this project (docs/fusion.md)"
    public static let accepts: Set<SuiteKind> = [.tasks, .seeds, .splits]
    public static let family = MethodFamily.leastSquares
    public static let parameters = leastSquares

    public static let ridges = MethodParameter(
        "ridges", .numbers(check: { $0 >= 0 }, scale: 1), default: .numbers([1e-4, 1e-3, 1e-2, 1e-1]),
        help: "ridges relative to the mean diagonal of the Gram matrix to choose from on calibration",
        requirement: "every ridge must be finite and ≥ 0 (it is relative to the mean diagonal of the Gram matrix)")

    /// What the least-squares fusions take: their ridge and selection split, and an optional alignment first (multi-level).
    static let leastSquares = [CommonParameters.calibrationSamples, ridges, CommonParameters.selectionSamples, TaskArithmetic.lambdas,
                               CommonParameters.align, CommonParameters.reference, CCA.gammas, CommonParameters.bnSamples, CommonParameters.batchNorm]
}
