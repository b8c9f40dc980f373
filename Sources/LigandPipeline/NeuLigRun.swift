import Foundation
import LigandCollective
import LigandMerge
import LigandData
import LigandFormats
import LigandModels
import LigandNeuLig
import LigandNN
import LigandNumerics
import LigandZoo

/// How NeuLig's fused parameters are formed (algorithms.md, "How the fused parameters are formed").
public enum FusionMode: String, Codable, Sendable, CaseIterable {
    /// One fused backbone per task from β̄ over that task's calibration split (ours, default for reporting).
    case task
    /// One fused backbone for every task from β̄ over every task's calibration split (ours: the deployable model).
    case global
}

/// A NeuLig run's inputs and settings; NeuLig's own parameters (and the alignment's, for multi-level) in `parameters`,
/// as Methods/NeuLig.swift declares them.
public struct NeuLigOptions {
    public var parameters = ParameterValues()
    /// The Portland's initialisation and data order.
    public var seed: UInt64 = 0
    public var suite: String
    public var architecture: String?
    public var tasks: [String]?
    public var checkpointDirectory: URL
    public var outDirectory: URL
    public var dataDirectory: URL = MNISTFamily.defaultDirectory
    public var zooRoot: URL = ZooCache.defaultRoot
    public var quiet = false
    /// Seeds/splits suites: the first K models (nil: all of them).
    public var models: Int?
    /// Fuse these model files (diverse-origin models of one task, like a seeds suite) instead of the zoo suite
    /// `suite`, which then only labels the merge; nil: the suite.
    public var modelFiles: [URL]?
    /// Model files: training images held out (stratified by class, seeded) as the calibration split.
    public var calibrationHoldout = ModelFiles.defaultCalibrationHoldout
    public var calibrationSeed: UInt64 = 0
    /// `modelFiles` are experts fine-tuned from this model, one task each, on the data sets `taskData` (MergeOptions').
    public var pretrained: URL?
    public var taskData: [URL]?
    /// The run's shared evaluator (`ligand run` passes one to every merge; nil: nothing is kept).
    public var evaluator: Evaluator?

    public init(suite: String, outDirectory: URL, checkpointDirectory: URL? = nil) {
        self.suite = suite
        self.outDirectory = outDirectory
        self.checkpointDirectory = checkpointDirectory ?? outDirectory.appendingPathComponent("checkpoints")
    }

    // The parameters as the pipeline reads them.
    public var portland: PortlandConfig { NeuLig.portland(parameters, seed: seed) }
    /// Calibration images per task Portland trains on (nil: the suite's whole calibration split).
    public var calibrationSamples: Int? { parameters.calibrationSamples }
    public var checkpointEvery: Int { parameters.integer(NeuLig.checkpointEvery) ?? 0 }
    public var baselines: Bool { parameters.flag(NeuLig.baselines) }
    public var batchMode: Bool { parameters.flag(NeuLig.batchMode) }
    /// Seeds/splits suites: the alignment before NeuLig (multi-level); nil: the models as trained.
    public var align: (any MergeMethod.Type)? { parameters.align }
    public var bnSamples: Int { parameters.bnSamples }
}


public struct NeuLigReport: Codable, Sendable {
    public var method = "neulig"
    public var suite: String
    public var architecture: String
    public var tasks: [String]
    public var models: Int
    public var ranks: Int
    public var split = "test"
    public var seed: UInt64
    public var config: PortlandConfig
    public var calibrationSamplesPerTask: [Int]
    public var coefficientsPerTask: [[Double]]
    public var coefficientsGlobal: [Double]
    public var rows: [ReportRow]
    public var valuesPerPortlandStep: Int
    public var seconds: [String: Double]
    /// Same-task suites: "seeds" or "splits" (nil: a tasks suite).
    public var suiteKind: String? = nil
    /// Same-task suites: the models' names, in the order of the coefficients.
    public var modelNames: [String]? = nil
    /// Multi-level runs: the alignment applied before NeuLig, with its chosen settings.
    public var alignment: String? = nil
    /// Payload bytes rank 0 moved through collectives over the whole run, in total and per phase (CountingCommunicator).
    public var bytesCommunicated: Int? = nil
    public var bytesPerPhase: [String: Int]? = nil
    /// Measured bytes per Portland step on rank 0 (the Portland phase's bytes over the steps it ran).
    public var bytesPerPortlandStep: Double? = nil

