import Foundation
import LigandCollective
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

public struct NeuLigOptions: Sendable {
    public var suite: String
    public var architecture: String?
    public var tasks: [String]?
    public var portland = PortlandConfig()
    /// Calibration images per task Portland trains on (nil: the suite's whole calibration split).
    public var calibrationSamples: Int?
    public var checkpointEvery = 50
    public var checkpointDirectory: URL
    public var outDirectory: URL
    public var dataDirectory: URL = MNISTFamily.defaultDirectory
    public var zooRoot: URL = ZooCache.defaultRoot
    public var baselines = true
    /// Also report the paper's `batch` mode: a merged model per evaluation batch from its first sample's β.
    public var batchMode = false
    public var quiet = false

    public init(suite: String, outDirectory: URL, checkpointDirectory: URL? = nil) {
        self.suite = suite
        self.outDirectory = outDirectory
        self.checkpointDirectory = checkpointDirectory ?? outDirectory.appendingPathComponent("checkpoints")
    }
}

/// One line of a report: a model or merge, its accuracy per task and on average.
public struct ReportRow: Codable, Sendable {
    public var name: String
    public var kind: String
    public var accuracies: [Double]
    public var mean: Double
    public var hyperparameters: [String: String] = [:]
    public var seconds: Double?
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

    /// A plain-text table: one row per model or merge, one column per task, the mean last.
    public func table() -> String {
        let nameWidth = max(34, (rows.map(\.name.count).max() ?? 0) + 2)
        var s = "NeuLig on suite '\(suite)' (\(architecture)), K = \(models) experts over \(ranks) rank(s), test accuracy %\n"
        s += "tasks: " + tasks.enumerated().map { "T\($0.offset + 1) = \($0.element)" }.joined(separator: ", ") + "\n"
        s += "".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + tasks.indices.map { "T\($0 + 1)".padding(toLength: 7, withPad: " ", startingAt: 0) }.joined() + "mean\n"
        for r in rows {
            s += r.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            s += r.accuracies.map { String(format: "%-7.2f", 100 * $0) }.joined() + String(format: "%.2f", 100 * r.mean)
            if !r.hyperparameters.isEmpty { s += "   " + r.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
            s += "\n"
        }
        s += "β̄ (global): " + coefficientsGlobal.map { String(format: "%.3f", $0) }.joined(separator: " ") + "\n"
        return s
    }
}

public enum PipelineError: Error, CustomStringConvertible, LocalizedError {
    case invalid(String)
    public var description: String { if case .invalid(let m) = self { return m }; return "" }
    public var errorDescription: String? { description }
}

/// NeuLig over MPI on a `tasks` suite: features cached per rank, Portland trained with all-reduced sums,
/// fused parameters Σ_k β̄_k θ_k formed by a rank-count-independent reduction, evaluated beside the ensembles.
public enum NeuLigRun {
    public static func run(_ o: NeuLigOptions, comm: Communicator, log: @escaping (String) -> Void) throws -> NeuLigReport {
        var timings: [String: Double] = [:]
        var clock = Date()
        func lap(_ key: String) { timings[key] = Date().timeIntervalSince(clock); clock = Date() }

        let (dir, manifest) = try ZooCache.find(suite: o.suite, root: o.zooRoot)
        guard manifest.kind == .tasks else { throw PipelineError.invalid("suite '\(o.suite)' is a \(manifest.kind.rawValue) suite; NeuLig's multi-task fusion needs a tasks suite") }
        let labels = Array(Set(manifest.models.map(\.architecture))).sorted()
        let arch = o.architecture ?? labels.first!
        guard labels.contains(arch) else { throw PipelineError.invalid("suite '\(o.suite)' has no \(arch) models (it has \(labels.joined(separator: ", ")))") }
        guard o.architecture != nil || labels.count == 1 else {
            throw PipelineError.invalid("suite '\(o.suite)' holds several architectures (\(labels.joined(separator: ", "))): choose one with --arch")
        }
        var experts: [(task: TaskTransform, url: URL)] = manifest.models.compactMap { m in
            guard m.architecture == arch, case .expert(let t) = m.role else { return nil }
            return (t, dir.appendingPathComponent(m.file))
        }
        if let wanted = o.tasks {
            for w in wanted where !experts.contains(where: { $0.task.rawValue == w }) {
                throw PipelineError.invalid("suite '\(o.suite)' has no \(arch) expert for task '\(w)' (it has \(experts.map(\.task.rawValue).joined(separator: ", ")))")
            }
            experts = wanted.map { w in experts.first { $0.task.rawValue == w }! }
        }
        guard experts.count >= 2 else { throw PipelineError.invalid("NeuLig needs at least two experts, suite '\(o.suite)' gives \(experts.count)") }
        guard let pretrainedModel = manifest.models.first(where: { $0.architecture == arch && $0.role == .pretrained }) else {
            throw PipelineError.invalid("suite '\(o.suite)' has no pretrained \(arch) backbone")
        }
        let k = experts.count
        let local = blockRange(count: k, parts: comm.size, part: comm.rank)
        let data = try ZooData.load(directory: o.dataDirectory)
        let splits = try SuitePlan.splits(manifest.spec, labels: data.train.labels)

        // Every rank reads every task's head (small); only its own experts' backbones.
        let nets = try experts[local].map { try ModelFile.load($0.url).network }
        let probe = try Network<Float>(try ModelFile.architecture(of: SafeTensorsFile(url: experts[0].url)), seed: 0)
        let headNames = Set(probe.head.parameters.map(\.name))
        let heads = try experts.map { e -> (weight: Tensor, bias: Tensor) in
            let f = try SafeTensorsFile(url: e.url)
            return (try f.floats(probe.head.weight.name), try f.floats(probe.head.bias!.name))
        }
        let width = probe.featureWidth
        for (i, h) in heads.enumerated() where h.weight.shape != [experts[i].task.classes, width] {
            throw PipelineError.invalid("\(experts[i].url.path): head '\(probe.head.weight.name)' has shape \(h.weight.shape), expected [\(experts[i].task.classes), \(width)] (experts with different feature widths cannot be fused)")
        }

        func calibrationSet(_ t: TaskTransform) throws -> LabeledImages {
            var idx = splits.calibration
            if let n = o.calibrationSamples { idx = Array(idx.prefix(n)) }
            guard !idx.isEmpty else { throw PipelineError.invalid("task '\(t.rawValue)': the calibration split is empty") }
            return try t.apply(data.train.subset(idx))
        }
        let style: PhaseProgress.Style = (o.quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle
        let featureProgress = PhaseProgress("features (calibration)", total: k, style: style)
        var tasks: [PortlandTask] = []
        for (ti, e) in experts.enumerated() {
            let cal = try calibrationSet(e.task)
            let feats = nets.map { Trainer.featureRows($0, data: cal) }
            tasks.append(PortlandTask(name: e.task.rawValue, headWeight: heads[ti].weight.storage.map(Double.init),
                                      headBias: heads[ti].bias.storage.map(Double.init), labels: cal.labels, features: feats))
            featureProgress.update(ti + 1)
        }
        featureProgress.finish()
        lap("features")

        let backbones: [[(name: String, value: Tensor)]] = nets.map { n in n.stateDict().filter { !headNames.contains($0.name) } }
        let flat = backbones.map { $0.flatMap(\.value.storage) }
        let regularizer: [Double]
        switch o.portland.regularizer {
        case .paper: regularizer = try PortlandRegularizer.paperScores(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .gram: regularizer = try PortlandRegularizer.gram(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .none: regularizer = []
        }
        let portland = try Portland(comm: comm, totalModels: k, localModels: local, width: width, tasks: tasks,
                                    regularizer: regularizer, config: o.portland)
        let resumed = try PortlandCheckpoint.resume(portland, directory: o.checkpointDirectory)
        if resumed > 0 { log("resumed Portland from the checkpoint at epoch \(resumed)") }
        let progress = PhaseProgress("Portland epochs", total: o.portland.epochs, style: style)
        while portland.epoch < o.portland.epochs {
            let loss = try portland.trainEpoch()
            progress.update(portland.epoch, detail: String(format: "loss %.4f", loss))
            if o.checkpointEvery > 0 && portland.epoch % o.checkpointEvery == 0 && portland.epoch < o.portland.epochs {
                try PortlandCheckpoint.save(portland, directory: o.checkpointDirectory)
            }
        }
        progress.finish()
        lap("portland")
        let (perTask, global) = try portland.meanCoefficients()

        // Test-set evaluation: every rank its experts' features; sums over models by the deterministic reduction.
        var rows: [ReportRow] = []
        var expertOwn = [Double](repeating: 0, count: k)
        var ensemble = [Double](repeating: 0, count: k), portlandEnsemble = [Double](repeating: 0, count: k)
        var tests: [LabeledImages] = []
        var batchModeAccuracy = [Double](repeating: 0, count: k)
        for (ti, e) in experts.enumerated() {
            let test = try e.task.apply(data.test)
            tests.append(test)
            let n = test.count, c = e.task.classes
            let feats = nets.map { Trainer.featureRows($0, data: test) }
            let u = feats.map { f -> [Double] in headOutputs(f, n: n, width: width, head: heads[ti]) }
            let soft = u.map { Loss.softmax(TensorOf<Double>(shape: [n, c], storage: $0)).storage }
            let pEns = try deterministicSum(contributions: soft.enumerated().map { (local.lowerBound + $0.offset, $0.element) }, total: k, comm: comm)
            ensemble[ti] = Evaluation.accuracy(pEns[...], classes: c, labels: test.labels)
            let beta = try portland.betas(localFeatures: feats, count: n)
            let weighted = u.enumerated().map { (i, ui) -> [Double] in
                let kk = local.lowerBound + i
                return (0..<(n * c)).map { ui[$0] * beta[($0 / c) * k + kk] }
            }
            let y = try deterministicSum(contributions: weighted.enumerated().map { (local.lowerBound + $0.offset, $0.element) }, total: k, comm: comm)
            portlandEnsemble[ti] = Evaluation.accuracy(y[...], classes: c, labels: test.labels)
            if o.batchMode {
                // Paper parity: each batch of 128 gets a model merged with its first sample's β (needs all K experts at test time).
                var hits = 0.0
                for lo in stride(from: 0, to: n, by: 128) {
                    let rows = Array(lo..<min(n, lo + 128))
                    let merged = try WeightedFusion.fuse(localTensors: backbones, coefficients: Array(beta[(lo * k)..<(lo * k + k)]), localModels: local, comm: comm)
                    if comm.isRoot {
                        let net = try Merging.network(backbone: Dictionary(uniqueKeysWithValues: merged.map { ($0.name, $0.value) }), like: probe,
                                                      classes: c, head: heads[ti])
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
        }
        lap("ensembles")

        /// Accuracy of backbone θ with each task's head on that task's test set, tasks spread over ranks.
        func evaluate(_ backbone: [(name: String, value: Tensor)], onTasks which: [Int], sets: [LabeledImages]) throws -> [Double] {
            var acc = [Double](repeating: 0, count: k)
            let dict = Dictionary(uniqueKeysWithValues: backbone.map { ($0.name, $0.value) })
            for (j, ti) in which.enumerated() where j % comm.size == comm.rank {
                let net = try Merging.network(backbone: dict, like: probe, classes: experts[ti].task.classes, head: heads[ti])
                acc[ti] = try Trainer.accuracy(net, data: sets[ti], indices: Array(0..<sets[ti].count))
            }
            try comm.allreduce(&acc, op: .sum)
            return acc
        }
        func fuse(_ coefficients: [Double]) throws -> [(name: String, value: Tensor)] {
            try WeightedFusion.fuse(localTensors: backbones, coefficients: coefficients, localModels: local, comm: comm)
        }
        let all = Array(0..<k)
        var taskMode = [Double](repeating: 0, count: k)
        for ti in 0..<k { taskMode[ti] = try evaluate(try fuse(perTask[ti]), onTasks: [ti], sets: tests)[ti] }
        lap("fused-task")
        let globalBackbone = try fuse(global)
        let globalMode = try evaluate(globalBackbone, onTasks: all, sets: tests)
        lap("fused-global")

        func row(_ name: String, _ kind: String, _ acc: [Double], _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: acc, mean: acc.reduce(0, +) / Double(k), hyperparameters: hp)
        }
        rows.append(row("experts (each on its own task)", "model", expertOwn))
        rows.append(row("ensemble (mean softmax)", "ensemble", ensemble))
        rows.append(row("Portland ensemble (feature, β(x))", "ensemble", portlandEnsemble))
        rows.append(row("NeuLig fused, task mode", "merge", taskMode, ["loss": o.portland.loss.rawValue, "reg": o.portland.regularizer.rawValue]))
        rows.append(row("NeuLig fused, global mode (1 model)", "merge", globalMode))
        if o.batchMode { rows.append(row("NeuLig merged per batch (paper)", "merge", batchModeAccuracy)) }

        if o.baselines {
            let pretrained = try ModelFile.load(dir.appendingPathComponent(pretrainedModel.file)).network
            let pre = pretrained.stateDict().filter { !headNames.contains($0.name) }
            rows.append(row("pretrained + task heads", "baseline", try evaluate(pre, onTasks: all, sets: tests)))
            rows.append(row("weight averaging", "baseline", try evaluate(try fuse([Double](repeating: 1 / Double(k), count: k)), onTasks: all, sets: tests)))
            // Task arithmetic θ_pre + λΣ(θ_k − θ_pre) = (1 − λK)θ_pre + λΣθ_k, λ fitted on the calibration split.
            let cals = try experts.map { try calibrationSet($0.task) }
            func arithmetic(_ lambda: Double) throws -> [(name: String, value: Tensor)] {
                let s = try fuse([Double](repeating: lambda, count: k))
                return zip(s, pre).map { (f, p) in
                    (f.name, Tensor(shape: f.value.shape, storage: zip(f.value.storage, p.value.storage).map { Float(Double($0) + (1 - lambda * Double(k)) * Double($1)) }))
                }
            }
            var best = (lambda: 0.0, score: -1.0)
            for lambda in stride(from: 0.1, through: 1.0001, by: 0.1) {
                let score = try evaluate(try arithmetic(lambda), onTasks: all, sets: cals).reduce(0, +)
                if score > best.score { best = (lambda, score) }
            }
            rows.append(row("task arithmetic", "baseline", try evaluate(try arithmetic(best.lambda), onTasks: all, sets: tests),
                            ["lambda": String(format: "%.1f", best.lambda)]))
            lap("baselines")
        }

        if comm.isRoot {
            try FileManager.default.createDirectory(at: o.outDirectory, withIntermediateDirectories: true)
            var tensors: [(name: String, value: TensorPayload)] = globalBackbone.map { ($0.name, .float32($0.value)) }
            for (ti, e) in experts.enumerated() {
                tensors.append(("heads.\(e.task.rawValue).weight", .float32(heads[ti].weight)))
                tensors.append(("heads.\(e.task.rawValue).bias", .float32(heads[ti].bias)))
            }
            tensors += probe.batchCounters().map { ($0.name, .int64([0], shape: [])) }
            try SafeTensors.write(tensors, metadata: [
                ModelFile.architectureKey: probe.architecture.json,
                "ligand.heads": experts.map(\.task.rawValue).joined(separator: ","),
                "ligand.method": "neulig global", "ligand.coefficients": global.map { String($0) }.joined(separator: ","),
            ], to: o.outDirectory.appendingPathComponent("neulig-global.safetensors"))
        }
        try comm.barrier()
        return NeuLigReport(suite: o.suite, architecture: probe.architecture.description, tasks: experts.map(\.task.rawValue), models: k,
                            ranks: comm.size, seed: o.portland.seed, config: o.portland, calibrationSamplesPerTask: tasks.map(\.count),
                            coefficientsPerTask: perTask, coefficientsGlobal: global, rows: rows,
                            valuesPerPortlandStep: portland.floatsPerStep / max(1, portland.step), seconds: timings)
    }

    static func headOutputs(_ f: [Float], n: Int, width: Int, head: (weight: Tensor, bias: Tensor)) -> [Double] {
        let z = TensorOf<Double>(shape: [n, width], storage: f.map(Double.init))
        var y = matmul(z, head.weight.converted(to: Double.self), transB: true)
        let c = head.bias.count
        for r in 0..<n { for j in 0..<c { y.storage[r * c + j] += Double(head.bias.storage[j]) } }
        return y.storage
    }
}
