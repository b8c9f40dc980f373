import Foundation
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics

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
    /// What the hidden `--dump-calibration` also writes (as `<method>.safetensors`, Float64) for the Python checks.
    public var diagnostics: [(name: String, shape: [Int], values: [Double])] = []
    public var diagnosticsMetadata: [String: String] = [:]
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
    /// The backbone's tensors in flat order: what a per-layer method (TSV-M, Iso-C, WUDI) reads as matrices.
    public let tensors: [FlatTensor]
    public let parameters: ParameterValues
    public let seed: UInt64
    /// Each expert's network and its task's calibration images, where the run has them (`ligand merge` on a tasks
    /// suite; not the task-arithmetic baselines inside other methods' runs).
    public internal(set) var taskData: TaskData?
    let scoreOnCalibration: ([Double]) throws -> Double

    init(shard: ModelShard, experts: [[Double]], pretrained: [Double], average: [Double], layout: FlatLayout, parameters: ParameterValues,
         seed: UInt64, score: @escaping ([Double]) throws -> Double) {
        self.shard = shard; self.experts = experts; self.pretrained = pretrained; self.average = average
        isParameter = TaskVectors.parameterMask(layout.entries)
        tensors = layout.tensors
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

    /// Expert `e`'s task vector on one tensor as a rows × cols matrix (a convolution's kernel as out × in·kh·kw).
    public func taskVector(_ e: [Double], _ t: FlatTensor) -> Matrix {
        Matrix(rows: t.rows, cols: t.cols, data: (t.offset..<(t.offset + t.count)).map { e[$0] - pretrained[$0] })
    }

    /// A merged task vector built tensor by tensor: `matrix(t)` on every layer weight matrix, `rest` (a flat vector,
    /// e.g. the mean task vector) on biases, norms, embeddings; zero on running statistics (`combine` averages those).
    public func layerwise(rest: [Double], matrix: (FlatTensor) throws -> Matrix) rethrows -> [Double] {
        var delta = [Double](repeating: 0, count: pretrained.count)
        for t in tensors where t.count > 0 && isParameter[t.offset] {
            if t.isMatrix {
                let m = try matrix(t)
                precondition(m.rows == t.rows && m.cols == t.cols, "\(t.name): merged \(m.rows)×\(m.cols), expected \(t.rows)×\(t.cols)")
                for j in 0..<t.count { delta[t.offset + j] = m.data[j] }
            } else {
                for j in t.offset..<(t.offset + t.count) { delta[j] = rest[j] }
            }
        }
        return delta
    }

    /// The scale α (of the `scales` parameter) whose θ_pre + α·delta scores best on calibration, with the outcome.
    public func bestScale(_ delta: [Double], hyperparameters extra: [String: String] = [:]) throws -> TaskVectorOutcome {
        var scores: [String: Double] = [:]
        let best = try bestLambda(delta, lambdas: parameters.numbers(CommonParameters.scales),
                                  label: { "alpha=\(MergeRun.formatted($0))" }, scores: &scores)
        var hp = extra
        hp["alpha"] = MergeRun.formatted(best.lambda)
        return TaskVectorOutcome(backbone: combine(delta, best.lambda), hyperparameters: hp, calibrationScores: scores)
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

/// What a data-using task-vector method (Fisher merging) reads: expert i (a model index) as a network, given its flat
/// backbone, and task i's calibration images.
public struct TaskData {
    public let network: (_ model: Int, _ backbone: [Double]) throws -> Network<Float>
    public let calibration: (_ model: Int) -> LabeledImages
    /// Progress lines for long per-expert work (quiet runs and other ranks: nothing).
    public let log: (String) -> Void
}

/// One tensor of a flattened backbone: where it sits and, for a layer weight, the matrix a per-layer method reads.
public struct FlatTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// A linear layer's weight [out, in] or a convolution's [out, in, kh, kw] (read as out × in·kh·kw); biases, norms,
    /// the class token and position embedding are not (the papers merge those by the mean of the task vectors).
    public var isMatrix: Bool { shape.count >= 2 && name.hasSuffix(".weight") && count > 0 }
    public var rows: Int { isMatrix ? shape[0] : 1 }
    public var cols: Int { isMatrix ? count / shape[0] : count }

    /// This tensor's slice of a flat vector (e.g. the summed task vectors) as a rows × cols matrix.
    public func matrix(_ flat: [Double]) -> Matrix {
        Matrix(rows: rows, cols: cols, data: Array(flat[offset..<(offset + count)]))
    }
}
