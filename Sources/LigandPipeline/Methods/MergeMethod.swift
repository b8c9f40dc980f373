import Foundation
import LigandMerge
import LigandZoo

/// How the pipeline runs a method: the inputs it needs and the context it is handed.
public enum MethodFamily: Sendable {
    /// Same-task models aligned into a reference's space, then averaged (`SameTaskAlignment`).
    case alignment
    /// Task vectors θ_k − θ_pre of a tasks suite's experts combined (`TaskVectorMerge`).
    case taskVectors
    /// Layer-wise least squares on calibration statistics (FusionRun), on tasks suites and, after an alignment, same-task models.
    case leastSquares
    /// NeuLig's Portland (NeuLigRun).
    case neulig
}

/// A merge method: one file per method declares its name, paper, the suites it accepts and its parameters ONCE
/// (mergekit's `MergeMethod`); `MethodRegistry.all` lists them. The maths lives in the family protocol the
/// method adopts (`SameTaskAlignment`, `TaskVectorMerge`), or in FusionRun / NeuLigRun for the least-squares and
/// NeuLig families.
public protocol MergeMethod {
    /// The `--method` value and recipe `method:`.
    static var name: String { get }
    /// What it computes, one sentence (help and docs/run.md).
    static var summary: String { get }
    /// Its paper, with the equation implemented.
    static var paper: String { get }
    /// Suite kinds it merges; `.seeds` also admits a list of model files (diverse-origin models of one task).
    static var accepts: Set<SuiteKind> { get }
    static var family: MethodFamily { get }
    /// Its hyper-parameters, each declared once (in its own file, or `CommonParameters` when several methods share it).
    static var parameters: [MethodParameter] { get }
    /// Whether another seed can change its result (weight matching's sweep order, DARE's drops, NeuLig's Portland).
    static var usesSeed: Bool { get }
    /// Whether it aligns diverse-origin models into a reference (a value of `align`).
    static var aligns: Bool { get }
}

public extension MergeMethod {
    static var usesSeed: Bool { false }
    static var aligns: Bool { false }
    /// Whether it needs a pretrained model (it combines task vectors, so merges tasks suites only).
    static var needsPretrained: Bool { !accepts.contains(.seeds) }
    static var fuses: Bool { family == .leastSquares }
}

/// Every merge method, in the order help and docs list them. Adding a method: its file, and one line here.
public enum MethodRegistry {
    public static let all: [any MergeMethod.Type] = [
        NeuLig.self,
        Average.self,
        TaskArithmetic.self,
        TIES.self,
        DARE.self,
        TSVM.self,
        IsoC.self,
        IsoCTS.self,
        WUDI.self,
        Fisher.self,
        AdaMerging.self,
        RegMean.self,
        Progressive.self,
        WeightMatching.self,
        Permute.self,
        CCA.self,
    ]

    public static var names: [String] { all.map { $0.name } }

    public static func method(named name: String) -> (any MergeMethod.Type)? { all.first { $0.name == name } }

    /// Refuses a method for a suite kind it cannot merge, saying which methods can.
    public static func check(_ m: any MergeMethod.Type, kind: SuiteKind, modelFiles: Bool = false) -> String? {
        if modelFiles {
            guard m.accepts.contains(.seeds) else {
                return "\(m.name) combines task vectors and needs a tasks suite (a pretrained model and experts); model files are merged as diverse-origin models of one task (use \(all.filter { $0.accepts.contains(.seeds) }.map { $0.name }.joined(separator: ", "))), or as experts of their own tasks with --pretrained and --task-data"
            }
            return nil
        }
        guard m.accepts.contains(kind) else {
            let use = "use \(all.filter { $0.accepts.contains(kind) }.map { $0.name }.joined(separator: ", "))"
            if m.needsPretrained { return "\(m.name) combines task vectors and needs a tasks suite (a pretrained model and experts); this suite is \(kind.rawValue) (\(use))" }
            if m.aligns { return "\(m.name) aligns diverse-origin models; the experts of a \(kind.rawValue) suite share one pretrained origin (\(use))" }
            return "\(m.name) cannot merge a \(kind.rawValue) suite (\(use))"
        }
        return nil
    }

