import Foundation
import LigandFormats
import LigandMerge
import LigandModels
import LigandNeuLig
import LigandNN
import LigandNumerics
import LigandZoo

/// Which subsets of size K of a suite's models (or tasks) an experiment merges.
public enum SubsetRule: Equatable, Sendable, CustomStringConvertible {
    /// The first K, in suite order.
    case first
    /// Every subset of size K, in lexicographic order.
    case all
    /// N distinct subsets of size K drawn with the recipe's seed (every subset when there are no more than N).
    case random(Int)

    public var description: String {
        switch self { case .first: return "first"; case .all: return "all"; case .random(let n): return "\(n)" }
    }

    /// The index subsets of size k out of n items; deterministic for a seed.
    public func subsets(of n: Int, size k: Int, seed: UInt64) -> [[Int]] {
        precondition(k >= 1 && k <= n)
        switch self {
        case .first: return [Array(0..<k)]
        case .all: return Self.combinations(n, k)
        case .random(let count):
            if RecipeLimits.binomial(n, k, cap: count) != nil { return Self.combinations(n, k) }
            // One stream per (n, k): adding a K to the grid does not change the subsets of the others.
            var rng = SeededRNG(seed: seed, stream: "subsets-\(n)-\(k)")
            var seen: Set<[Int]> = [], out: [[Int]] = []
            while out.count < count {
                var pool = Array(0..<n)
                for i in 0..<k { pool.swapAt(i, i + rng.int(below: n - i)) }
                let s = pool.prefix(k).sorted()
                if seen.insert(s).inserted { out.append(s) }
            }
            return out
        }
    }

    static func combinations(_ n: Int, _ k: Int) -> [[Int]] {
        var out: [[Int]] = [], cur: [Int] = []
        func walk(_ start: Int) {
            if cur.count == k { out.append(cur); return }
            guard start < n else { return }
            for i in start..<n where n - i >= k - cur.count { cur.append(i); walk(i + 1); cur.removeLast() }
        }
        walk(0)
        return out
    }
}

/// One method of an experiment with the parameters the recipe gives it (the rest: their declarations' defaults).
public struct RunMethod {
    public var method: any MergeMethod.Type
    public var parameters = ParameterValues()
    public var name: String { method.name }
    /// The method's name in reports and run directories: its name, and every tagged parameter the recipe sets to other
    /// than its default ("cca (bn fold)", "progressive (start iso-c)").
    public var label: String {
        let tags = method.parameters.compactMap { p -> String? in
            guard let tag = p.tag, parameters.isSet(p), let v = parameters.value(p), v != p.defaultValue else { return nil }
            if case .flag(let on) = v { return on ? tag : "no \(tag)" }
            return "\(tag) \(v.description)"
        }
        return tags.isEmpty ? name : "\(name) (\(tags.joined(separator: ", ")))"
    }

    /// The settings as the recipe wrote them, for the report.
    public var settings: [String: String] = [:]

    public init(method: any MergeMethod.Type) { self.method = method }

    /// Whether repeating it with another seed can change the result.
    public var usesSeed: Bool { method.usesSeed }
}

/// A models experiment's models: files a user trained, and the data set their calibration split is held out of.
public struct RunModelFiles: Sendable {
    /// As the recipe lists them (relative paths: from the current directory).
    public var paths: [String]
    /// The architecture every file declares.
    public var architecture: Architecture
    /// IDX directory (nil: the run's data directory).
    public var data: String?
    /// Training images held out, stratified by class and seeded, as the calibration split of every fitted choice.
    public var calibration: Int
    public var calibrationSeed: UInt64

    public var urls: [URL] { paths.map { URL(fileURLWithPath: $0) } }
}

