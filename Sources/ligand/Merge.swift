import ArgumentParser
import Foundation
import LigandCollective
import LigandMerge
import LigandNeuLig
import LigandPipeline
import LigandZoo


struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuse the models of a zoo suite (or model files) into one and report it beside the ensemble.",
        discussion: """
        Each method takes its own options (below), declared once in Sources/LigandPipeline/Methods/ and shared with \
        `ligand run` recipes (the recipe key is the option without -- and with _). A tasks suite's experts share one \
        pretrained origin; a seeds or splits suite (or --model-files) holds diverse-origin models of one task, which \
        alignment methods put into one reference's space. --model-files a.safetensors,b.safetensors,... fuses your own \
        models instead of a suite (one architecture, one task), calibrated on a stratified hold-out of the training images \
        (--calibration-holdout, --calibration-seed), tested on the official test set. With --pretrained P they are experts \
        fine-tuned from P, one task each, and --task-data d1,d2,... gives each its task's data set (its calibration \
        hold-out cut the same way): the tasks setting of a tasks suite on your own files. Run it under mpirun to spread the \
        models over ranks: every result is bitwise the same for any number of ranks.

        """ + MethodRegistry.helpText())

    @Option(help: "Fusion method (see METHODS above). Required, no default.")
    var method: String
    @Option(help: "Zoo suite to fuse (see `ligand zoo list`). Required unless --model-files is given; no default.")
    var suite: String?
    @Option(help: ArgumentHelp("Model files to fuse instead of a suite, comma-separated (≥ 2, one architecture, one task; default: none, fuse --suite).", valueName: "files"))
    var modelFiles: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("--model-files: training images held out (stratified by class) as the calibration split.", valueName: "n"))
    var calibrationHoldout: Int = ModelFiles.defaultCalibrationHoldout
    @Option(help: ArgumentHelp("--model-files: seed of the calibration hold-out.", valueName: "seed"))
    var calibrationSeed: UInt64 = 0
    @Option(help: ArgumentHelp("--model-files are experts fine-tuned from this model, one task each (needs --task-data; default: none, the files are models of one task).", valueName: "file"))
    var pretrained: String?
    @Option(help: ArgumentHelp("With --pretrained: each expert's data set directory, comma-separated, in --model-files' order, any layout of --data (required with --pretrained; no default).", valueName: "dirs"))
    var taskData: String?
    @Option(help: "Architecture of the suite to use when it holds several (mlp, vgg, resnet20; default: the only one).")
    var arch: String?
    @Option(help: "Tasks suites: the tasks to fuse, comma-separated (default: every task of the suite).")
    var tasks: String?
    @Option(parsing: .unconditional, help: "Seeds/splits suites: use the first K models of the suite (default: all).")
    var models: Int?
    @Option(help: "Seed of the run: weight matching's sweep order, DARE's drops, the Portland's initialisation and data order.")
    var seed: UInt64 = 0
    @Option(help: "Output directory for the fused model, the report and the checkpoints (default: out/SUITE-METHOD, out/model-files-METHOD with --model-files).")
    var out: String?
    @Option(help: "Also write the report as JSON here (default: OUT/report.json).")
    var json: String?
    @Option(help: "Zoo cache root (default: $LIGAND_ZOO_CACHE or cache/zoo).")
    var cache: String?
    @Option(help: DataOption.help)
    var data: String?
    @Flag(help: "No progress output (default: off, progress on stderr).")
    var quiet = false
    @OptionGroup var verification: VerifyOption
    @Option(help: .hidden)
    var dumpCalibration: String?
    /// The method's own options (METHOD OPTIONS), checked against its declarations in `methodParameters`.
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var methodOptions: [String] = []

    func validate() throws {
        if suite != nil && modelFiles != nil { throw ValidationError("--suite and --model-files are alternatives: give one of them") }
        if suite == nil && modelFiles == nil { throw ValidationError("give --suite (a zoo suite) or --model-files (your own model files)") }
        if modelFiles != nil {
            if let arch { throw ValidationError("--arch \(arch) chooses among a suite's architectures; model files declare their own") }
            if tasks != nil { throw ValidationError("--tasks applies to tasks suites; with --pretrained, list the experts in --model-files") }
        }
        if pretrained != nil {
            guard modelFiles != nil else { throw ValidationError("--pretrained goes with --model-files (the experts fine-tuned from it)") }
            guard taskData != nil else { throw ValidationError("--pretrained needs --task-data: one data set directory per expert, in --model-files' order") }
            if data != nil { throw ValidationError("with --pretrained each expert's task has its own data set: give them in --task-data, not --data") }
            if models != nil { throw ValidationError("--models picks among a suite's models; with --pretrained, list the experts in --model-files") }
        } else if taskData != nil {
            throw ValidationError("--task-data gives the tasks of experts fine-tuned from --pretrained; without it, --data is the one task's data set")
        }
        guard MethodRegistry.method(named: method) != nil else {
            throw ValidationError("--method must be one of \(MethodRegistry.names.joined(separator: ", ")), got '\(method)'")
        }
        try CountOption.check(calibrationHoldout, "--calibration-holdout", min: 2, max: RecipeLimits.trainingImages - 1)
        try CountOption.check(models, "--models", min: 2, max: RecipeLimits.maxModels)
        if let out { try checkOutputDirectory(out, flag: "--out") }
    }

    /// The method's options from the command line: `--key value`, `--key=value`, `--flag`, `--no-flag`.
    static func methodParameters(_ m: any MergeMethod.Type, _ args: [String]) throws -> ParameterValues {
        var values = ParameterValues()
        var i = 0
        while i < args.count {
            let token = args[i]
            guard token.hasPrefix("--") else { throw PipelineError("unexpected argument '\(token)'") }
            let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
            var name = parts[0], inline = parts.count > 1 ? parts[1] : nil
            var negated = false
            if m.parameters.first(where: { $0.flag == name }) == nil, name.hasPrefix("--no-"),
               let p = m.parameters.first(where: { $0.flag == "--" + name.dropFirst(5) }), case .flag = p.kind {
                name = p.flag; negated = true; inline = inline ?? "false"
            }
            guard let p = m.parameters.first(where: { $0.flag == name }) else {
                let others = MethodRegistry.all.filter { $0.parameters.contains { $0.flag == name } }.map { $0.name }
                if others.isEmpty { throw PipelineError("unknown option '\(name)' (see `ligand help merge`)") }
                throw PipelineError("\(name) does not apply to --method \(m.name) (it is an option of \(others.joined(separator: ", "))); \(m.name) takes \(m.parameters.map(\.flag).joined(separator: ", "))")
            }
            let text: String
            if case .flag = p.kind { text = negated ? "false" : (inline ?? "true") }
            else if let inline { text = inline }
            else {
                guard i + 1 < args.count else { throw PipelineError("\(name) needs a value") }
                i += 1; text = args[i]
            }
            do { values.store(p, try p.parse(text)) } catch let e as ParameterError { throw PipelineError(e.description) }
            i += 1
        }
        return values
    }

    /// The label of the merge: the suite, or `model-files` for --model-files.
    var label: String { suite ?? "model-files" }
    /// --model-files as URLs (nil: a suite).
    var files: [URL]? {
        modelFiles.map { $0.split(separator: ",").map { URL(fileURLWithPath: $0.trimmingCharacters(in: .whitespaces)) } }
    }
    /// --task-data as URLs.
    var taskDataURLs: [URL]? { taskData.map { $0.split(separator: ",").map { URL(fileURLWithPath: $0.trimmingCharacters(in: .whitespaces)) } } }
    var taskList: [String]? { tasks?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    /// Every non-NeuLig method: the "statistics → maps → weights" pipeline of LigandPipeline/MergeRun.
    func runAlignment(_ m: any MergeMethod.Type) throws {
        let outDir = URL(fileURLWithPath: out ?? "out/\(label)-\(method)")
        try withWorldAgreeingOnErrors("ligand merge") { comm in
            var o = MergeOptions(method: m, suite: label, outDirectory: outDir)
            o.parameters = try Self.methodParameters(m, methodOptions)
            o.modelFiles = files
            o.calibrationHoldout = calibrationHoldout
            o.calibrationSeed = calibrationSeed
            o.pretrained = pretrained.map { URL(fileURLWithPath: $0) }
            o.taskData = taskDataURLs
            o.architecture = arch
            o.models = models
            o.tasks = taskList
            o.dumpCalibration = dumpCalibration.map { URL(fileURLWithPath: $0) }
            o.seed = seed
            o.quiet = quiet
            if let cache { o.zooRoot = URL(fileURLWithPath: cache) }
            if let data { o.dataDirectory = URL(fileURLWithPath: data) }
            try o.validate()
            let report = try MergeRun.run(o, comm: comm) { if comm.isRoot && !quiet { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
            if comm.isRoot {
                print(report.table(), terminator: "")
                let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                let path = json ?? outDir.appendingPathComponent("report.json").path
                try writeAtomically(try enc.encode(report), to: path)
                print("report: \(path); fused model: \(report.fusedFile ?? "-")")
            }
        }
    }

    func run() throws {
        verification.apply()
        let m = MethodRegistry.method(named: method)!
        if m.family != .neulig { return try runAlignment(m) }
        // Bad options end the job cleanly with one message (every rank parses them alike); a failure later aborts it.
        try withWorldAgreeingOnErrors("ligand merge") { comm in
            let parameters = try Self.methodParameters(m, methodOptions)
            let alignLabel = parameters.text(CommonParameters.align).map { "\($0)-" } ?? ""
            let outDir = URL(fileURLWithPath: out ?? "out/\(label)-\(alignLabel)\(method)")
            var o = NeuLigOptions(suite: label, outDirectory: outDir)
            o.parameters = parameters
            o.seed = seed
            o.modelFiles = files
            o.calibrationHoldout = calibrationHoldout
            o.calibrationSeed = calibrationSeed
            o.pretrained = pretrained.map { URL(fileURLWithPath: $0) }
            o.taskData = taskDataURLs
            o.models = models
            o.architecture = arch
            o.tasks = taskList
            o.quiet = quiet
            if let cache { o.zooRoot = URL(fileURLWithPath: cache) }
            if let data { o.dataDirectory = URL(fileURLWithPath: data) }
            let report = try NeuLigRun.run(o, comm: comm) { if comm.isRoot { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
            if comm.isRoot {
                print(report.table(), terminator: "")
                let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                let path = json ?? outDir.appendingPathComponent("report.json").path
                try writeAtomically(try enc.encode(report), to: path)
                print("report: \(path); fused model: \(outDir.appendingPathComponent("neulig-global.safetensors").path)")
            }
        }
    }
}

/// Runs `body` on every rank of the world. An error every rank raised alike (`PipelineError.everyRank`: agreed on, or
/// found before rank-specific work) ends the job cleanly with one message and exit status 1; any other error aborts.
func withWorldAgreeingOnErrors(_ context: String, _ body: (Communicator) throws -> Void) throws {
    let comm = try worldCommunicator()
    do {
        try body(comm)
        try comm.barrier()
    } catch let e as PipelineError where e.everyRank {
        if comm.isRoot { FileHandle.standardError.write(Data("Error: \(e.message)\n".utf8)) }
        if let mpi = comm as? MPICommunicator { try mpi.finalize() }
        throw ExitCode.failure
    } catch {
        comm.abort(message: "\(context): rank \(comm.rank) of \(comm.size) failed: \(error)", code: 1)
    }
    if let mpi = comm as? MPICommunicator { try mpi.finalize() }
}
