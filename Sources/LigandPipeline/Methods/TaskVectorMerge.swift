import Foundation
import LigandCollective
import LigandMerge

/// A tasks-suite method that combines the experts' backbones θ_k with the pretrained θ_pre, one expert per rank
/// (or a block); MergeRun.mergeTasks evaluates what it returns.
public protocol TaskVectorMerge: MergeMethod {
    static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome
}

/// The fused backbone (flat, state-dict order), what was chosen, and how every candidate scored on calibration.
public struct TaskVectorOutcome {
    public var backbone: [Double]
    public var hyperparameters: [String: String] = [:]
    public var calibrationScores: [String: Double] = [:]
}

/// This rank's experts, flattened in the backbone's state-dict order (Float64), and the shared machinery.
public final class TaskVectorContext {
    public let shard: ModelShard
    /// This rank's experts' backbones, in shard.local order.
    public let experts: [[Double]]
    public let pretrained: [Double]
    /// The experts' plain average (what `average` returns).
    public let average: [Double]
    /// Which coordinates are parameters (task vectors cover those; BN running statistics are averaged instead).
    public let isParameter: [Bool]
    public let parameters: ParameterValues
    public let seed: UInt64
    let scoreOnCalibration: ([Double]) throws -> Double

    init(shard: ModelShard, experts: [[Double]], pretrained: [Double], average: [Double], isParameter: [Bool], parameters: ParameterValues,
         seed: UInt64, score: @escaping ([Double]) throws -> Double) {
        self.shard = shard; self.experts = experts; self.pretrained = pretrained; self.average = average; self.isParameter = isParameter
        self.parameters = parameters; self.seed = seed; self.scoreOnCalibration = score
    }

    /// Mean calibration accuracy over the tasks of a fused backbone (each task read through its own head).
    public func score(_ backbone: [Double]) throws -> Double { try scoreOnCalibration(backbone) }

    /// Σ_k τ_k = Σ_k (θ_k − θ_pre) over every expert, rank-count independent (`TaskVectors.sum`).
    public func taskVectorSum(_ localExperts: [[Double]]) throws -> [Double] {
        try TaskVectors.sum(localExperts, pretrained: pretrained, shard: shard)
    }

    /// θ_pre + λ·delta on parameters, the experts' average on running statistics (`TaskVectors.combine`).
    public func combine(_ delta: [Double], _ lambda: Double) -> [Double] {
        TaskVectors.combine(pretrained: pretrained, delta: delta, lambda: lambda, isParameter: isParameter, average: average)
    }

    /// The λ (of `lambdas`) whose θ_pre + λ·delta scores best on calibration; the first among equals.
    public func bestLambda(_ delta: [Double], lambdas: [Double], label: (Double) -> String,
                           scores: inout [String: Double]) throws -> (lambda: Double, score: Double) {
        var best = (lambda: lambdas[0], score: -1.0)
        for l in lambdas {
            let s = try score(combine(delta, l))
            scores[label(l)] = s
            if s > best.score { best = (l, s) }
        }
        return best
    }
}
