import ArgumentParser
import Foundation
import LigandCollective
import LigandMerge
import LigandNeuLig
import LigandPipeline

extension AlignLoss: ExpressibleByArgument {}
extension RegularizerKind: ExpressibleByArgument {}
extension FeatureNorm: ExpressibleByArgument {}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuse the models of a zoo suite (or model files) into one and report it beside the ensemble.",
        discussion: """
        --method neulig trains NeuLig's Portland on the experts' cached calibration features of a `tasks` suite \
        (one expert per rank, or a block of them) and reports the fused model in `task` and `global` mode beside the \
        prediction ensemble, the Portland (feature) ensemble, the pretrained backbone, weight averaging and task \
        arithmetic (λ fitted on calibration) and TIES (k and λ fitted on calibration). On a seeds or splits suite it fuses \
        models of one task with their own heads (NeuLig alone), or, with --align cca|permute, first aligns them into the \
        reference's space (multi-level). Run it under mpirun to spread the experts over ranks. \
        --model-files a.safetensors,b.safetensors,... fuses your own models instead of a suite: models of one \
        architecture trained on one task (like a seeds suite), calibrated on a stratified hold-out of the training \
        images (--calibration-holdout, --calibration-seed), tested on the official test set.
        """)

    enum Method: String, ExpressibleByArgument, CaseIterable {
        case neulig, average, ties, permute, cca, regmean, progressive
        case taskArithmetic = "task-arithmetic", weightMatching = "weight-matching"
    }

    @Option(help: "Fusion method: neulig, average, task-arithmetic, ties, regmean, progressive (tasks suites), weight-matching, permute, cca (seeds/splits suites; average too). Required, no default.")
    var method: Method
    @Option(help: "Zoo suite to fuse (see `ligand zoo list`). Required unless --model-files is given; no default.")
    var suite: String?
    @Option(help: ArgumentHelp("Model files to fuse instead of a suite, comma-separated (≥ 2, one architecture, one task; default: none, fuse --suite).", valueName: "files"))
    var modelFiles: String?
    @Option(help: ArgumentHelp("--model-files: training images held out (stratified by class) as the calibration split.", valueName: "n"))
    var calibrationHoldout: Int = ModelFiles.defaultCalibrationHoldout
    @Option(help: ArgumentHelp("--model-files: seed of the calibration hold-out.", valueName: "seed"))
    var calibrationSeed: UInt64 = 0
    @Option(help: "Architecture of the suite to use when it holds several (mlp, vgg, resnet20; default: the only one).")
    var arch: String?
    @Option(help: "Tasks to fuse, comma-separated (default: every task of the suite).")
    var tasks: String?
    @Option(help: "Portland alignment loss: sup (labels), semi (entropy) or ensemble (KL to the prediction ensemble).")
    var loss: AlignLoss = .semi
    @Option(help: "Regulariser: paper (standardised parameter sums), gram (⟨θ_k−θ̄, θ_l−θ̄⟩) or none.")
    var regularizer: RegularizerKind = .paper
    @Option(help: "Portland input: standard (z-scores per model and feature, from the training samples) or none (raw features, as in the paper).")
    var featureNorm: FeatureNorm = .standard
    @Option(help: "The regulariser is divided by this.")
    var scaling: Double = 100
    @Option(help: "Adam learning rate for the Portland.")
    var lr: Double = 1e-3
    @Option(help: "Portland batch size (one task per batch, tasks round-robin).")
    var batchSize: Int = 128
    @Option(help: "Portland epochs.")
    var epochs: Int = 1000
    @Option(help: "Seed of the Portland's initialisation and data order.")
    var seed: UInt64 = 0
    @Option(help: "Calibration images per task the Portland trains on, and the alignment methods fit on (default: the suite's whole calibration split, or the --calibration-holdout images).")
    var calibrationSamples: Int?
    @Option(help: "Save a checkpoint every N epochs (0: never); a rerun of the same command resumes from it.")
    var checkpointEvery: Int = 50
    @Option(help: "Output directory for the fused model, the report and the checkpoints (default: out/SUITE-METHOD, out/model-files-METHOD with --model-files).")
    var out: String?
    @Option(help: "Also write the report as JSON here (default: OUT/report.json).")
    var json: String?
    @Option(help: "Zoo cache root (default: $LIGAND_ZOO_CACHE or cache/zoo).")
    var cache: String?
    @Option(help: "Directory with the Fashion-MNIST IDX files (default: $LIGAND_FASHION_MNIST or /usr/share/datasets/fashion-mnist).")
    var data: String?
    @Flag(help: "Also report the paper's batch mode: a model merged per evaluation batch from its first sample's β (needs every expert at test time; default: off).")
    var batchMode = false
    @Flag(help: "Skip the baselines (pretrained, averaging, task arithmetic, TIES; default: off, they run).")
    var noBaselines = false
    @Flag(help: "Sum over models with a plain allreduce instead of the rank-count-independent reduction (faster; results then depend on -np; default: off).")
    var fastSums = false
    @Flag(help: "No progress output (default: off, progress on stderr).")
    var quiet = false
    @Option(help: "neulig, regmean, progressive on a seeds/splits suite: first align the models into the reference's space with cca, permute or weight-matching (multi-level; default: none, the models as trained).")
    var align: String?
    @Option(help: "Alignment methods: use the first K models of the suite (default: all).")
    var models: Int?
    @Option(help: "Alignment methods: the reference model: first, best (on calibration) or a model index.")
    var reference: String = "first"
    @Option(help: "cca: relative ridges γ to choose from on calibration, comma-separated (default: 1e-6,1e-5,...,1e7).")
    var gammas: String?
    @Option(help: "task-arithmetic, ties: λ grid, comma-separated (default: 0.05,0.1,...,1).")
    var lambdas: String?
    @Option(name: .customLong("ties-k"), help: "ties: percentages of each task vector kept, comma-separated (default: 10,20,30).")
    var tiesK: String?
    @Option(help: "Alignment methods: training images BatchNorm statistics are re-estimated on after merging.")
    var bnSamples: Int = 5000
    @Option(help: "Alignment methods on BatchNorm networks: map (BN vectors mapped like biases, statistics re-estimated after merging), map-keep (mapped, not re-estimated), fold (BN folded into the convolution before mapping) or repair (folded, then REPAIR: each fused unit given the models' mean output statistics).")
    var batchNorm: BatchNormHandling = .map
    @Option(help: "regmean: scales α of the Gram matrices' off-diagonal entries to choose from on calibration, comma-separated (default: 0,0.1,...,1).")
    var alphas: String?
    @Option(help: "regmean, progressive: ridges relative to the mean diagonal of the Gram matrix, comma-separated (default: 1e-4,1e-3,1e-2,1e-1).")
    var ridges: String?
    @Option(help: "regmean, progressive: calibration images per task held out (at most half the split) to choose α, the ridge and λ.")
    var selectionSamples: Int = 1000
    @Option(help: .hidden)
    var dumpCalibration: String?

    func validate() throws {
        if suite != nil && modelFiles != nil { throw ValidationError("--suite and --model-files are alternatives: give one of them") }
        if suite == nil && modelFiles == nil { throw ValidationError("give --suite (a zoo suite) or --model-files (your own model files)") }
        if modelFiles != nil {
            if let arch { throw ValidationError("--arch \(arch) chooses among a suite's architectures; model files declare their own") }
            if tasks != nil { throw ValidationError("--tasks applies to tasks suites; model files are models of one task") }
        }
        guard calibrationHoldout >= 2 else { throw ValidationError("--calibration-holdout must be at least 2, got \(calibrationHoldout)") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be positive, got \(lr)") }
        guard scaling > 0 else { throw ValidationError("--scaling must be positive, got \(scaling)") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
        guard epochs >= 0 else { throw ValidationError("--epochs must be non-negative, got \(epochs)") }
        if let n = calibrationSamples, n <= 0 { throw ValidationError("--calibration-samples must be positive, got \(n) (an empty calibration split cannot train a Portland)") }
        guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every must be non-negative") }
    }

    static func numbers(_ text: String, option: String) throws -> [Double] {
        try text.split(separator: ",").map { part in
            let t = part.trimmingCharacters(in: .whitespaces)
            guard let v = Double(t) else { throw AlignError("\(option): '\(t)' is not a number") }
            return v
        }
    }

    /// The label of the merge: the suite, or `model-files` for --model-files.
    var label: String { suite ?? "model-files" }
    /// --model-files as URLs (nil: a suite).
    var files: [URL]? {
        modelFiles.map { $0.split(separator: ",").map { URL(fileURLWithPath: $0.trimmingCharacters(in: .whitespaces)) } }
    }

    /// Every non-NeuLig method: the "statistics → maps → weights" pipeline of LigandPipeline/AlignRun.
    func runAlignment(_ m: AlignMethod) throws {
        let outDir = URL(fileURLWithPath: out ?? "out/\(label)-\(method.rawValue)")
        try withWorldAgreeingOnErrors("ligand merge") { comm in
            var o = AlignOptions(method: m, suite: label, outDirectory: outDir)
            o.modelFiles = files
            o.calibrationHoldout = calibrationHoldout
            o.calibrationSeed = calibrationSeed
            o.architecture = arch
            o.models = models
            o.reference = try ReferenceRule(parsing: reference)
            if let gammas { o.gammas = try Self.numbers(gammas, option: "--gammas") }
            if let lambdas { o.lambdas = try Self.numbers(lambdas, option: "--lambdas") }
            if let tiesK { o.tiesKeep = try Self.numbers(tiesK, option: "--ties-k").map { $0 / 100 } }
            o.calibrationSamples = calibrationSamples
            o.bnSamples = bnSamples
            o.batchNorm = batchNorm
            if let alphas { o.alphas = try Self.numbers(alphas, option: "--alphas") }
            if let ridges { o.ridges = try Self.numbers(ridges, option: "--ridges") }
            o.selectionSamples = selectionSamples
            o.dumpCalibration = dumpCalibration.map { URL(fileURLWithPath: $0) }
            if let align {
                guard let a = AlignMethod(rawValue: align) else { throw AlignError("--align must be cca, permute or weight-matching, got '\(align)'") }
                o.align = a
            }
            o.seed = seed
            o.quiet = quiet
            if let cache { o.zooRoot = URL(fileURLWithPath: cache) }
            if let data { o.dataDirectory = URL(fileURLWithPath: data) }
            try o.validate()
            let report = try AlignRun.run(o, comm: comm) { if comm.isRoot && !quiet { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
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
        if let m = AlignMethod(rawValue: method.rawValue) { return try runAlignment(m) }
        try withWorld("ligand merge") { comm in
            let outDir = URL(fileURLWithPath: out ?? "out/\(label)-\(align.map { "\($0)-" } ?? "")\(method.rawValue)")
            var o = NeuLigOptions(suite: label, outDirectory: outDir)
            o.modelFiles = files
            o.calibrationHoldout = calibrationHoldout
            o.calibrationSeed = calibrationSeed
            if let align {
                guard let a = AlignMethod(rawValue: align), a.aligns else { throw AlignError("--align must be cca, permute or weight-matching, got '\(align)'") }
                o.align = a
            }
            o.reference = try ReferenceRule(parsing: reference)
            if let gammas { o.gammas = try Self.numbers(gammas, option: "--gammas") }
            if let lambdas { o.lambdas = try Self.numbers(lambdas, option: "--lambdas") }
            if let tiesK { o.tiesKeep = try Self.numbers(tiesK, option: "--ties-k").map { $0 / 100 } }
            o.models = models
            o.bnSamples = bnSamples
            o.architecture = arch
            o.tasks = tasks?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            o.portland.loss = loss; o.portland.regularizer = regularizer; o.portland.featureNorm = featureNorm; o.portland.scaling = scaling
            o.portland.learningRate = lr; o.portland.batchSize = batchSize; o.portland.epochs = epochs; o.portland.seed = seed
            o.portland.deterministic = !fastSums
            o.calibrationSamples = calibrationSamples
            o.checkpointEvery = checkpointEvery
            o.baselines = !noBaselines
            o.batchMode = batchMode
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

/// Runs `body` on every rank of the world. An error every rank raised alike (`AlignError.everyRank`: agreed on, or
/// found before rank-specific work) ends the job cleanly with one message and exit status 1; any other error aborts.
func withWorldAgreeingOnErrors(_ context: String, _ body: (Communicator) throws -> Void) throws {
    let comm = try worldCommunicator()
    do {
        try body(comm)
        try comm.barrier()
    } catch let e as AlignError where e.everyRank {
        if comm.isRoot { FileHandle.standardError.write(Data("Error: \(e.message)\n".utf8)) }
        if let mpi = comm as? MPICommunicator { try mpi.finalize() }
        throw ExitCode.failure
    } catch {
        comm.abort(message: "\(context): rank \(comm.rank) of \(comm.size) failed: \(error)", code: 1)
    }
    if let mpi = comm as? MPICommunicator { try mpi.finalize() }
}

extension BatchNormHandling: ExpressibleByArgument {}
