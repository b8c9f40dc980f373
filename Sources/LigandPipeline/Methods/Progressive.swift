import LigandZoo

/// Progressive least-squares fusion (this project, docs/fusion.md): layer by layer from the input, the ridge least
/// squares W = argmin Σ_k ‖W X̃_k − W_k X_k‖² + ρ‖W − W̄‖² mapping the FUSED network's inputs X̃_k to each expert's
/// own pre-activations; label-free, one model for every task (FusionRun). On a tasks suite W̄ is by default Iso-C's
/// layer (Marczak et al., ICML 2025): the spectral merge is the prior, the least squares the correction the data
/// asks for; ρ, chosen on calibration, sets how far it may move (a tiny ρ: the plain least squares; ρ = ∞ in the
/// default grid: the prior itself).
public enum Progressive: MergeMethod {
    public static let name = "progressive"
    public static let summary = "ours: layer by layer from the input, the ridge least squares that maps the fused network's inputs to each expert's own pre-activations; label-free, one model for every task"
    public static let paper = "this project (docs/fusion.md)"
    public static let accepts: Set<SuiteKind> = [.tasks, .seeds, .splits]
    public static let family = MethodFamily.leastSquares
    public static let parameters = leastSquares + [perLayerRidge, start, CommonParameters.scales]

    public static let perLayerRidge = MethodParameter(
        "per_layer_ridge", .flag, default: .flag(false),
        help: "choose each layer's ridge in turn on calibration (the later layers still the start's) instead of one ridge for every layer",
        requirement: "must be true or false", tag: "per-layer ridge")

    public static let start = MethodParameter(
        "progressive_start", .choice(["average", "task-arithmetic", "tsv-m", "iso-c"]), default: .text("iso-c"),
        help: "tasks suites: the merge each layer is regularised toward (ρ‖W − W̄‖²): the experts' mean, or that data-free merge with its own α or λ chosen on calibration (seeds and splits suites: always the mean)",
        requirement: "must be average, task-arithmetic, tsv-m or iso-c", tag: "start")

    public static let ridges = MethodParameter(
        "ridges", .numbers(check: { $0 >= 0 }, scale: 1), default: .numbers([1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 30, 100, .infinity]),
        help: "ridges relative to the mean diagonal of the Gram matrix, pulling toward the prior, to choose from on calibration (inf: the prior itself)",
        requirement: "every ridge must be ≥ 0 (it is relative to the mean diagonal of the Gram matrix; inf: the prior itself)",
        acceptsInfinity: true)

    /// What the least-squares fusions take: their ridge and selection split, and an optional alignment first (multi-level).
    static let leastSquares = [CommonParameters.calibrationSamples, ridges, CommonParameters.selectionSamples, TaskArithmetic.lambdas,
                               CommonParameters.align, CommonParameters.reference, CCA.gammas, CommonParameters.bnSamples, CommonParameters.batchNorm]
}
