import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNeuLig
import LigandNN
import LigandNumerics
import LigandZoo

// NeuLig on a same-task suite (seeds, splits: K models of one 10-way task, each with its own head), optionally
// after aligning the models into the reference's space (algorithms.md, "Multi-level: align, then NeuLig").
// Portland's prediction is y = Σ_k β_k(x) h_k(f_k(x)): the paper's h(Σ_k β_k f_k) with every model reading its
// own head. It keeps the tasks suites' communication (B×K logits, B×C prediction per step) and equals the
// paper's form whenever the heads agree; fusion is θ = Σ_k β̄_k θ_k over every tensor, head included, then
// BatchNorm statistics are re-estimated as the alignment merges do.
extension NeuLigRun {
    /// NeuLig on a seeds or splits suite of the zoo cache (`suite`) or, when `suite` is nil, on `o.modelFiles`.
    static func runSameTask(_ o: NeuLigOptions, suite: (directory: URL, manifest: ZooManifest)?, comm counter: CountingCommunicator,
                            log: @escaping (String) -> Void) throws -> NeuLigReport {
        let clock = Date()
        if let a = o.align, !a.aligns {
            throw PipelineError("--align \(a.name): only weight-matching, permute and cca align models into the reference's space")
        }
        if let t = o.tasks {
            let what = suite.map { "suite '\(o.suite)' is a \($0.manifest.kind.rawValue) suite with one task" } ?? "model files are models of one task"
            throw PipelineError("--tasks \(t.joined(separator: ",")): \(what); choose models with --models")
        }
        if let n = o.models, n < 2 { throw PipelineError("--models must be at least 2 (a merge needs two models), got \(n)") }
        var ao = MergeOptions(method: Average.self, suite: o.suite, outDirectory: o.outDirectory)
        ao.parameters = o.parameters
        ao.parameters.remove(CommonParameters.align)
        ao.architecture = o.architecture
        ao.models = o.models
        ao.modelFiles = o.modelFiles
        ao.calibrationHoldout = o.calibrationHoldout
        ao.calibrationSeed = o.calibrationSeed
        ao.dataDirectory = o.dataDirectory
        ao.evaluator = o.evaluator
        let input: SameTaskInputs
        do {
            let origin: SameTaskOrigin = suite.map { .suite(directory: $0.directory, manifest: $0.manifest) } ?? .files(o.modelFiles ?? [])
            input = try MergeRun.sameTaskInputs(ao, origin: origin, cacheLogits: false).input
        } catch let e as PipelineError { throw PipelineError(e.message, everyRank: false) }
        guard input.names.count >= 2 else { throw PipelineError("NeuLig needs at least two models, suite '\(o.suite)' gives \(input.names.count)") }
        guard input.calibration.count >= 2 else {
            throw PipelineError("suite '\(o.suite)': the calibration split holds \(input.calibration.count) images, at least 2 are needed")
        }
        return try runSameTask(input, options: o, comm: counter, clock: clock, log: log)
    }