/// One suite (or list of model files), its K grid, subset rule and methods.
public struct RunExperiment {
    /// The suite's name, or a models experiment's `name`: the label of reports and run directories.
    public var name: String
    /// The zoo suite (nil: a models experiment).
    public var suite: String?
    /// A models experiment's files (nil: a suite experiment).
    public var files: RunModelFiles?
    /// The suite's kind; models experiments merge like a seeds suite.
    public var kind: SuiteKind
    /// "models" for a models experiment, else the suite's kind (the report's `suiteKind`).
    public var kindLabel: String { files == nil ? kind.rawValue : "models" }
    /// Models (seeds, splits) or tasks (tasks) of one architecture in the suite; the files of a models experiment.
    public var available: Int
    public var architecture: String?
    /// Subset sizes (nil in the recipe: all of the suite's models, one size).
    public var k: [Int]
    public var subsets: SubsetRule
    public var methods: [RunMethod]
}

/// A `ligand run` recipe (docs/run.md): a zoo recipe to build from, experiments, seeds and where outputs go.
public struct RunRecipe {
    public var path: String
    /// The zoo recipe (nil when no experiment names a suite).
    public var zoo: String?
    public var zooRecipe: Recipe?
    public var out: String
    public var seeds: Int
    public var seed: UInt64
    public var cache: String?
    public var data: String?
    public var experiments: [RunExperiment]


    public static func load(path: String) throws -> RunRecipe {
        try decode(try Fields.load(path: path), path: path)
    }

    public static func parse(_ text: String, path: String) throws -> RunRecipe {
        try decode(try Fields.parse(text, file: path), path: path)
    }

    static func decode(_ top: Fields, path: String) throws -> RunRecipe {
        let zooPath = try top.string("zoo")
        var zoo: Recipe?
        if let zooPath {
            do { zoo = try Recipe.load(path: zooPath) } catch let e as RecipeError {
                throw top.error("zoo", "the zoo recipe '\(zooPath)' cannot be used: \(e)")
            }
        }
        let base = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        var r = RunRecipe(path: path, zoo: zooPath, zooRecipe: zoo, out: try top.string("out") ?? "out/\(base)",
                          seeds: try top.int("seeds", min: 1, max: RecipeLimits.maxSeeds) ?? 1, seed: UInt64(try top.int("seed", min: 0) ?? 0),
                          cache: try top.string("cache"), data: try top.string("data"), experiments: [])
        let items = try top.list("experiments", required: true)!
        guard !items.isEmpty else { throw top.error("experiments", "must list at least one experiment") }
        for (i, item) in items.enumerated() {
            let f = try Fields(item, file: path, path: top.sub("experiments[\(i)]"))
            if f.values["suite"] != nil && f.values["models"] == nil && zoo == nil {
                throw top.error("zoo", "is required: experiments[\(i)] names a suite (only experiments that list model files need no zoo recipe)")
            }
            r.experiments.append(try experiment(f, zoo: zoo))
        }
        var names: [String: Int] = [:]
        for (i, e) in r.experiments.enumerated() where e.files != nil {
            if let j = names[e.name] ?? r.experiments.firstIndex(where: { $0.suite == e.name }) {
                throw RecipeError(file: path, path: top.sub("experiments[\(i)].name"), message: "'\(e.name)' is already the label of experiments[\(j)]: give each models experiment its own name")
            }
            names[e.name] = i
        }
        try top.finish()
        try r.checkPlanSize(top)
        return r
    }

    static func experiment(_ f: Fields, zoo: Recipe?) throws -> RunExperiment {
        let hasSuite = f.values["suite"] != nil, hasModels = f.values["models"] != nil
        guard hasSuite != hasModels else {
            throw RecipeError(file: f.file, path: f.path, message: hasSuite ? "give either suite or models, not both" : "give either suite (a zoo suite) or models (a list of model files)")
        }
        if hasModels { return try modelsExperiment(f) }
        let name = try f.string("suite", required: true)!
        guard let zoo else { throw f.error("suite", "needs the recipe's zoo") }
        guard let spec = zoo.suites.first(where: { $0.name == name }) else {
            throw f.error("suite", "no suite '\(name)' in \(zoo.path) (it has \(zoo.suites.map(\.name).joined(separator: ", ")))")
        }
        let archs = spec.architectures.map(\.label)
        let arch = try f.string("arch")
        if let a = arch, !archs.contains(a) { throw f.error("arch", "suite '\(name)' has no \(a) models (it has \(archs.joined(separator: ", ")))") }
        if arch == nil && archs.count > 1 { throw f.error("arch", "is required: suite '\(name)' holds several architectures (\(archs.joined(separator: ", ")))") }
        let available: Int
        switch spec.kind {
        case .tasks: available = spec.tasks?.count ?? 0
        case .seeds: available = spec.models ?? 0
        case .splits: available = (spec.partitions ?? []).reduce(0) { $0 + $1.parts }
        }
        var ks = try f.intList("k", min: 2) ?? [available]
        ks = Array(Set(ks)).sorted()
        if let bad = ks.first(where: { $0 > available }) {
            throw f.error("k", "K = \(bad) exceeds the \(available) \(spec.kind == .tasks ? "tasks" : "models") of suite '\(name)'")
        }
        guard available >= 2 else { throw f.error("suite", "suite '\(name)' has fewer than 2 models to merge") }
        let subsets = try subsetRule(f)
        let methods = try methodList(f, kind: spec.kind, subsets: subsets, what: "a \(spec.kind.rawValue) suite")
        try f.finish()
        return RunExperiment(name: name, suite: name, files: nil, kind: spec.kind, available: available, architecture: arch, k: ks, subsets: subsets, methods: methods)
    }

