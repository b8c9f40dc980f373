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
    @OptionGroup var verification: VerifyOption

    func run() throws {
        let r: RunRecipe, identity: String, specs: [SuiteSpec], dir: URL
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
            }
        } catch { failBeforeCollectives(error) }
        let root = (cache ?? r.cache).map { URL(fileURLWithPath: $0, isDirectory: true) } ?? ZooCache.defaultRoot
        let outDir = URL(fileURLWithPath: out ?? r.out, isDirectory: true)
        let plan = r.plan()
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
                records += try Self.execute(p, recipe: r, comm: comm, dataDirectory: dir, root: root, out: outDir, quiet: quiet, evaluator: evaluator, log: say)
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
    static func execute(_ p: PlannedRun, recipe r: RunRecipe, comm: Communicator, dataDirectory: URL, root: URL, out: URL, quiet: Bool,
                        evaluator: Evaluator, log: @escaping (String) -> Void) throws -> [RunRecord] {
        let e = r.experiments[p.experiment], m = p.method
        let runDir = out.appendingPathComponent("runs/\(e.name)-\(m.label.replacingOccurrences(of: " ", with: "-").filter { $0 != "(" && $0 != ")" })-k\(p.k)-\(p.subset.map(String.init).joined(separator: "_"))-seed\(p.seed)")
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
                                  wallSeconds: wall, bytes: bytes, ranks: comm.size, usage: try mark.gathered(comm))
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
                              bytes: report.bytesCommunicated, ranks: comm.size, usage: try mark.gathered(comm))
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