    /// The parameter table of docs/run.md and `ligand help merge`: one row per parameter, the methods that take it.
    public static func parameterRows() -> [(parameter: MethodParameter, methods: [String])] {
        var rows: [(parameter: MethodParameter, methods: [String])] = []
        for m in all {
            for p in m.parameters {
                if let i = rows.firstIndex(where: { $0.parameter == p }) { rows[i].methods.append(m.name) } else { rows.append((p, [m.name])) }
            }
        }
        return rows
    }

    /// The suite kinds a method merges, as help and docs list them.
    static func suites(_ m: any MergeMethod.Type) -> String {
        SuiteKind.allCases.filter { m.accepts.contains($0) }.map(\.rawValue).joined(separator: ", ")
    }

    /// Markdown: the methods (name, what, paper, suites) and their parameters (key, flag, methods, default, help).
    public static func markdown() -> String {
        var s = "| method | suites | what it computes | paper |\n|---|---|---|---|\n"
        for m in all {
            s += "| `\(m.name)` | \(suites(m)) | \(m.summary) | \(m.paper) |\n"
        }
        s += "\n| recipe key | `ligand merge` flag | methods | default | meaning |\n|---|---|---|---|---|\n"
        for (p, methods) in parameterRows() {
            s += "| `\(p.key)` | `\(p.flag)` | \(methods.joined(separator: ", ")) | \(p.defaultText) | \(p.help) |\n"
        }
        return s
    }

    /// Plain text for `ligand help merge` and `ligand methods`.
    public static func helpText() -> String {
        var s = "METHODS (--method NAME: the suites it merges; what it computes; `ligand methods --markdown` adds the papers):\n"
        for m in all {
            s += "  \(m.name) [\(suites(m))]: \(m.summary)\n"
        }
        s += "\nMETHOD OPTIONS (recipe key: the option without -- and with _; each for the methods in brackets):\n"
        for (p, methods) in parameterRows() {
            s += "  \(p.flag) [\(methods.joined(separator: ", "))]: \(p.help) (default: \(p.defaultText))\n"
        }
        return s
    }
}

/// Parameters several methods take, each declared once.
public enum CommonParameters {
    public static let calibrationSamples = MethodParameter(
        "calibration_samples", .integer(min: 2), default: nil,
        help: "calibration images (per task) for statistics, the Portland and every fitted choice (none: the whole calibration split)",
        requirement: "must be at least 2")
    public static let reference = MethodParameter(
        "reference", .text(accepts: { ReferenceRule(text: $0) != nil }), default: .text("first"),
        help: "the model every other is aligned into: first, best (on calibration) or a model index",
        requirement: "must be first, best or a model index")
    public static let align = MethodParameter(
        "align", .choice(["cca", "permute", "weight-matching"]), default: nil,
        help: "seeds/splits suites and model files: align the models into the reference's space with this method first (multi-level)",
        requirement: "must be cca, permute or weight-matching")
    public static let bnSamples = MethodParameter(
        "bn_samples", .integer(min: 1), default: .integer(5000),
        help: "training images BatchNorm statistics are re-estimated on after merging",
        requirement: "must be positive")
    public static let batchNorm = MethodParameter(
        "batch_norm", .choice(BatchNormHandling.allCases.map(\.rawValue)), default: .text("map"),
        help: "BatchNorm networks: map (BN vectors mapped like biases, statistics re-estimated), map-keep (not re-estimated), fold (BN folded into the convolution first) or repair (folded, then REPAIR's renormalisation)",
        requirement: "must be map, map-keep, fold or repair", tag: "bn")
    public static let selectionSamples = MethodParameter(
        "selection_samples", .integer(min: 0), default: .integer(1000),
        help: "calibration images per task held out (at most half the split) to choose α, the ridge and λ",
        requirement: "must be non-negative")
    public static let scales = MethodParameter(
        "scales", .numbers(check: { $0.isFinite }, scale: 1), default: .numbers((1...12).map { Double($0) / 4 } + [3.5, 4, 4.5, 5]),
        help: "scales α of the merged task vector (θ_pre + α·τ) of the per-layer spectral and interference merges (and of progressive's start merge), to choose from on calibration",
        requirement: "every α must be finite")

    /// What every same-task alignment takes.
    public static let alignment: [MethodParameter] = [calibrationSamples, reference, bnSamples, batchNorm]
}