    /// An experiment over model files (docs/run.md): `name`, `models`, `data`, `calibration`, `calibration_seed`, the grid and methods.
    static func modelsExperiment(_ f: Fields) throws -> RunExperiment {
        let name = try f.string("name", required: true)!
        guard !name.isEmpty, !name.contains("/") else { throw f.error("name", "must be a non-empty label without '/', got '\(name)'") }
        guard let items = try f.list("models") else { throw f.error("models", "must list model files") }
        guard items.count >= 2 else { throw f.error("models", "must list at least 2 model files (a merge needs two models), got \(items.count)") }
        var paths: [String] = []
        var first: Architecture?
        for (i, item) in items.enumerated() {
            let key = "models[\(i)]"
            guard let p = item as? String, !p.isEmpty else { throw f.error(key, "must be a path to a model file, got \(Fields.describeValue(item))") }
            let url = URL(fileURLWithPath: p)
            if let j = paths.firstIndex(where: { URL(fileURLWithPath: $0).standardizedFileURL.path == url.standardizedFileURL.path }) {
                throw f.error(key, "'\(p)' is listed twice (models[\(j)] too)")
            }
            guard FileManager.default.fileExists(atPath: url.path) else { throw f.error(key, "'\(p)': no such file") }
            let a: Architecture
            do { a = try ModelFile.architecture(of: try SafeTensorsFile(url: url)) } catch {
                throw f.error(key, "'\(p)' is not a readable Ligand model file: \(error)")
            }
            if let first, a != first {
                throw f.error(key, "'\(p)' holds a \(a), but models[0] ('\(paths[0])') holds a \(first): models of different architectures cannot be merged")
            }
            if first == nil { first = a }
            paths.append(p)
        }
        let data = try f.string("data")
        let calibration = try f.int("calibration", min: 2, max: RecipeLimits.trainingImages - 1) ?? ModelFiles.defaultCalibrationHoldout
        let calibrationSeed = UInt64(try f.int("calibration_seed", min: 0) ?? 0)
        var ks = try f.intList("k", min: 2) ?? [paths.count]
        ks = Array(Set(ks)).sorted()
        if let bad = ks.first(where: { $0 > paths.count }) {
            throw f.error("k", "K = \(bad) exceeds the \(paths.count) model files of experiment '\(name)'")
        }
        let subsets = try subsetRule(f)
        let methods = try methodList(f, kind: .seeds, subsets: subsets, what: "a models experiment", models: true)
        try f.finish()
        let files = RunModelFiles(paths: paths, architecture: first!, data: data, calibration: calibration, calibrationSeed: calibrationSeed)
        return RunExperiment(name: name, suite: nil, files: files, kind: .seeds, available: paths.count, architecture: nil, k: ks,
                             subsets: subsets, methods: methods)
    }

