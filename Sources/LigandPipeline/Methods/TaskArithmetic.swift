import LigandZoo

/// Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023, Eq. 1):
/// θ = θ_pre + λ Σ_k (θ_k − θ_pre), λ chosen on calibration; BN running statistics averaged.
public enum TaskArithmetic: TaskVectorMerge {
    public static let name = "task-arithmetic"
    public static let summary = "θ_pre + λ Σ_k (θ_k − θ_pre), λ fitted on calibration"
    public static let paper = "Ilharco et al., \"Editing Models with Task Arithmetic\", ICLR 2023"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, lambdas]

    /// The λ grid: 0.05, 0.1, …, 1 (task arithmetic, TIES, DARE, and NeuLig's baselines).
    public static let lambdas = MethodParameter(
        "lambdas", .numbers(check: { _ in true }, scale: 1), default: .numbers(Evaluation.taskArithmeticLambdas),
        help: "scaling coefficients λ of the summed task vectors to choose from on calibration",
        requirement: "every λ must be finite")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        try search(c, experts: c.experts).outcome
    }

    /// The λ grid over `experts` (DARE hands its rescaled experts here).
    static func search(_ c: TaskVectorContext, experts: [[Double]], label: String = "",
                       hyperparameters extra: [String: String] = [:]) throws -> (outcome: TaskVectorOutcome, score: Double) {
        let delta = try c.taskVectorSum(experts)
        var scores: [String: Double] = [:]
        let best = try c.bestLambda(delta, lambdas: c.parameters.numbers(lambdas), label: { label + "lambda=\(MergeRun.formatted($0))" }, scores: &scores)
        var hp = extra
        hp["lambda"] = MergeRun.formatted(best.lambda)
        return (TaskVectorOutcome(backbone: c.combine(delta, best.lambda), hyperparameters: hp, calibrationScores: scores), best.score)
    }
}