    static let phaseOrder = ["align", "load", "features", "portland", "ensembles", "fused-task", "fused-global", "fused", "baselines"]

    /// A plain-text table: one row per model or merge, one column per task, the mean last.
    public func table() -> String {
        let nameWidth = max(34, (rows.map(\.name.count).max() ?? 0) + 2)
        let sameTask = suiteKind != nil
        var s: String
        if sameTask {
            s = "NeuLig\(alignment.map { " after \($0)" } ?? "") on \(suiteKind!) suite '\(suite)' (\(architecture)), K = \(models) models over \(ranks) rank(s), test accuracy %\n"
            s += "".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "accuracy\n"
        } else {
            s = "NeuLig on suite '\(suite)' (\(architecture)), K = \(models) experts over \(ranks) rank(s), test accuracy %\n"
            s += "tasks: " + tasks.enumerated().map { "T\($0.offset + 1) = \($0.element)" }.joined(separator: ", ") + "\n"
            s += "".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + tasks.indices.map { "T\($0 + 1)".padding(toLength: 7, withPad: " ", startingAt: 0) }.joined() + "mean\n"
        }
        for r in rows {
            s += r.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            if !sameTask { s += r.accuracies.map { String(format: "%-7.2f", 100 * $0) }.joined() }
            s += String(format: "%.2f", 100 * r.mean)
            if !r.hyperparameters.isEmpty { s += "   " + r.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
            s += "\n"
        }
        s += "β̄ (global): " + coefficientsGlobal.map { String(format: "%.3f", $0) }.joined(separator: " ")
        if let names = modelNames { s += "   (" + names.joined(separator: ", ") + ")" }
        s += "\n"
        let phases = Self.phaseOrder.filter { seconds[$0] != nil } + seconds.keys.filter { !Self.phaseOrder.contains($0) }.sorted()
        s += "wall seconds: " + phases.map { String(format: "%@ %.1f", $0, seconds[$0]!) }.joined(separator: ", ")
        s += String(format: " (total %.1f)\n", seconds.values.reduce(0, +))
        s += "communication (rank 0): \(valuesPerPortlandStep) Float64 payload values per Portland step"
        if ranks == 1 {
            s += "; one rank, so no bytes crossed ranks\n"
            return s
        }
        if let b = bytesPerPortlandStep { s += String(format: ", %.0f bytes per step measured", b) }
        if let total = bytesCommunicated {
            s += "; \(total) bytes over the run"
            if let per = bytesPerPhase {
                s += " (" + phases.compactMap { p in per[p].map { "\(p) \($0)" } }.joined(separator: ", ") + ")"
            }
        }
        s += "\n"
        return s
    }
}

/// NeuLig over MPI on a `tasks` suite: features cached per rank, Portland trained with all-reduced sums,
/// fused parameters Σ_k β̄_k θ_k formed by a rank-count-independent reduction, evaluated beside the ensembles.
public enum NeuLigRun {
    public static func run(_ o: NeuLigOptions, comm world: Communicator, log: @escaping (String) -> Void) throws -> NeuLigReport {
        let counter = CountingCommunicator(world)
        let comm: Communicator = counter
        var timer = PhaseTimer(counting: counter)

        let source: NeuLigTasks
        if let files = o.modelFiles, let pretrained = o.pretrained {
            source = try NeuLigTasks.files(o, pretrained: pretrained, experts: files, taskData: o.taskData ?? [])
        } else {
            if o.modelFiles != nil { return try runSameTask(o, suite: nil, comm: counter, log: log) }
            let (dir, manifest) = try ZooCache.find(suite: o.suite, root: o.zooRoot)
            if manifest.kind != .tasks { return try runSameTask(o, suite: (dir, manifest), comm: counter, log: log) }
            source = try NeuLigTasks.suite(o, directory: dir, manifest: manifest)
        }
        if let a = o.align {
            throw PipelineError("--align \(a.name) aligns diverse-origin models (a seeds or splits suite); the experts of '\(o.suite)' share one pretrained origin and are fused without it")
        }
        guard source.urls.count >= 2 else { throw PipelineError("NeuLig needs at least two experts, '\(o.suite)' gives \(source.urls.count)") }
        let k = source.urls.count
        let shard = ModelShard(total: k, comm: comm), local = shard.local
        let evaluator = o.evaluator ?? Evaluator(budget: 0)
        let keys = source.keys

        // Every rank reads every task's head (small), so a missing or misfit head fails on all ranks alike; only its own experts' backbones.
        let probe = try Network<Float>(try ModelFile.architecture(of: SafeTensorsFile(url: source.urls[0])), seed: 0)
        let heads = try zip(source.names, source.urls).map { name, url -> (weight: Tensor, bias: Tensor) in
            do {
                let f = try SafeTensorsFile(url: url)
                return (try f.floats(probe.head.weight.name), try f.floats(probe.head.bias!.name))
            } catch {
                throw PipelineError("\(url.path): cannot read the head of task '\(name)' ('\(probe.head.weight.name)', '\(probe.head.bias!.name)'): \(error)")
            }
        }
        let width = probe.featureWidth
        for (i, h) in heads.enumerated() where h.weight.shape != [source.classes[i], width] {
            throw PipelineError("\(source.urls[i].path): head '\(probe.head.weight.name)' has shape \(h.weight.shape), expected [\(source.classes[i]), \(width)] (experts with different feature widths cannot be fused)")
        }
        let nets = try source.urls[local].map { url -> Network<Float> in
            do { return try ModelFile.load(url).network } catch { throw PipelineError("\(url.path): \(error)", everyRank: false) }
        }
        func calibrationSet(_ ti: Int) throws -> LabeledImages {
            let set = try source.calibration(ti, evaluator)
            guard set.count > 0 else { throw PipelineError("task '\(source.names[ti])': the calibration split is empty", everyRank: false) }
            return set
        }
        let style: PhaseProgress.Style = (o.quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle
        let featureProgress = PhaseProgress("features (calibration)", total: k, style: style)
        var tasks: [PortlandTask] = []
        for ti in 0..<k {
            let cal = try calibrationSet(ti)
            let feats = nets.map { Trainer.featureRows($0, data: cal) }
            tasks.append(PortlandTask(name: source.names[ti], headWeight: heads[ti].weight.storage.map(Double.init),
                                      headBias: heads[ti].bias.storage.map(Double.init), labels: cal.labels, features: feats))
            featureProgress.update(ti + 1)
        }
        featureProgress.finish()
        timer.lap("features")

        let backbones: [[(name: String, value: Tensor)]] = nets.map { $0.backboneStateDict() }
        let backboneLayout = probe.backboneStateDict().map { (name: $0.name, shape: $0.value.shape) }
        let flat = backbones.map { $0.flatMap(\.value.storage) }
        let regularizer: [Double]
        switch o.portland.regularizer {
        case .paper: regularizer = try PortlandRegularizer.paperScores(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .gram: regularizer = try PortlandRegularizer.gram(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .none: regularizer = []
        }
        let portland = try Portland(comm: comm, totalModels: k, localModels: local, width: width, tasks: tasks,
                                    regularizer: regularizer, config: o.portland)
        let stepsRun = try train(portland, o, style: style, log: log)
        timer.lap("portland")
        let (perTask, global) = try portland.meanCoefficients()

        // Test-set evaluation: every rank its experts' features; sums over models by the deterministic reduction.
        var rows: [ReportRow] = []
        var expertOwn = [Double](repeating: 0, count: k)
        var ensemble = [Double](repeating: 0, count: k), portlandEnsemble = [Double](repeating: 0, count: k)
        var tests: [LabeledImages] = []
        var batchModeAccuracy = [Double](repeating: 0, count: k)
        let evalProgress = PhaseProgress("evaluation (test, ensembles)", total: k, style: style)
        for ti in 0..<k {
            let test = try source.test(ti, evaluator)
            tests.append(test)
            let n = test.count, c = source.classes[ti]
            let feats = nets.enumerated().map { i, net in
                evaluator.features(model: keys?.experts[local.lowerBound + i], data: keys?.test[ti] ?? "") { Trainer.featureRows(net, data: test) }
            }
            // The experts' logits, as a forward pass gives them, for the run's other merges (their ensembles).
            for (i, f) in feats.enumerated() where o.evaluator != nil {
                guard let keys else { break }
                _ = evaluator.logits(keys.test(model: keys.experts[local.lowerBound + i], task: ti)) { Trainer.headLogits(f, head: heads[ti], like: probe) }
            }
            let u = feats.map { f -> [Double] in headOutputs(f, n: n, width: width, head: heads[ti]) }
            let soft = u.map { Loss.softmax(TensorOf<Double>(shape: [n, c], storage: $0)).storage }
            let pEns = try shard.sum(soft)
            ensemble[ti] = Evaluation.accuracy(pEns[...], classes: c, labels: test.labels)
            let beta = try portland.betas(localFeatures: feats, count: n)
            let weighted = u.enumerated().map { (i, ui) -> [Double] in
                let kk = local.lowerBound + i
                return (0..<(n * c)).map { ui[$0] * beta[($0 / c) * k + kk] }
            }
            let y = try shard.sum(weighted)
            portlandEnsemble[ti] = Evaluation.accuracy(y[...], classes: c, labels: test.labels)
            if o.batchMode {
                // Paper parity: each batch of 128 gets a model merged with its first sample's β (needs all K experts at test time).
                var hits = 0.0
                for lo in stride(from: 0, to: n, by: 128) {
                    let rows = Array(lo..<min(n, lo + 128))
                    let merged = try WeightedFusion.fuse(localTensors: backbones, coefficients: Array(beta[(lo * k)..<(lo * k + k)]), localModels: local,
                                                         layout: backboneLayout, comm: comm)
                    if comm.isRoot {
                        let net = try probe.with(backbone: Dictionary(uniqueKeysWithValues: merged.map { ($0.name, $0.value) }), head: heads[ti])
                        hits += try Trainer.accuracy(net, data: test, indices: rows) * Double(rows.count)
                    }
                }
                var h = [hits]
                try comm.broadcast(&h, root: 0)
                batchModeAccuracy[ti] = h[0] / Double(n)
            }
            var own = [0.0]
            if local.contains(ti) { own[0] = Evaluation.accuracy(u[ti - local.lowerBound][...], classes: c, labels: test.labels) }
            try comm.allreduce(&own, op: .sum)
            expertOwn[ti] = own[0]
            evalProgress.update(ti + 1)
        }
        evalProgress.finish()
        timer.lap("ensembles")

        /// Accuracy of backbone θ with task ti's head on task ti's set (this rank alone).
        func accuracy(_ backbone: [(name: String, value: Tensor)], task ti: Int, sets: [LabeledImages]) throws -> Double {
            let net = try probe.with(backbone: Dictionary(uniqueKeysWithValues: backbone.map { ($0.name, $0.value) }), head: heads[ti])
            return try Trainer.accuracy(net, data: sets[ti], indices: Array(0..<sets[ti].count))
        }
        /// Accuracy of backbone θ with each task's head on that task's set, task ti on rank ti mod size.
        func evaluate(_ backbone: [(name: String, value: Tensor)], onTasks which: [Int], sets: [LabeledImages]) throws -> [Double] {
            var acc = [Double](repeating: 0, count: k)
            for ti in which where ti % comm.size == comm.rank { acc[ti] = try accuracy(backbone, task: ti, sets: sets) }
            try comm.allreduce(&acc, op: .sum)
            return acc
        }
        func fuse(_ coefficients: [Double]) throws -> [(name: String, value: Tensor)] {
            try WeightedFusion.fuse(localTensors: backbones, coefficients: coefficients, localModels: local, layout: backboneLayout, comm: comm)
        }
        let all = Array(0..<k)
        var taskMode = [Double](repeating: 0, count: k)
        let fusedProgress = PhaseProgress("evaluation (test, fused per task)", total: (k - comm.rank + comm.size - 1) / comm.size, style: style)
        // Every rank takes part in every fusion and keeps the models of its tasks (ti mod size), then evaluates them at once.
        var mine: [(task: Int, backbone: [(name: String, value: Tensor)])] = []
        for ti in 0..<k {
            let fused = try fuse(perTask[ti])
            if ti % comm.size == comm.rank { mine.append((ti, fused)) }
        }
        for (j, m) in mine.enumerated() { taskMode[m.task] = try accuracy(m.backbone, task: m.task, sets: tests); fusedProgress.update(j + 1) }
        mine = []
        try comm.allreduce(&taskMode, op: .sum)
        fusedProgress.finish()
        timer.lap("fused-task")
        let globalBackbone = try fuse(global)
        let globalMode = try evaluate(globalBackbone, onTasks: all, sets: tests)
        timer.lap("fused-global")

        func row(_ name: String, _ kind: RowKind, _ acc: [Double], _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: acc, mean: acc.reduce(0, +) / Double(k), hyperparameters: hp)
        }
        rows.append(row("experts (each on its own task)", .bestSingle, expertOwn))
        rows.append(row("ensemble (mean softmax)", .ensemble, ensemble))
        rows.append(row("Portland ensemble (feature, β(x))", .portlandEnsemble, portlandEnsemble))
        rows.append(row("NeuLig fused, task mode", .fused, taskMode, ["loss": o.portland.loss.rawValue, "reg": o.portland.regularizer.rawValue, "features": o.portland.featureNorm.rawValue]))
        rows.append(row("NeuLig fused, global mode (1 model)", .fused, globalMode))
        if o.batchMode { rows.append(row("NeuLig merged per batch (paper)", .fused, batchModeAccuracy)) }

        if o.baselines {
            // The task-vector methods' own maths (TaskVectorContext, TaskArithmetic.search, TIES.search), scored on calibration.
            let pretrained = try ModelFile.load(source.pretrained).network
            let pre = pretrained.backboneStateDict()
            let cals = try (0..<k).map { try calibrationSet($0) }
            let context = try taskVectorContext(pre: pre, experts: backbones, shard: shard, options: o) { flat in
                try evaluate(flat, onTasks: all, sets: cals).reduce(0, +) / Double(k)
            }
            func backbone(_ flat: [Double]) -> [(name: String, value: Tensor)] { unflatten(flat, like: pre) }
            rows.append(row("pretrained + task heads", .baseline, try evaluate(pre, onTasks: all, sets: tests)))
            rows.append(row("weight averaging", .baseline, try evaluate(backbone(context.average), onTasks: all, sets: tests)))
            let taskArithmetic = try TaskArithmetic.search(context, experts: context.experts).outcome
            rows.append(row("task arithmetic", .baseline, try evaluate(backbone(taskArithmetic.backbone), onTasks: all, sets: tests), taskArithmetic.hyperparameters))
            let ties = try TIES.search(context, experts: context.experts).outcome
            rows.append(row("TIES", .baseline, try evaluate(backbone(ties.backbone), onTasks: all, sets: tests), ties.hyperparameters))
            timer.lap("baselines")
        }

        if comm.isRoot {
            try FileManager.default.createDirectory(at: o.outDirectory, withIntermediateDirectories: true)
            var tensors: [(name: String, value: TensorPayload)] = globalBackbone.map { ($0.name, .float32($0.value)) }
            for (ti, name) in source.names.enumerated() {
                tensors.append(("heads.\(name).weight", .float32(heads[ti].weight)))
                tensors.append(("heads.\(name).bias", .float32(heads[ti].bias)))
            }
            tensors += probe.batchCounters().map { ($0.name, .int64([0], shape: [])) }
            var meta = [ModelFile.architectureKey: probe.architecture.json, ModelFile.headsKey: source.names.joined(separator: ","),
                        "ligand.method": "neulig global", "ligand.coefficients": global.map { String($0) }.joined(separator: ",")]
            if let r = ImportRecord.shared(by: source.urls) { meta[ImportRecord.metadataKey] = r }
            try SafeTensors.write(tensors, metadata: meta, to: o.outDirectory.appendingPathComponent("neulig-global.safetensors"))
        }
        try comm.barrier()
        var report = NeuLigReport(suite: o.suite, architecture: probe.architecture.description, tasks: source.names, models: k,
                                  ranks: comm.size, seed: o.portland.seed, config: o.portland, calibrationSamplesPerTask: tasks.map(\.count),
                                  coefficientsPerTask: perTask, coefficientsGlobal: global, rows: rows,
                                  valuesPerPortlandStep: portland.floatsPerStep / max(1, portland.step), seconds: timer.seconds)
        report.bytesCommunicated = counter.bytes
        report.bytesPerPhase = timer.bytes
        report.bytesPerPortlandStep = stepsRun > 0 ? Double(timer.bytes["portland"] ?? 0) / Double(stepsRun) : nil
        return report
    }

    /// Trains the Portland to `o.portland.epochs`, resuming from and writing checkpoints; returns the steps run here.
    static func train(_ portland: Portland, _ o: NeuLigOptions, style: PhaseProgress.Style, log: (String) -> Void) throws -> Int {
        let resumed = try PortlandCheckpoint.resume(portland, directory: o.checkpointDirectory)
        if resumed > 0 { log("resumed Portland from the checkpoint at epoch \(resumed)") }
        let first = portland.step
        let progress = PhaseProgress("Portland epochs", total: o.portland.epochs, style: style)
        while portland.epoch < o.portland.epochs {
            let loss = try portland.trainEpoch()
            progress.update(portland.epoch, detail: String(format: "loss %.4f", loss))
            if o.checkpointEvery > 0 && portland.epoch % o.checkpointEvery == 0 && portland.epoch < o.portland.epochs {
                try PortlandCheckpoint.save(portland, directory: o.checkpointDirectory)
            }
        }
        progress.finish()
        return portland.step - first
    }

    /// The experts' backbones as the task-vector methods take them: flat Float64 in state-dict order, the average
    /// summed over every model (every rank receives it), BN running statistics averaged rather than task-vectored.
    static func taskVectorContext(pre: [(name: String, value: Tensor)], experts: [[(name: String, value: Tensor)]], shard: ModelShard,
                                  options o: NeuLigOptions, score: @escaping ([(name: String, value: Tensor)]) throws -> Double) throws -> TaskVectorContext {
        let layout = FlatLayout(pre)
        func flat(_ t: [(name: String, value: Tensor)]) -> [Double] { layout.flatten(Dictionary(uniqueKeysWithValues: t.map { ($0.name, $0.value) })) }
        let local = experts.map(flat)
        let average = try TaskVectors.average(local, shard: shard)
        return TaskVectorContext(shard: shard, experts: local, pretrained: flat(pre), average: average, layout: layout,
                                 parameters: o.parameters, seed: o.seed) { try score(unflatten($0, like: pre)) }
    }

    /// A flat Float64 backbone back into `like`'s named tensors (Float32), in `like`'s order (FlatLayout's unflatten).
    static func unflatten(_ flat: [Double], like: [(name: String, value: Tensor)]) -> [(name: String, value: Tensor)] {
        let d = FlatLayout(like).unflatten(flat)
        return like.map { ($0.name, d[$0.name]!) }
    }

    static func headOutputs(_ f: [Float], n: Int, width: Int, head: (weight: Tensor, bias: Tensor)) -> [Double] {
        let z = TensorOf<Double>(shape: [n, width], storage: f.map(Double.init))
        var y = matmul(z, head.weight.converted(to: Double.self), transB: true)
        let c = head.bias.count
        for r in 0..<n { for j in 0..<c { y.storage[r * c + j] += Double(head.bias.storage[j]) } }
        return y.storage
    }
}
