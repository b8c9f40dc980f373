import LigandNeuLig
import LigandZoo

/// NeuLig (Li, Yu, Wang, "Multi-Level Collaboration in Model Merging", arXiv 2503.01268, Sec. 3, Eq. 6-9): a Portland
/// (one linear layer + softmax over the K models' concatenated features) learns β(x) so that the β-weighted model
/// behaves like the ensemble; fused θ = Σ_k β̄_k θ_k per task (`task` mode) or one β̄ for all (`global`). NeuLigRun.
public enum NeuLig: MergeMethod {
    public static let name = "neulig"
    public static let summary = "a Portland (linear layer + softmax over the K models' features) learns per-input merge coefficients β(x) so the β-weighted model behaves like the ensemble; fused θ = Σ_k β̄_k θ_k per task (task mode) or one β̄ for all (global)"
    public static let paper = "Li, Yu, Wang, \"Multi-Level Collaboration in Model Merging\", arXiv 2503.01268 (ICCV 2025)"
    public static let accepts: Set<SuiteKind> = [.tasks, .seeds, .splits]
    public static let family = MethodFamily.neulig
    public static let usesSeed = true
    public static let parameters = [
        CommonParameters.calibrationSamples, loss, regularizer, featureNorm, scaling, lr, batchSize, epochs, checkpointEvery,
        baselines, batchMode, fastSums, TaskArithmetic.lambdas, TIES.keep,
        CommonParameters.align, CommonParameters.reference, CCA.gammas, CommonParameters.bnSamples,
    ]

    private static let defaults = PortlandConfig()
    public static let loss = MethodParameter(
        "loss", .choice(AlignLoss.allCases.map(\.rawValue)), default: .text(defaults.loss.rawValue),
        help: "Portland alignment loss: sup (labels), semi (entropy) or ensemble (KL to the prediction ensemble)", requirement: "")
    public static let regularizer = MethodParameter(
        "regularizer", .choice(RegularizerKind.allCases.map(\.rawValue)), default: .text(defaults.regularizer.rawValue),
        help: "Portland regulariser: paper (standardised parameter sums), gram (⟨θ_k−θ̄, θ_l−θ̄⟩) or none", requirement: "")
    public static let featureNorm = MethodParameter(
        "feature_norm", .choice(FeatureNorm.allCases.map(\.rawValue)), default: .text(defaults.featureNorm.rawValue),
        help: "Portland input: standard (z-scores per model and feature) or none (raw features, as in the paper)", requirement: "")
    public static let scaling = MethodParameter(
        "scaling", .number(check: { $0 > 0 }), default: .numbers([defaults.scaling]),
        help: "the regulariser is divided by this", requirement: "must be positive")
    public static let lr = MethodParameter(
        "lr", .number(check: { $0 > 0 }), default: .numbers([defaults.learningRate]),
        help: "Adam learning rate of the Portland", requirement: "must be positive")
    public static let batchSize = MethodParameter(
        "batch_size", .integer(min: 1), default: .integer(defaults.batchSize),
        help: "Portland batch size (one task per batch, tasks round-robin)", requirement: "must be positive")
    public static let epochs = MethodParameter(
        "epochs", .integer(min: 1), default: .integer(defaults.epochs),
        help: "Portland epochs (an untrained Portland fuses nothing, so at least 1)", requirement: "must be at least 1")
    public static let checkpointEvery = MethodParameter(
        "checkpoint_every", .integer(min: 0), default: .integer(50),
        help: "save a checkpoint every N epochs (0: never); a rerun of the same command resumes from it", requirement: "must be non-negative")
    public static let baselines = MethodParameter(
        "baselines", .flag, default: .flag(true),
        help: "tasks suites: also run the baselines (pretrained, averaging, task arithmetic, TIES); --no-baselines skips them", requirement: "")
    public static let batchMode = MethodParameter(
        "batch_mode", .flag, default: .flag(false),
        help: "also report the paper's batch mode: a model merged per evaluation batch from its first sample's β", requirement: "")
    public static let fastSums = MethodParameter(
        "fast_sums", .flag, default: .flag(false),
        help: "sum over models with a plain allreduce instead of the rank-count-independent reduction (faster; results then depend on -np)", requirement: "")

    /// The Portland's configuration from the parameters and the run's seed.
    public static func portland(_ p: ParameterValues, seed: UInt64) -> PortlandConfig {
        var c = PortlandConfig()
        c.loss = p.choice(loss)!; c.regularizer = p.choice(regularizer)!; c.featureNorm = p.choice(featureNorm)!
        c.scaling = p.number(scaling); c.learningRate = p.number(lr)
        c.batchSize = p.integer(batchSize)!; c.epochs = p.integer(epochs)!
        c.seed = seed; c.deterministic = !p.flag(fastSums)
        return c
    }
}
