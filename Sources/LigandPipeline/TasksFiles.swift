import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandModels
import LigandNN
import LigandNumerics
import LigandZoo

/// Experts a user fine-tuned from one pretrained model, one task each with its own data set (`ligand merge
/// --pretrained P --model-files e1,e2,… --task-data d1,d2,…`): the tasks setting of the zoo's tasks suites on the
/// user's files, read and checked once for every method (MergeRun and NeuLigRun alike). Each task's calibration
/// split is a stratified, seeded hold-out of its training images (as `ligand split` writes it), its test set the
/// data set's own.
struct UserTasks {
    let pretrained: URL
    let urls: [URL]
    /// The tasks' names: the expert files' names without `.safetensors`.
    let names: [String]
    let architectures: [Architecture]
    let data: [ZooData]
    /// Each task's calibration hold-out (indices into its training images, in the split's order).
    let calibration: [[Int]]

    static func read(pretrained: URL, experts urls: [URL], taskData: [URL], holdout: Int, seed: UInt64) throws -> UserTasks {
        guard urls.count >= 2 else { throw PipelineError("a merge needs at least two experts (--model-files), got \(urls.count)") }
        guard taskData.count == urls.count else {
            throw PipelineError("--task-data names \(taskData.count) data set(s) for \(urls.count) experts: give one per --model-files entry, in the same order")
        }
        try ModelFiles.refuseListedTwice([pretrained] + urls)
        func header(_ url: URL) throws -> Architecture {
            do { return try ModelFile.architecture(of: try SafeTensorsFile(url: url)) } catch { throw PipelineError(wrapping: error) }
        }
        let preArch = try header(pretrained)
        let archs = try urls.map { try header($0) }
        for (u, a) in zip(urls, archs) {
            var backbone = a
            backbone.classes = preArch.classes
            guard backbone == preArch else {
                throw PipelineError("\(u.path): holds a \(a), but the pretrained model \(pretrained.path) holds a \(preArch) (an expert fine-tunes the pretrained backbone; only its head's classes may differ)")
            }
        }
        var data: [ZooData] = [], calibration: [[Int]] = []
        for (t, dir) in taskData.enumerated() {
            let d: ZooData
            do { d = try ZooData.load(directory: dir) } catch { throw PipelineError(wrapping: error) }
            calibration.append(try ModelFiles.holdout(d, for: archs[t], model: urls[t], holdout: holdout, seed: seed, role: "its task's data set").calibration)
            data.append(d)
        }
        return UserTasks(pretrained: pretrained, urls: urls, names: ModelFiles.names(urls), architectures: archs, data: data, calibration: calibration)
    }
}

extension MergeRun {
    /// A tasks merge of the user's experts (`UserTasks`); also an expert's file, for the fused file's header.
    static func mergeTasksFiles(_ o: MergeOptions, pretrained: URL, experts urls: [URL], taskData: [URL], comm: Communicator,
                                log: @escaping (String) -> Void) throws -> (MergeResult, URL) {
        if o.subset != nil || o.models != nil || o.tasks != nil { throw PipelineError("--pretrained merges every listed expert: choose them in --model-files") }
        let user = try UserTasks.read(pretrained: pretrained, experts: urls, taskData: taskData, holdout: o.calibrationHoldout, seed: o.calibrationSeed)
        let cuts = user.calibration.map { o.cutCalibration($0) }
        let pre = try agreeing(comm, "loading the pretrained model") { try ModelFile.load(pretrained).network }
        let heads = try agreeing(comm, "reading the task heads") {
            try urls.map { u -> (weight: Tensor, bias: Tensor) in
                let f = try SafeTensorsFile(url: u)
                return (try f.floats(pre.head.weight.name), try f.floats(pre.head.bias!.name))
            }
        }
        let archs = user.architectures
        let input = TasksInputs(suite: o.suite, tasks: user.names, architectures: archs, load: { try ModelFile.load(urls[$0], expecting: archs[$0]).network },
                                heads: heads, pretrained: pre, calibration: zip(user.data, cuts).map { $0.train.subset($1.statistics) },
                                test: user.data.map(\.test))
        if o.method.fuses {
            guard o.align == nil else { throw PipelineError("--align is for diverse-origin models; experts fine-tuned from --pretrained share its origin") }
            let selection = zip(user.data, cuts).map { $0.train.subset($1.selection) }
            return (try FusionRun.mergeTasks(input, selection: selection, options: o, comm: comm, log: log), urls[0])
        }
        return (try mergeTasks(input, options: o, comm: comm, log: log), urls[0])
    }
}