    /// NeuLig (after the optional alignment) on models of one task; rank 0 writes `neulig-global.safetensors` to `o.outDirectory`.
    public static func runSameTask(_ input: SameTaskInputs, options o: NeuLigOptions, comm counter: CountingCommunicator,
                                   clock start: Date = Date(), log: @escaping (String) -> Void = { _ in }) throws -> NeuLigReport {
        let comm: Communicator = counter
        var timer = PhaseTimer(start: start, counting: counter)
        if let a = o.align, !a.aligns {
            throw PipelineError("--align \(a.name): only weight-matching, permute and cca align models into the reference's space")
        }
        guard input.names.count >= 2 else { throw PipelineError("NeuLig needs at least two models, suite '\(o.suite)' gives \(input.names.count)") }

        // Ensemble, single models and weight averaging, plus the alignment when asked: MergeRun's pipeline, which also
        // hands back this rank's models in the reference's space.
        var ao = MergeOptions(method: o.align ?? Average.self, suite: o.suite, outDirectory: o.outDirectory)
        ao.parameters = o.parameters
        ao.parameters.remove(CommonParameters.align)
        ao.seed = o.seed
        ao.quiet = o.quiet
        let merged = try MergeRun.mergeSameTask(input, options: ao, comm: comm, log: o.quiet ? { _ in } : log)
        timer.lap("align")

        let k = input.names.count, arch = input.architectures[0]
        let shard = ModelShard(total: k, comm: comm), local = shard.local
        let probe = try Network<Float>(arch, seed: 0)
        let counters = probe.batchCounterValues
        let nets = try merged.alignedLocal.map { try Network<Float>.loaded(arch, $0, counters: counters) }
        if o.align != nil && !BatchNormStatistics(probe).names.isEmpty {
            // The maps carried each model's running statistics along, exact only for permutations: re-estimate them where the model lives.
            let n = min(o.bnSamples, input.train.count)
            let batches = stride(from: 0, to: n, by: 128).map { MergeRun.batch(input.train, Array($0..<min(n, $0 + 128))) }
            for net in nets { try reestimateBatchNorm(net, batches: batches) }
        }
        let width = probe.featureWidth, c = arch.classes
        let heads = nets.map { n -> PortlandHead in
            PortlandHead(weight: n.head.weight.value.storage.map(Double.init),
                         bias: n.head.bias.map { $0.value.storage.map(Double.init) } ?? [Double](repeating: 0, count: c))
        }
        // The task name carries the alignment, so a checkpoint of another alignment is never resumed.
        let alignment = o.align.map { a -> String in
            let settings = merged.report.hyperparameters.filter { $0.key != "gamma_scale" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return ([a.name] + settings + ["reference=\(merged.report.reference ?? "-")"]).joined(separator: " ")
        }
        let task = PortlandTask(name: "calibration" + (alignment.map { " after \($0)" } ?? ""), classes: c, localHeads: heads,
                                labels: input.calibration.labels, features: nets.map { Trainer.featureRows($0, data: input.calibration) })
        timer.lap("features")

        let flat = nets.map { $0.stateDict().flatMap(\.value.storage) }
        let regularizer: [Double]
        switch o.portland.regularizer {
        case .paper: regularizer = try PortlandRegularizer.paperScores(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .gram: regularizer = try PortlandRegularizer.gram(localParameters: flat, localModels: local, totalModels: k, comm: comm)
        case .none: regularizer = []
        }
        let portland = try Portland(comm: comm, totalModels: k, localModels: local, width: width, tasks: [task],
                                    regularizer: regularizer, config: o.portland)
        let style: PhaseProgress.Style = (o.quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle
        let stepsRun = try train(portland, o, style: style, log: log)
        timer.lap("portland")
        let beta = try portland.meanCoefficients().global

        // Portland ensemble on the test set: y = Σ_k β_k(x) h_k(f_k(x)), summed over models by the deterministic reduction.
        let test = input.test, n = test.count
        let testFeatures = nets.map { Trainer.featureRows($0, data: test) }
        let betaTest = try portland.betas(localFeatures: testFeatures, count: n)
        let weighted = zip(local, testFeatures).map { (i, f) -> (index: Int, values: [Double]) in
            let h = nets[i - local.lowerBound].head
            let u = headOutputs(f, n: n, width: width, head: (h.weight.value, h.bias?.value ?? Tensor(zeros: [c])))
            return (i, (0..<(n * c)).map { u[$0] * betaTest[($0 / c) * k + i] })
        }
        let y = try shard.sum(weighted.map(\.values))
        let portlandEnsemble = Evaluation.accuracy(y[...], classes: c, labels: test.labels)
        timer.lap("ensembles")

        // θ = Σ_k β̄_k θ_k over every tensor; the layout comes from the architecture, so a rank without models joins the sum.
        let layout = probe.stateDict()
        let contributions = zip(local, nets).map { (i, net) -> (index: Int, values: [Double]) in
            (i, net.stateDict().flatMap { $0.value.storage.map { beta[i] * Double($0) } })
        }
        let sum = try shard.sum(contributions.map(\.values))
        var tensors: StateDict = [:], offset = 0
        for (name, t) in layout {
            tensors[name] = Tensor(shape: t.shape, storage: (offset..<(offset + t.count)).map { Float(sum[$0]) })
            offset += t.count
        }
        let fused = try Network<Float>.loaded(arch, tensors, counters: counters)
        try MergeRun.reestimateBatchNorm(fused, train: input.train, samples: o.bnSamples, batchSize: 128, comm: comm)
        let fusedAccuracy = try MergeRun.hits(fused, test, comm: comm) / Double(n)
        timer.lap("fused")

        // Rows: the alignment report's summary, then Portland's ensemble and the fused model; the single models last.
        let aligned = o.align != nil
        let summary = merged.report.rows.filter { r in r.kind != .single && (r.kind != .reference || aligned) }
        var rows: [ReportRow] = summary.map { r in
            // The merge run first (average, or the alignment) is a baseline beside NeuLig's fused model.
            guard r.kind == .fused else { return r }
            var r = r
            r.name = o.align.map { "\($0.name) alone (fused: \($0.name))" } ?? "weight averaging (no alignment)"
            r.kind = .baseline
            return r
        }
        rows.append(ReportRow(name: "Portland ensemble (Σ β(x)·logits)", kind: .portlandEnsemble, accuracies: [portlandEnsemble], mean: portlandEnsemble))
        rows.append(ReportRow(name: aligned ? "\(o.align!.name) then NeuLig, fused (mean β)" : "NeuLig alone, fused (mean β)", kind: .fused,
                              accuracies: [fusedAccuracy], mean: fusedAccuracy,
                              hyperparameters: ["loss": o.portland.loss.rawValue, "reg": o.portland.regularizer.rawValue, "features": o.portland.featureNorm.rawValue]))
        rows += merged.report.rows.filter { $0.kind == .single }

        if comm.isRoot {
            try FileManager.default.createDirectory(at: o.outDirectory, withIntermediateDirectories: true)
            var meta = ["ligand.method": aligned ? "\(o.align!.name) then neulig" : "neulig", "ligand.suite": o.suite,
                        "ligand.models": input.names.joined(separator: ","), "ligand.coefficients": beta.map { String($0) }.joined(separator: ",")]
            if let r = o.modelFiles.flatMap(ImportRecord.shared(by:)) { meta[ImportRecord.metadataKey] = r }
            try ModelFile.save(fused, to: o.outDirectory.appendingPathComponent("neulig-global.safetensors"), metadata: meta)
        }
        try comm.barrier()
        var report = NeuLigReport(suite: o.suite, architecture: arch.description, tasks: [input.suiteKind], models: k, ranks: comm.size,
                                  seed: o.portland.seed, config: o.portland, calibrationSamplesPerTask: [task.count],
                                  coefficientsPerTask: [beta], coefficientsGlobal: beta, rows: rows,
                                  valuesPerPortlandStep: portland.floatsPerStep / max(1, portland.step), seconds: timer.seconds)
        report.suiteKind = input.suiteKind
        report.modelNames = input.names
        report.alignment = alignment
        report.bytesCommunicated = counter.bytes
        report.bytesPerPhase = timer.bytes
        report.bytesPerPortlandStep = stepsRun > 0 ? Double(timer.bytes["portland"] ?? 0) / Double(stepsRun) : nil
        return report
    }
}
