import ArgumentParser
import Foundation
import LigandCollective
import LigandData
import LigandModels
import LigandNN
import LigandPipeline
import LigandZoo

/// `ligand run RECIPE`: build what is missing, run every method over the K grid, subsets and seeds, write the report.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe of experiments (recipes/run-*.yaml): build missing suites, merge, write the report.",
        discussion: """
        The recipe names a zoo recipe, experiments (a suite, or a list of model files and their data set; methods \
        with their options, K values and subsets) and the number of seeds (docs/run.md). Suites that are not cached are built first, under the same ranks. \
        Every method × K × subset × seed then runs in this process on every rank; rank 0 writes OUT/report.json \
        (every figure), OUT/report.md (the table it prints), OUT/accuracy-vs-k.svg, OUT/merged-vs-ensemble.svg and OUT/costs-vs-k.svg. \
        Run it under mpirun to spread the models over ranks.
        """)

    @Argument(help: "The run recipe (YAML).")
    var recipe: String
    @Option(help: ArgumentHelp("Output directory (default: the recipe's `out`, else out/<recipe name>).", valueName: "dir"))
    var out: String?
    @Option(help: ArgumentHelp("Zoo cache root (default: the recipe's `cache`, else $LIGAND_ZOO_CACHE or cache/zoo).", valueName: "dir"))
    var cache: String?
    @Option(help: ArgumentHelp("Data set directory, in any layout of docs/model-files.md \"Data sets\" (default: the recipe's `data`, else $LIGAND_FASHION_MNIST or /usr/share/datasets/fashion-mnist; a models experiment's own `data` wins).", valueName: "dir"))
    var data: String?
    @Flag(help: "Print the planned runs and exit without building or merging (default: off).")
    var dryRun = false
    @Flag(help: "No progress output; the results table is still printed (default: off, progress on stderr).")
    var quiet = false
    @Option(name: .customLong("k"), help: ArgumentHelp("Run only the planned runs of these K (comma-separated, e.g. 64; default: every K of the recipe's grids).", valueName: "list"))
    var onlyK: String?
    @Flag(help: "Run every planned run again (default: off: a run whose OUT/runs/…/record.json was written for the same models, method settings, K, subset, seed and rank count is reused, so an interrupted recipe resumes where it stopped).")
    var fresh = false
    @OptionGroup var verification: VerifyOption

    func run() throws {
        let r: RunRecipe, identity: String, specs: [SuiteSpec], dir: URL
        var sources: [(common: String, models: [String])] = []
        verification.apply()
        do {
            r = try RunRecipe.load(path: recipe)
            try checkOutputDirectory(out ?? r.out, flag: out == nil ? "\(recipe): out" : "--out")
            dir = (data ?? r.data).map { URL(fileURLWithPath: $0, isDirectory: true) } ?? MNISTFamily.defaultDirectory
            var names: [String] = []
            for e in r.experiments { if let s = e.suite, !names.contains(s) { names.append(s) } }
            specs = try names.map { try r.zooRecipe!.suite(named: $0) }
            identity = dryRun ? "" : try ZooData.identity(directory: dir)
            if !dryRun {
                // A models experiment's data set and every tensor of its files (NaN, missing, mis-shaped) are checked before
                // anything runs, so a bad file stops the run with one message before any fused file is written.
                var checked: Set<String> = []
                for e in r.experiments {
                    guard let f = e.files else { continue }
                    if let d = f.data { _ = try ZooData.identity(directory: URL(fileURLWithPath: d, isDirectory: true)) }
                    for u in f.urls where checked.insert(u.standardizedFileURL.path).inserted {
                        _ = try ModelFile.load(u, expecting: f.architecture)
                    }
                }
                sources = try r.experiments.map { try Self.source($0, recipe: r, identity: identity) }
            }
        } catch { failBeforeCollectives(error) }
        let root = (cache ?? r.cache).map { URL(fileURLWithPath: $0, isDirectory: true) } ?? ZooCache.defaultRoot
        let outDir = URL(fileURLWithPath: out ?? r.out, isDirectory: true)
        var plan = r.plan()
        if let onlyK {
            let grid = Set(plan.map(\.k))
            let parts = onlyK.split(separator: ",", omittingEmptySubsequences: false)
            let ks = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
            if let i = ks.firstIndex(where: { $0 == nil }) {
                failBeforeCollectives(ValidationError("--k: '\(parts[i])' is not an integer (give K values, e.g. --k 32,64)"))
            }
            if let missing = ks.compactMap({ $0 }).first(where: { !grid.contains($0) }) {
                failBeforeCollectives(ValidationError("--k \(missing): the recipe plans no run of K = \(missing) (its K values: \(grid.sorted().map(String.init).joined(separator: ", ")))"))
            }
            plan = plan.filter { ks.contains($0.k) }
        }
        if dryRun {
            for (i, p) in plan.enumerated() { print("[\(i + 1)/\(plan.count)] \(Self.label(p, r))") }
            return
        }
        try withWorldAgreeingOnErrors("ligand run") { comm in
            let say: (String) -> Void = { line in if comm.isRoot && !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
            var records: [RunRecord] = []
            if let zoo = r.zoo, !specs.isEmpty {
                comm.abortingOnError("ligand run (zoo build)") {
                    try buildSuites(specs, recipePath: zoo, dataDirectory: dir, identity: identity, root: root, comm: comm, quiet: quiet)
                }
            }
            let started = Date()
            let evaluator = Evaluator()
            for (i, p) in plan.enumerated() {
                say(String(format: "[%d/%d] %@ (%.0fs so far)", i + 1, plan.count, Self.label(p, r), Date().timeIntervalSince(started)))
                let runDir = Self.directory(p, r, out: outDir)
                let key = Self.key(p, r, source: sources[p.experiment], ranks: comm.size)
                let recordURL = runDir.appendingPathComponent("record.json")
                // Rank 0 alone reads the record (the output directory may live on its host only) and tells the others.
                var done: [RunRecord]? = nil
                if comm.isRoot && !fresh { done = Self.finished(at: recordURL, key: key, say: say) }
                var reuse: [UInt8] = [done == nil ? 0 : 1]
                try comm.broadcast(&reuse, root: 0)
                if reuse[0] == 1 {
                    records += done ?? []
                    continue
                }
                let these = try Self.execute(p, recipe: r, comm: comm, dataDirectory: dir, root: root, runDir: runDir, quiet: quiet, evaluator: evaluator, log: say)
                records += these
                if comm.isRoot {
                    try FileManager.default.createDirectory(at: runDir, withIntermediateDirectories: true)
                    let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try writeAtomically(try enc.encode(FinishedRun(key: key, records: these)), to: recordURL.path)
                }
            }
            if evaluator.reused > 0 {
                say("shared evaluation (rank 0): \(evaluator.reused) model-on-task test evaluations reused, \(evaluator.computed) computed")
            }
            if comm.isRoot {
                let report = RunReport(recipe: recipe, ranks: comm.size, records: records)
                try Self.write(report, to: outDir)
                print(report.markdown(), terminator: "")
                print("\nreport: \(outDir.appendingPathComponent("report.json").path), \(outDir.appendingPathComponent("report.md").path), charts: accuracy-vs-k.svg, merged-vs-ensemble.svg, costs-vs-k.svg")
            }
        }
    }

    static func label(_ p: PlannedRun, _ r: RunRecipe) -> String {
        let e = r.experiments[p.experiment]
        return "\(e.name): \(p.method.label), K = \(p.k), subset \(p.subset.map(String.init).joined(separator: ","))" + (p.method.usesSeed ? ", seed \(p.seed)" : "")
    }

    /// A run's directory under OUT/runs: experiment, alignment and method, K, subset and seed.
    static func directory(_ p: PlannedRun, _ r: RunRecipe, out: URL) -> URL {
        let e = r.experiments[p.experiment], m = p.method
        // An alignment first names the series ("cca → progressive"), so it names the directory too.
        let label = (m.settings["align"].map { "\($0)-" } ?? "") + m.label.replacingOccurrences(of: " ", with: "-").filter { $0 != "(" && $0 != ")" }
        return out.appendingPathComponent("runs/\(e.name)-\(label)-k\(p.k)-\(p.subset.map(String.init).joined(separator: "_"))-seed\(p.seed)")
    }

    /// What an experiment's results depend on besides the method: the suite's content hash (its recipe and the data set's
    /// identity); or the data set's identity and, per model file, its path, size and modification time.
    static func source(_ e: RunExperiment, recipe r: RunRecipe, identity: String) throws -> (common: String, models: [String]) {
        if let suite = e.suite {
            let spec = try r.zooRecipe!.suite(named: suite)
            return ("suite \(suite) \(SuiteHash.compute(spec, dataIdentity: identity)) arch \(e.architecture ?? "-")", [])
        }
        guard let f = e.files else { return (e.name, []) }
        let data = try f.data.map { try ZooData.identity(directory: URL(fileURLWithPath: $0, isDirectory: true)) } ?? identity
        let stamps = try f.urls.map { u -> String in
            let a = try FileManager.default.attributesOfItem(atPath: u.path)
            let size = (a[.size] as? NSNumber)?.int64Value ?? -1, mtime = (a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(u.standardizedFileURL.path) \(size) \(mtime)"
        }
        return ("files, data \(data), calibration \(f.calibration), seed \(f.calibrationSeed)", stamps)
    }

    /// The key a finished run's record is kept under: its inputs (of a models experiment, the subset's files only), method
    /// and settings, K, subset, seed and rank count (results are identical for any rank count, the costs recorded are not).
    static func key(_ p: PlannedRun, _ r: RunRecipe, source: (common: String, models: [String]), ranks: Int) -> String {
        let settings = p.method.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let models = p.subset.compactMap { $0 < source.models.count ? source.models[$0] : nil }.joined(separator: "; ")
        return "ligand run record 1 | \(r.experiments[p.experiment].name) | \(source.common) | \(models) | \(p.method.label) {\(settings)} "
            + "| k \(p.k) | subset \(p.subset) | seed \(p.seed) | ranks \(ranks)"
    }

    /// The records of a run finished before under the same key; nil (and why, when there was a record) otherwise.
    static func finished(at url: URL, key: String, say: (String) -> Void) -> [RunRecord]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let path = url.path
        guard let data = try? Data(contentsOf: url), let run = try? JSONDecoder().decode(FinishedRun.self, from: data) else {
            say("\(path): not a readable record; running again"); return nil
        }
        guard run.key == key else { say("\(path): recorded for other models, settings or ranks; running again"); return nil }
        if let (field, problem) = run.records.lazy.compactMap(\.problem).first { say("\(path): \(field) \(problem); running again"); return nil }
        say("done before: \(path) reused (--fresh runs it again)")
        return run.records
    }

    /// Writes the JSON, Markdown and SVG files atomically (rank 0).
    static func write(_ report: RunReport, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try enc.encode(report), to: dir.appendingPathComponent("report.json").path)
        try writeViews(report, to: dir)
    }

    /// The report's Markdown and SVG charts (`ligand report` writes them again from a report.json).
    static func writeViews(_ report: RunReport, to dir: URL) throws {
        try writeAtomically(Data(report.markdown().utf8), to: dir.appendingPathComponent("report.md").path)
        try writeAtomically(Data(SVGChart.accuracyVsK(report).utf8), to: dir.appendingPathComponent("accuracy-vs-k.svg").path)
        try writeAtomically(Data(SVGChart.mergedVsEnsemble(report).utf8), to: dir.appendingPathComponent("merged-vs-ensemble.svg").path)
        try writeAtomically(Data(SVGChart.costsVsK(report).utf8), to: dir.appendingPathComponent("costs-vs-k.svg").path)
    }

    /// One planned run on every rank; its records (identical on every rank).
    static func execute(_ p: PlannedRun, recipe r: RunRecipe, comm: Communicator, dataDirectory: URL, root: URL, runDir: URL, quiet: Bool,
                        evaluator: Evaluator, log: @escaping (String) -> Void) throws -> [RunRecord] {
        let e = r.experiments[p.experiment], m = p.method
        let start = Date(), mark = ResourceMark.start()
        // A models experiment's own data set, else the run's.
        let data = e.files?.data.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? dataDirectory
        if m.method.family != .neulig {
            var o = MergeOptions(method: m.method, suite: e.name, outDirectory: runDir)
            o.parameters = m.parameters
            o.architecture = e.architecture
            o.subset = p.subset
            o.seed = p.seed
            o.quiet = quiet
            o.zooRoot = root
            o.dataDirectory = data
            o.evaluator = evaluator
            if let f = e.files { o.modelFiles = f.urls; o.calibrationHoldout = f.calibration; o.calibrationSeed = f.calibrationSeed }
            let counter = CountingCommunicator(comm)
            let report = try MergeRun.run(o, comm: counter, log: log)
            let wall = Date().timeIntervalSince(start), bytes = counter.bytes
            return RunRecord.from(rows: report.rows, method: m.label, suite: e.name, suiteKind: report.suiteKind, architecture: report.architecture,
                                  columns: report.columns, k: p.k, subset: report.models, subsetIndices: p.subset, seed: p.seed, settings: m.settings,
                                  wallSeconds: wall, bytes: bytes, ranks: comm.size, usage: try mark.gathered(comm), bytesPerPhase: report.bytes,
                                  calibrationScores: report.calibrationScores.isEmpty ? nil : report.calibrationScores)
        }
        var o = NeuLigOptions(suite: e.name, outDirectory: runDir)
        o.parameters = m.parameters
        o.seed = p.seed
        o.architecture = e.architecture
        if let f = e.files { o.modelFiles = f.urls; o.calibrationHoldout = f.calibration; o.calibrationSeed = f.calibrationSeed }
        if e.kind == .tasks {
            let names = r.zooRecipe?.suites.first { $0.name == e.suite }?.tasks ?? []
            o.tasks = p.subset.map { names[$0] }
        } else {
            o.models = p.k
        }
        o.quiet = quiet
        o.zooRoot = root
        o.dataDirectory = data
        o.evaluator = evaluator
        let report: NeuLigReport
        do { report = try NeuLigRun.run(o, comm: comm, log: log) } catch let err as PipelineError { throw PipelineError("\(e.name): neulig: \(err)", everyRank: err.everyRank) }
        let sameTask = report.suiteKind != nil, wall = Date().timeIntervalSince(start)
        return RunRecord.from(rows: report.rows, method: m.label, suite: e.name, suiteKind: report.suiteKind ?? "tasks", architecture: report.architecture,
                              columns: sameTask ? ["accuracy"] : report.tasks, k: p.k, subset: report.modelNames ?? report.tasks,
                              subsetIndices: p.subset, seed: p.seed, settings: m.settings, wallSeconds: wall,
                              bytes: report.bytesCommunicated, ranks: comm.size, usage: try mark.gathered(comm),
                              bytesPerPhase: report.bytesPerPhase, bytesPerPortlandStep: report.bytesPerPortlandStep)
    }
}

/// `ligand report REPORT.json`: the Markdown table and SVG charts again from a report's JSON (rank 0 files only).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write report.md and the SVG charts from a `ligand run` report.json, and print the table.")

    @Argument(help: "A report.json written by `ligand run`.")
    var json: String
    @Option(help: ArgumentHelp("Output directory (default: the directory of the JSON file).", valueName: "dir"))
    var out: String?

    func run() throws {
        let url = URL(fileURLWithPath: json)
        let report: RunReport
        do {
            report = try JSONDecoder().decode(RunReport.self, from: try Data(contentsOf: url))
        } catch let e as DecodingError {
            throw ValidationError("\(json): not a ligand run report: \(Self.describe(e))")
        } catch {
            throw ValidationError("\(json): cannot be read: \(error.localizedDescription)")
        }
        let dir = out.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Run.writeViews(report, to: dir)
        print(report.markdown(), terminator: "")
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String { c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() }
        switch e {
        case .keyNotFound(let k, let c): return "field \(path(c)).\(k.stringValue) is missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return "field \(path(c)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// A finished run of `ligand run` (OUT/runs/…/record.json): its records and the key of what produced them.
struct FinishedRun: Codable {
    var key: String
    var records: [RunRecord]
}
