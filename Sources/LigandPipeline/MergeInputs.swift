import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNN
import LigandNumerics
import LigandZoo

/// What a same-task merge (seeds or splits suite) works on; `load` is called only for this rank's models.
public struct SameTaskInputs {
    public var suite: String
    public var suiteKind: String
    public var names: [String]
    public var architectures: [Architecture]
    public var load: (Int) throws -> Network<Float>
    public var calibration: LabeledImages
    public var test: LabeledImages
    /// BatchNorm re-estimation images (the training split).
    public var train: LabeledImages
    /// Where model i's logits on a split of n images are cached (nil: not cached); only for immutable model files.
    public var logitsCache: ((_ model: Int, _ split: String, _ count: Int) -> URL)?

    public init(suite: String, suiteKind: String = "seeds", names: [String], architectures: [Architecture], load: @escaping (Int) throws -> Network<Float>,
                calibration: LabeledImages, test: LabeledImages, train: LabeledImages) {
        self.suite = suite; self.suiteKind = suiteKind; self.names = names; self.architectures = architectures; self.load = load
        self.calibration = calibration; self.test = test; self.train = train
    }
}

/// What a multi-task merge works on: experts (local ones loaded by `load`), every task's frozen head, the pretrained backbone.
public struct TasksInputs {
    public var suite: String
    public var tasks: [String]
    public var architectures: [Architecture]
    public var load: (Int) throws -> Network<Float>
    public var heads: [(weight: Tensor, bias: Tensor)]
    public var pretrained: Network<Float>
    public var calibration: [LabeledImages]
    public var test: [LabeledImages]
    /// What the experts, the pretrained model and the test sets are, for the run's Evaluator (nil: nothing shared).
    public var keys: TasksKeys?

    public init(suite: String, tasks: [String], architectures: [Architecture], load: @escaping (Int) throws -> Network<Float>,
                heads: [(weight: Tensor, bias: Tensor)], pretrained: Network<Float>, calibration: [LabeledImages], test: [LabeledImages]) {
        self.suite = suite; self.tasks = tasks; self.architectures = architectures; self.load = load; self.heads = heads
        self.pretrained = pretrained; self.calibration = calibration; self.test = test
    }
}

/// A merge's outcome on every rank: the report and the fused tensors (identical on every rank).
public struct MergeResult {
    public var report: MergeReport
    /// Same task: the fused network. Tasks: nil (see `backbone`).
    public var fused: Network<Float>?
    /// Tasks: the fused backbone in state-dict order.
    public var backbone: [(name: String, value: Tensor)]
    public var heads: [(task: String, weight: Tensor, bias: Tensor)]
    /// Same task: this rank's models (its blockRange) as they were averaged: aligned into the reference's space by
    /// weight matching, permute or CCA (at the chosen γ), unchanged for average. NeuLig's multi-level mode fuses these.
    public var alignedLocal: [StateDict] = []
}
