import ArgumentParser
import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandNN
import LigandZoo

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy of a set of models and of their prediction ensemble (models spread over the ranks).",
        discussion: """
        MODELS are model files, or one cached suite (its name, or its directory). Each rank computes its \
        models' logits; one rank-order sum forms the ensembles (mean of softmaxes, mean of logits), so the \
        table is identical for any number of ranks. A tasks suite is evaluated per task on the task's \
        transformed test set, each model read through that task's frozen head, with the pretrained \
        backbone, weight averaging and task arithmetic (λ fitted on calibration) as baselines.
        """)

    @Argument(help: "Model files, or a suite name / suite directory.")
    var models: [String]
    @OptionGroup var cacheOption: CacheOption
    @Option(help: DataOption.help)
    var data: String?
    @Option(parsing: .unconditional, help: "Evaluate on the first N test images only (default: all).")
    var testImages: Int?
    @Option(parsing: .unconditional, help: "tasks suites: calibration images per task for fitting λ (default: 1000).")
    var calibrationImages: Int = 1000
    @Flag(inversion: .prefixedNo, help: "tasks suites: also evaluate the pretrained backbone, weight averaging and task arithmetic.")
    var baselines = true
    @Option(help: ArgumentHelp("Also write the report as JSON (atomically, on rank 0; default: no JSON file).", valueName: "file"))
    var json: String?
    @Flag(help: "No progress output (default: off, progress on stderr).")
    var quiet = false
    @OptionGroup var verification: VerifyOption

    enum Target {
        case files([URL])
        case suite(URL, ZooManifest)
    }

    func resolve() throws -> Target {
        if models.count == 1, !models[0].hasSuffix(".safetensors") {
            let arg = models[0]
            let asDir = URL(fileURLWithPath: arg, isDirectory: true)
            let manifestURL = asDir.appendingPathComponent(ZooManifest.fileName)
            if FileManager.default.fileExists(atPath: manifestURL.path) { return .suite(asDir, try ZooManifest.read(manifestURL)) }
            let found = try ZooCache.find(suite: arg, root: cacheOption.root)
            return .suite(found.directory, found.manifest)
        }
        return .files(models.map { URL(fileURLWithPath: $0) })
    }

    func validate() throws {
        try CountOption.check(testImages, "--test-images", min: 1)
        try CountOption.check(calibrationImages, "--calibration-images", min: 1, max: RecipeLimits.trainingImages)
    }

    func run() throws {
        let dir = data.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? MNISTFamily.defaultDirectory
        if let testImages, testImages < 1 { failBeforeCollectives(ValidationError("--test-images must be positive, got \(testImages)")) }
        let target: Target
        let test: LabeledImages
        var calibration: LabeledImages?
        verification.apply()
        do {
            target = try resolve()
            // Every model's input shape, with the file that declares it, to hold the test images against.
            var inputs: [(file: String, input: [Int])] = []
            switch target {
            case .files(let urls):
                inputs.append((urls[0].path, try Evaluation.commonArchitecture(urls).input))
                if let json { _ = try FileChecks.resolveOutput(json, inputs: urls.map(\.path)) }
            case .suite(let d, let m):
                for a in m.spec.architectures {
                    let urls = m.models.filter { $0.architecture == a.label }.map { d.appendingPathComponent($0.file) }
                    let arch = try Evaluation.commonArchitecture(urls, ignoringClasses: m.kind == .tasks)
                    if let u = urls.first { inputs.append((u.path, arch.input)) }
                }
                if let json { _ = try FileChecks.resolveOutput(json) }
            }
            _ = try ZooData.identity(directory: dir)
            var t = try ImageDataset.load(directory: dir, split: .test)
            if let n = testImages, n < t.count { t = t.subset(Array(0..<n)) }
            guard t.count > 0 else { throw InputError.noImages(path: dir.path) }
            for (file, input) in inputs where [t.height, t.width, t.channels] != input {
                throw InputError.dataShape(path: dir.path, found: [t.height, t.width, t.channels], expected: input, model: file)
            }
            test = t
            if case .suite(_, let m) = target, m.kind == .tasks {
                let train = try ImageDataset.load(directory: dir, split: .train)
                let splits = try SuitePlan.splits(m.spec, labels: train.labels)
                calibration = train.subset(Array(splits.calibration.prefix(calibrationImages)))
            }
        } catch { failBeforeCollectives(error) }

        try withWorld("ligand eval") { comm in
            var reports: [EvalReport] = []
            switch target {
            case .files(let urls):
                reports.append(try Evaluation.sameTask(files: urls, names: urls.map { $0.deletingPathExtension().lastPathComponent },
                                                       data: test, suite: nil, split: "test", comm: comm, progress: quiet ? .quiet : PhaseProgress.defaultStyle))
            case .suite(let d, let m):
                for a in m.spec.architectures {
                    let group = m.models.filter { $0.architecture == a.label }
                    if m.kind == .tasks {
                        let experts = group.compactMap { e in e.task.flatMap(TaskTransform.init(rawValue:)).map { (task: $0, url: d.appendingPathComponent(e.file)) } }
                        guard let pre = group.first(where: { $0.role == .pretrained }) else { throw ZooError("\(d.path): the manifest lists no pretrained \(a.label)") }
                        reports.append(try Evaluation.tasks(experts: experts, pretrained: d.appendingPathComponent(pre.file), test: test,
                                                            calibration: calibration!, suite: m.suite, baselines: baselines,
                                                            lambdas: Evaluation.taskArithmeticLambdas, comm: comm, progress: quiet ? .quiet : PhaseProgress.defaultStyle))
                    } else if m.kind == .splits {
                        // Each partition's models are fused together, so each gets its own ensemble.
                        for (p, spec) in (m.spec.partitions ?? []).enumerated() {
                            let part = group.filter { if case .shard(let q, _) = $0.role { return q == p }; return false }
                            guard !part.isEmpty else { continue }
                            let label = "\(m.suite) partition \(p) (\(spec.type) × \(spec.parts)\(spec.alpha.map { ", α = \($0)" } ?? ""))"
                            reports.append(try Evaluation.sameTask(files: part.map { d.appendingPathComponent($0.file) }, names: part.map(\.name),
                                                                   data: test, suite: label, split: "test", comm: comm, progress: quiet ? .quiet : PhaseProgress.defaultStyle))
                        }
                    } else {
                        reports.append(try Evaluation.sameTask(files: group.map { d.appendingPathComponent($0.file) }, names: group.map(\.name),
                                                               data: test, suite: m.suite, split: "test", comm: comm, progress: quiet ? .quiet : PhaseProgress.defaultStyle))
                    }
                }
            }
            guard comm.isRoot else { return }
            for r in reports { print(r.render()) }
            if let json {
                let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
                try writeAtomically(try enc.encode(reports), to: json, inputs: {
                    if case .files(let urls) = target { return urls.map(\.path) }
                    return []
                }())
                print("wrote \(json)")
            }
        }
    }
}
