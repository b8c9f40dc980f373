import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNN
import LigandNumerics
import LigandZoo

/// A merge's inputs and settings other than the method's own parameters (which `parameters` holds, as the
/// method's file declares them).
public struct MergeOptions {
    public var method: any MergeMethod.Type
    public var parameters = ParameterValues()
    public var suite: String
    public var architecture: String?
    /// The first K models of the suite (nil: all of them).
    public var models: Int?
    /// The models (seeds, splits) or experts (tasks) to merge by index in the suite, in this order; overrides `models`.
    public var subset: [Int]?
    /// Tasks suites: the experts of these tasks, in this order (nil: every task, or `subset`).
    public var tasks: [String]?
    /// Writes each task's statistics images here (rank 0), for independent checks of the fusion.
    public var dumpCalibration: URL?
    public var batchSize = 100
    /// The run's seed (weight matching's coordinate order, DARE's drops).
    public var seed: UInt64 = 0
    public var outDirectory: URL
    public var dataDirectory: URL = MNISTFamily.defaultDirectory
    public var zooRoot: URL = ZooCache.defaultRoot
    /// Merge these model files (diverse-origin models of one task, like a seeds suite) instead of the zoo suite
    /// `suite`, which then only labels the merge; nil: the suite.
    public var modelFiles: [URL]?
    /// Model files: training images held out (stratified by class, seeded) as the calibration split of every fitted choice.
    public var calibrationHoldout = ModelFiles.defaultCalibrationHoldout
    public var calibrationSeed: UInt64 = 0
    /// `modelFiles` are experts fine-tuned from this model, one task each, on the data sets `taskData` (one per expert,
    /// in order): a tasks merge of the user's files (nil: the files are models of one task).
    public var pretrained: URL?
    public var taskData: [URL]?
    public var quiet = false
    /// The run's shared evaluator (`ligand run` passes one to every merge; nil: nothing is kept).
    public var evaluator: Evaluator?

    public init(method: any MergeMethod.Type, suite: String, outDirectory: URL) {
        self.method = method; self.suite = suite; self.outDirectory = outDirectory
    }

    // The common parameters as the pipeline reads them.
    public var calibrationSamples: Int? { parameters.calibrationSamples }
    public var reference: ReferenceRule { parameters.text(CommonParameters.reference).flatMap(ReferenceRule.init(text:)) ?? .first }
    /// The alignment run first (multi-level fusion), nil: none.
    public var align: (any MergeMethod.Type)? { parameters.align }
    public var bnSamples: Int { parameters.bnSamples }
    public var batchNorm: BatchNormHandling { parameters.choice(CommonParameters.batchNorm) ?? .map }
    public var selectionSamples: Int { parameters.integer(CommonParameters.selectionSamples) ?? 1000 }

    /// The calibration split cut into the statistics images and, for regmean and progressive, the images held out at
    /// its end on which their settings are chosen; the statistics part then shortened to `calibrationSamples`.
    func cutCalibration(_ calibration: [Int]) -> (statistics: [Int], selection: [Int]) {
        var cal = calibration, selection: [Int] = []
        if method.fuses {
            let held = min(selectionSamples, cal.count / 2)
            selection = Array(cal.suffix(held))
            cal = Array(cal.prefix(cal.count - held))
        }
        if let n = calibrationSamples { cal = Array(cal.prefix(n)) }
        return (cal, selection)
    }

    /// Refuses sizes that cannot work, naming the option (parameter values were checked by their declarations).
    public func validate() throws {
        if let k = models, k < 2 { throw PipelineError("--models must be at least 2 (a merge needs two models), got \(k)") }
        if let s = subset {
            guard s.count >= 2 else { throw PipelineError("the subset must hold at least 2 models, got \(s)") }
            guard s.allSatisfy({ $0 >= 0 }), Set(s).count == s.count else { throw PipelineError("the subset must hold distinct non-negative model indices, got \(s)") }
        }
        guard batchSize > 0 else { throw PipelineError("--batch-size must be positive, got \(batchSize)") }
        if let a = align, !a.aligns { throw PipelineError("--align must be cca, permute or weight-matching, got \(a.name)") }
        if align != nil && !method.fuses { throw PipelineError("--align applies to regmean and progressive (and neulig), not to --method \(method.name)") }
    }
}

/// How the reference model (the space every other model is aligned into) is chosen.
public enum ReferenceRule: Equatable, Sendable, CustomStringConvertible {
    case first
    /// The model with the highest calibration accuracy (the lowest index among equals).
    case best
    case index(Int)

    /// first, best or a model index (nil: none of these).
    public init?(text s: String) {
        switch s.lowercased() {
        case "first": self = .first
        case "best": self = .best
        default:
            guard let i = Int(s), i >= 0 else { return nil }
            self = .index(i)
        }
    }

    public var description: String {
        switch self { case .first: return "first"; case .best: return "best"; case .index(let i): return "index \(i)" }
    }
}
