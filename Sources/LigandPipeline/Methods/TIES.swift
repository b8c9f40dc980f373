import Foundation
import LigandCollective
import LigandZoo

/// TIES-Merging (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023, Sec. 3):
/// trim each task vector to its top-k% magnitudes, elect each coordinate's sign from the sum of the trimmed
/// vectors, average the values agreeing with it (disjoint mean), θ = θ_pre + λ·that; k and λ chosen on calibration.
public enum TIES: TaskVectorMerge {
    public static let name = "ties"
    public static let summary = "task vectors trimmed to their top k%, a sign elected per coordinate, agreeing values averaged, scaled by λ"
    public static let paper = "Yadav et al., \"TIES-Merging\", NeurIPS 2023"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, TaskArithmetic.lambdas, keep]

    /// Percentages of each task vector kept (stored as fractions).
    public static let keep = MethodParameter(
        "ties_k", .numbers(check: { $0 > 0 && $0 <= 100 }, scale: 100), default: .numbers([0.1, 0.2, 0.3]),
        help: "percentages of each task vector kept, to choose from on calibration",
        requirement: "every kept fraction must be a percentage in (0, 100]")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        try search(c, experts: c.experts).outcome
    }

    /// The k × λ grid over `experts` (DARE hands its rescaled experts here).
    static func search(_ c: TaskVectorContext, experts: [[Double]], label: String = "",
                       hyperparameters extra: [String: String] = [:]) throws -> (outcome: TaskVectorOutcome, score: Double) {
        let lambdas = c.parameters.numbers(TaskArithmetic.lambdas), keeps = c.parameters.numbers(keep)
        var best = (keep: keeps[0], lambda: lambdas[0], score: -1.0, delta: [Double]())
        var scores: [String: Double] = [:]
        for k in keeps {
            let delta = try mergedTaskVector(localExperts: experts, pretrained: c.pretrained, isParameter: c.isParameter, keepFraction: k, shard: c.shard)
            for l in lambdas {
                let s = try c.score(c.combine(delta, l))
                scores[label + String(format: "k=%g%%,lambda=%@", 100 * k, MergeRun.formatted(l))] = s
                if s > best.score { best = (k, l, s, delta) }
            }
        }
        var hp = extra
        hp["lambda"] = MergeRun.formatted(best.lambda); hp["k"] = String(format: "%g%%", 100 * best.keep)
        return (TaskVectorOutcome(backbone: c.combine(best.delta, best.lambda), hyperparameters: hp, calibrationScores: scores), best.score)
    }

    /// TIES's merged task vector over experts spread across ranks: each rank trims its experts' task vectors to their
    /// top `keepFraction` by magnitude (ties with the threshold kept), the signs are elected from the deterministic
    /// sum of the trimmed vectors, and the agreeing values are averaged (0 where none agree or the sum is exactly 0).
    public static func mergedTaskVector(localExperts: [[Double]], pretrained: [Double], isParameter: [Bool], keepFraction: Double,
                                        shard: ModelShard) throws -> [Double] {
        let idx = pretrained.indices.filter { isParameter[$0] }
        let keep = max(1, Int((keepFraction * Double(idx.count)).rounded()))
        let trimmed = localExperts.map { e -> [Double] in
            var tau = idx.map { e[$0] - pretrained[$0] }
            let t = tau.map(abs).sorted(by: >)[keep - 1]
            for j in tau.indices where abs(tau[j]) < t { tau[j] = 0 }
            return tau
        }
        let elected = try shard.sum(trimmed)
        let agreeing = trimmed.map { tau -> [Double] in
            var v = [Double](repeating: 0, count: 2 * tau.count)
            for j in tau.indices where tau[j] != 0 && elected[j] != 0 && (tau[j] > 0) == (elected[j] > 0) { v[j] = tau[j]; v[tau.count + j] = 1 }
            return v
        }
        let s = try shard.sum(agreeing)
        var delta = [Double](repeating: 0, count: pretrained.count)
        for (j, p) in idx.enumerated() where s[idx.count + j] > 0 { delta[p] = s[j] / s[idx.count + j] }
        return delta
    }
}