    static func subsetRule(_ f: Fields) throws -> SubsetRule {
        let subsets: SubsetRule
        switch f.values["subsets"] {
        case nil: _ = try f.string("subsets"); subsets = .first
        case let s as String:
            _ = try f.string("subsets")
            switch s {
            case "first": subsets = .first
            case "all": subsets = .all
            default: throw f.error("subsets", "must be first, all or an integer in 1...\(RecipeLimits.maxPlannedRuns), got '\(s)'")
            }
        default:
            guard let n = try? f.int("subsets", min: 1, max: RecipeLimits.maxPlannedRuns) else {
                throw f.error("subsets", "must be first, all or an integer in 1...\(RecipeLimits.maxPlannedRuns), got \(Fields.describeValue(f.values["subsets"]))")
            }
            subsets = .random(n)
        }
        return subsets
    }

    /// The experiment's `methods`; `what` names the suite (or models experiment) in errors.
    static func methodList(_ f: Fields, kind: SuiteKind, subsets: SubsetRule, what: String, models: Bool = false) throws -> [RunMethod] {
        let list = try f.list("methods", required: true)!
        guard !list.isEmpty else { throw f.error("methods", "must list at least one method") }
        var methods: [RunMethod] = []
        for (i, item) in list.enumerated() {
            let m = try method(item, file: f.file, path: f.sub("methods[\(i)]"), kind: kind, models: models)
            if m.method == NeuLig.self && kind != .tasks && subsets != .first {
                throw RecipeError(file: f.file, path: f.sub("methods[\(i)]"), message: "neulig on \(what) merges the first K models only: use subsets: first")
            }
            methods.append(m)
        }
        return methods
    }

    /// One method; `models`: of a models experiment (diverse-origin files, no pretrained model, so no task vectors).
    /// Only the keys the method declares are read, so any other key is refused by `finish` with its path.
    static func method(_ node: Any, file: String, path: String, kind: SuiteKind, models: Bool = false) throws -> RunMethod {
        let f: Fields
        if let s = node as? String { f = try Fields(["method": s], file: file, path: path) } else { f = try Fields(node, file: file, path: path) }
        let name = try f.string("method", required: true)!
        guard let method = MethodRegistry.method(named: name) else {
            throw f.error("method", "must be one of \(MethodRegistry.names.joined(separator: ", ")), got '\(name)'")
        }
        if models, let why = MethodRegistry.check(method, kind: .seeds, modelFiles: true) { throw f.error("method", why) }
        if !models, let why = MethodRegistry.check(method, kind: kind) { throw f.error("method", why) }
        var m = RunMethod(method: method)
        for p in method.parameters {
            if let v = try p.read(f) { m.parameters.store(p, v) }
        }
        if m.parameters.isSet(CommonParameters.align) && kind == .tasks && !models {
            throw f.error(CommonParameters.align.key, "applies to seeds and splits suites (and models experiments) only")
        }
        if models {
            for p in [TaskArithmetic.lambdas, TIES.keep] where m.parameters.isSet(p) {
                throw f.error(p.key, "applies to task vectors on a tasks suite, not to a models experiment")
            }
            if m.parameters.isSet(NeuLig.baselines) {
                throw f.error(NeuLig.baselines.key, "applies to neulig on a tasks suite (pretrained, task arithmetic, TIES beside it), not to a models experiment")
            }
        }
        for (key, v) in f.values where key != "method" { m.settings[key] = Self.text(v) }
        try f.finish()
        return m
    }

    static func text(_ v: Any) -> String {
        if let l = v as? [Any] { return l.map { text($0) }.joined(separator: ",") }
        return "\(v)"
    }

    /// Every run the recipe asks for, in order: experiment × method × K × subset × seed.
    public func plan() -> [PlannedRun] {
        var out: [PlannedRun] = []
        for (e, x) in experiments.enumerated() {
            for m in x.methods {
                for k in x.k {
                    for s in x.subsets.subsets(of: x.available, size: k, seed: seed) {
                        for sd in 0..<(m.usesSeed ? seeds : 1) {
                            out.append(PlannedRun(experiment: e, method: m, k: k, subset: s, seed: UInt64(sd)))
                        }
                    }
                }
            }
        }
        return out
    }
}

public struct PlannedRun {
    public var experiment: Int
    public var method: RunMethod
    public var k: Int
    public var subset: [Int]
    public var seed: UInt64
}
