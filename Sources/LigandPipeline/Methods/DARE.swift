import LigandCollective
import LigandNumerics
import LigandZoo

/// DARE (Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch",
/// ICML 2024, Eq. 2): each task vector entry dropped with probability p and the survivors rescaled,
/// τ̂_k = m_k ⊙ τ_k / (1 − p) with m_k ~ Bernoulli(1 − p); then task arithmetic (or TIES) on the τ̂_k. p, λ (and k)
/// chosen on calibration. Expert k's mask comes from its own seeded stream, so results do not depend on the ranks.
public enum DARE: TaskVectorMerge {
    public static let name = "dare"
    public static let summary = "each task-vector entry dropped with probability p, survivors rescaled by 1/(1−p), then task arithmetic or TIES; p and λ fitted on calibration"
    public static let paper = "Yu et al., \"Language Models are Super Mario\", ICML 2024"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let usesSeed = true
    public static let parameters = [CommonParameters.calibrationSamples, drop, then, TaskArithmetic.lambdas, TIES.keep]

    public static let drop = MethodParameter(
        "drop", .numbers(check: { $0 >= 0 && $0 < 1 }, scale: 1), default: .numbers([0.1, 0.3, 0.5, 0.7, 0.9]),
        help: "drop probabilities p of each task-vector entry to choose from on calibration",
        requirement: "every drop probability must be in [0, 1)")
    public static let then = MethodParameter(
        "then", .choice([TaskArithmetic.name, TIES.name]), default: .text(TaskArithmetic.name),
        help: "how the rescaled task vectors are combined: task-arithmetic or ties", requirement: "")

    /// θ_pre + m ⊙ (θ_k − θ_pre)/(1 − p) on parameters (running statistics untouched), model `index`'s own stream.
    public static func rescaled(_ expert: [Double], pretrained: [Double], isParameter: [Bool], p: Double, seed: UInt64, index: Int) -> [Double] {
        var rng = SeededRNG(seed: seed, stream: "dare-\(index)-\(p)")
        var out = expert
        for j in out.indices where isParameter[j] {
            out[j] = rng.uniform() < p ? pretrained[j] : pretrained[j] + (expert[j] - pretrained[j]) / (1 - p)
        }
        return out
    }

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        var best: (outcome: TaskVectorOutcome, score: Double)?
        var scores: [String: Double] = [:]
        for p in c.parameters.numbers(drop) {
            let experts = zip(c.shard.local, c.experts).map { i, e in rescaled(e, pretrained: c.pretrained, isParameter: c.isParameter, p: p, seed: c.seed, index: i) }
            let label = "p=\(MergeRun.formatted(p)),"
            let search = c.parameters.text(then) == TIES.name ? TIES.search : TaskArithmetic.search
            let candidate = try search(c, experts, label, ["p": MergeRun.formatted(p)])
            scores.merge(candidate.outcome.calibrationScores) { a, _ in a }
            if best == nil || candidate.score > best!.score { best = candidate }
        }
        var out = best!.outcome
        out.calibrationScores = scores
        out.hyperparameters["then"] = c.parameters.text(then)
        return out
    }
}