/// NeuLig's tasks: a zoo tasks suite's experts (task transforms of its data set) or the user's (`UserTasks`).
struct NeuLigTasks {
    let names: [String]
    let urls: [URL]
    let classes: [Int]
    let pretrained: URL
    /// The run evaluator's keys for a zoo suite (nil: the user's files, never cached).
    let keys: TasksKeys?
    /// Task ti's calibration images (cut to `calibrationSamples`) and test images.
    let calibration: (Int, Evaluator) throws -> LabeledImages
    let test: (Int, Evaluator) throws -> LabeledImages

    static func suite(_ o: NeuLigOptions, directory dir: URL, manifest: ZooManifest) throws -> NeuLigTasks {
        let labels = Array(Set(manifest.models.map(\.architecture))).sorted()
        let arch = o.architecture ?? labels.first!
        guard labels.contains(arch) else { throw PipelineError("suite '\(o.suite)' has no \(arch) models (it has \(labels.joined(separator: ", ")))") }
        guard o.architecture != nil || labels.count == 1 else {
            throw PipelineError("suite '\(o.suite)' holds several architectures (\(labels.joined(separator: ", "))): choose one with --arch")
        }
        var experts: [(task: TaskTransform, url: URL)] = manifest.models.compactMap { m in
            guard m.architecture == arch, case .expert(let t) = m.role else { return nil }
            return (t, dir.appendingPathComponent(m.file))
        }
        if let wanted = o.tasks {
            for w in wanted where !experts.contains(where: { $0.task.rawValue == w }) {
                throw PipelineError("suite '\(o.suite)' has no \(arch) expert for task '\(w)' (it has \(experts.map(\.task.rawValue).joined(separator: ", ")))")
            }
            experts = wanted.map { w in experts.first { $0.task.rawValue == w }! }
        }
        guard let pretrainedModel = manifest.models.first(where: { $0.architecture == arch && $0.role == .pretrained }) else {
            throw PipelineError("suite '\(o.suite)' has no pretrained \(arch) backbone")
        }
        let pretrained = dir.appendingPathComponent(pretrainedModel.file)
        let data = try (o.evaluator ?? Evaluator(budget: 0)).data(o.dataDirectory)
        let splits = try SuitePlan.splits(manifest.spec, labels: data.train.labels)
        var idx = splits.calibration
        if let n = o.calibrationSamples { idx = Array(idx.prefix(n)) }
        let calibrationImages = data.train.subset(idx)
        return NeuLigTasks(names: experts.map(\.task.rawValue), urls: experts.map(\.url), classes: experts.map(\.task.classes), pretrained: pretrained,
                           keys: TasksKeys(experts: experts, pretrained: pretrained, dataDirectory: o.dataDirectory),
                           calibration: { ti, _ in try experts[ti].task.apply(calibrationImages) },
                           test: { ti, evaluator in try evaluator.testSet(experts[ti].task, of: data) })
    }

    static func files(_ o: NeuLigOptions, pretrained: URL, experts urls: [URL], taskData: [URL]) throws -> NeuLigTasks {
        if o.models != nil || o.tasks != nil { throw PipelineError("--pretrained fuses every listed expert: choose them in --model-files") }
        let user = try UserTasks.read(pretrained: pretrained, experts: urls, taskData: taskData, holdout: o.calibrationHoldout, seed: o.calibrationSeed)
        let calibration = user.calibration.map { idx in o.calibrationSamples.map { Array(idx.prefix($0)) } ?? idx }
        return NeuLigTasks(names: user.names, urls: urls, classes: user.architectures.map(\.classes), pretrained: pretrained, keys: nil,
                           calibration: { ti, _ in user.data[ti].train.subset(calibration[ti]) }, test: { ti, _ in user.data[ti].test })
    }
}
