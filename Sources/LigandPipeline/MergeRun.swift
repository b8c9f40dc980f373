import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNN
import LigandNumerics
import LigandZoo

/// CCA Merge, permutation alignment, weight matching and the task-vector baselines over a Communicator:
/// each rank holds a contiguous block of the models (blockRange), statistics and maps are computed where a
/// model lives, and every sum over models is the rank-count-independent `deterministicSum`, so the fused
/// tensors are bitwise the same for any number of ranks.
public enum MergeRun {
    /// Runs body on every rank; if any rank fails, every rank throws the lowest failing rank's message.
    static func agreeing<T>(_ comm: Communicator, _ phase: String, _ body: () throws -> T) throws -> T {
        var result: T?
        var message = ""
        do { result = try body() } catch { message = "\(error)" }
        let all = try comm.allgatherv(Array(message.utf8))
        if let r = all.firstIndex(where: { !$0.isEmpty }) {
            let text = String(decoding: all[r], as: UTF8.self)
            throw PipelineError(comm.size > 1 ? "\(phase) (rank \(r)): \(text)" : "\(phase): \(text)")
        }
        return result!
    }

    static func batch(_ data: LabeledImages, _ indices: [Int]) -> Tensor {
        var it = BatchIterator(data: data, indices: indices, batchSize: max(1, indices.count))
        return it.next()!.pixels
    }

    /// Correct predictions on `data`, its rows split over the ranks; integer counts, so the sum is exact.
    static func hits(_ net: Network<Float>, _ data: LabeledImages, comm: Communicator) throws -> Double {
        let mine = blockRange(count: data.count, parts: comm.size, part: comm.rank)
        var h = [0.0]
        if !mine.isEmpty {
            let preds = Trainer.logits(net, data: data, indices: Array(mine)).argmaxRows()
            h[0] = Double(zip(preds, mine).filter { $0 == data.labels[$1] }.count)
        }
        try comm.allreduce(&h, op: .sum)
        return h[0]
    }

    /// REPAIR's targets: per BN and channel, the mean over all K models of the mean and the std of that BN's
    /// output in each (aligned, BN-folded) model, eval mode, on the first `samples` training images. Each rank
    /// measures its own models; one rank-order sum (`deterministicSum`) averages them.
    static func repairTargets(_ models: [(index: Int, net: Network<Float>)], train: LabeledImages, samples: Int, total: Int,
                              channels: [Int], comm: Communicator) throws -> [(mean: [Double], std: [Double])] {
        let n = min(samples, train.count)
        guard n >= 2 else { throw PipelineError("REPAIR needs training images, the split has \(train.count)") }
        var contributions: [(index: Int, values: [Double])] = []
        for (i, net) in models {
            var s = BatchNormStatistics(net)
            for lo in stride(from: 0, to: n, by: 128) { try s.accumulate(net, batch: batch(train, Array(lo..<min(n, lo + 128))), training: false) }
            let (means, stds) = try s.moments()
            // A folded BN is the identity plus its shift β: its output is its input shifted by β.
            let shifted = zip(net.batchNorms, means).map { bn, m in zip(m, bn.bias.value.storage).map { $0 + Double($1) } }
            contributions.append((i, shifted.flatMap { $0 } + stds.flatMap { $0 }))
        }
        let sum = try deterministicSum(contributions: contributions, total: total, comm: comm)
        var out: [(mean: [Double], std: [Double])] = [], offset = 0
        let half = channels.reduce(0, +)
        guard sum.count == 2 * half else { throw PipelineError("REPAIR: the ranks' BatchNorm statistics do not agree in size") }
        for c in channels {
            out.append((sum[offset..<(offset + c)].map { $0 / Double(total) }, sum[(half + offset)..<(half + offset + c)].map { $0 / Double(total) }))
            offset += c
        }
        return out
    }

    /// Exact BatchNorm re-estimation over the first `samples` training images in fixed batches, the batches
    /// spread over the ranks and their sums combined by the rank-count-independent reduction.
    static func reestimateBatchNorm(_ net: Network<Float>, train: LabeledImages, samples: Int, batchSize: Int, comm: Communicator) throws {
        let empty = BatchNormStatistics(net)
        if empty.names.isEmpty { return }
        let n = min(samples, train.count)
        guard n >= 2 else { throw PipelineError("BatchNorm re-estimation needs training images, the split has \(train.count)") }
        let batches = stride(from: 0, to: n, by: batchSize).map { Array($0..<min(n, $0 + batchSize)) }
        let mine = blockRange(count: batches.count, parts: comm.size, part: comm.rank)
        var contributions: [(index: Int, values: [Double])] = []
        for b in mine {
            var s = BatchNormStatistics(net)
            try s.accumulate(net, batch: batch(train, batches[b]))
            contributions.append((b, s.packed))
        }
        let sum = try deterministicSum(contributions: contributions, total: batches.count, comm: comm)
        try empty.unpacked(sum).apply(to: net)
    }

    static func formatted(_ x: Double) -> String {
        if x == 0 { return "0" }
        guard x.isFinite else { return "\(x)" }
        let e = log10(abs(x))
        if e == e.rounded() { return "1e\(Int(e))" }
        return String(format: "%g", x)
    }

    // MARK: Same task (seeds, splits)

    public static func mergeSameTask(_ input: SameTaskInputs, options o: MergeOptions, comm: Communicator,
                                     log: @escaping (String) -> Void = { _ in }) throws -> MergeResult {
        try o.validate()
        var timer = PhaseTimer(counting: comm)

        let k = input.names.count
        if let why = MethodRegistry.check(o.method, kind: SuiteKind(rawValue: input.suiteKind) ?? .seeds, modelFiles: input.suiteKind == "models") {
            throw PipelineError("--method \(why)")
        }
        guard !o.method.fuses else {
            throw PipelineError("--method \(o.method.name) fuses experts of different tasks into one backbone and needs a tasks suite; suite '\(input.suite)' is a \(input.suiteKind) suite")
        }
        guard let method = o.method as? any SameTaskAlignment.Type else {
            throw PipelineError("--method \(o.method.name) does not merge same-task models on its own")
        }
        guard k >= 2 else { throw PipelineError("a merge needs at least two models, suite '\(input.suite)' gives \(k)\(k == 1 ? " (\(input.names[0]))" : "")") }
        do { try requireSameArchitecture(input.architectures, names: input.names) } catch { throw PipelineError(wrapping: error) }
        let arch = input.architectures[0]
        if case .index(let i) = o.reference, !(0..<k).contains(i) {
            throw PipelineError("--reference \(i) is out of range: the merge has \(k) models (indices 0..<\(k))")
        }
        guard input.calibration.count >= 2 else { throw PipelineError("the calibration split holds \(input.calibration.count) images, at least 2 are needed") }
        let graph: MergeGraph
        do { graph = try MergeGraph(arch) } catch { throw PipelineError(wrapping: error) }
        let shard = ModelShard(total: k, comm: comm)
        let local = shard.local

        let nets = try agreeing(comm, "loading the models") { try local.map { try input.load($0) } }
        let layout = FlatLayout(try nets.first.map { $0.stateDict() } ?? Network<Float>(arch, seed: 0).stateDict())
        let counters = (try Network<Float>(arch, seed: 0)).batchCounterValues
        timer.lap("load")

        // Every model on the calibration and test sets: calibration hits, test hits, and the softmax ensemble.
        let c = arch.classes, nTest = input.test.count, nCal = input.calibration.count
        var contributions: [(index: Int, values: [Double])] = []
        // The zoo's models never change, so a grid over K and methods computes each model's logits once.
        func modelLogits(_ j: Int, _ i: Int, _ data: LabeledImages, _ split: String) -> [Float] {
            let url = input.logitsCache?(i, split, data.count)
            if let url, let d = try? Data(contentsOf: url), d.count == data.count * c * MemoryLayout<Float>.size {
                return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            }
            let l = Trainer.logits(nets[j], data: data, indices: Array(0..<data.count)).storage
            if let url {
                try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try? l.withUnsafeBytes { try AtomicFile.write(Data($0), to: url) }
            }
            return l
        }
        let progress = PhaseProgress("evaluation (models, test and calibration)", total: local.count,
                                     style: (o.quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle)
        for (j, i) in local.enumerated() {
            defer { progress.update(j + 1) }
            let logits = modelLogits(j, i, input.test, "test")
            var v = Evaluation.softmaxRows(logits, classes: c)
            var counts = [Double](repeating: 0, count: 2 * k)
            counts[i] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: c, labels: input.test.labels))
            let cal = modelLogits(j, i, input.calibration, "calibration")
            counts[k + i] = Double(Evaluation.argmaxHits(ArraySlice(cal.map(Double.init)), classes: c, labels: input.calibration.labels))
            v += counts
            contributions.append((i, v))
        }
        progress.finish()
        let summed = try shard.sum(contributions.map(\.values))
        let ensemble = Double(Evaluation.argmaxHits(summed[0..<(nTest * c)], classes: c, labels: input.test.labels)) / Double(nTest)
        let testAccuracy = (0..<k).map { summed[nTest * c + $0] / Double(nTest) }
        let calAccuracy = (0..<k).map { summed[nTest * c + k + $0] / Double(nCal) }
        timer.lap("ensemble")

        let ref: Int
        switch o.reference {
        case .first: ref = 0
        case .index(let i): ref = i
        case .best: ref = calAccuracy.indices.max { calAccuracy[$0] < calAccuracy[$1] || (calAccuracy[$0] == calAccuracy[$1] && $0 > $1) }!
        }
        let referenceNet: Network<Float>? = local.contains(ref) ? nets[ref - local.lowerBound] : nil

        /// Averages the local models' (aligned) tensors over all models, then re-estimates BN on training data.
        func fuse(_ aligned: [StateDict]) throws -> Network<Float> {
            let sum = try shard.sum(aligned.map { layout.flatten($0) })
            let net = try Network<Float>.loaded(arch, layout.unflatten(sum, divisor: Double(k)), counters: counters)
            if o.batchNorm == .repair && !net.batchNorms.isEmpty {
                let targets = try repairTargets(zip(local, aligned).map { ($0, try Network<Float>.loaded(arch, $1, counters: counters)) },
                                                train: input.train, samples: o.bnSamples, total: k, channels: net.batchNorms.map(\.channels), comm: comm)
                for (bn, t) in zip(net.batchNorms, targets) {
                    bn.weight.value = Tensor(shape: [bn.channels], storage: t.std.map { Float($0) })
                    bn.bias.value = Tensor(shape: [bn.channels], storage: t.mean.map { Float($0) })
                }
            }
            if o.batchNorm.reestimates { try reestimateBatchNorm(net, train: input.train, samples: o.bnSamples, batchSize: 128, comm: comm) }
            return net
        }
        let frozen = o.batchNorm.frozenKinds
        let states = try zip(local, nets).map { i, net -> StateDict in
            o.batchNorm.folds ? try foldBatchNorm(net.stateDictionary(), graph: graph, model: input.names[i]) : net.stateDictionary()
        }
        var rows: [ReportRow] = []
        let averaged = try fuse(states)
        timer.lap("average")
        let context = AlignmentContext(comm: comm, shard: shard, names: input.names, nets: nets, states: states, reference: ref,
                                       referenceNet: referenceNet, graph: graph, layout: layout, frozen: frozen, parameters: o.parameters,
                                       seed: o.seed, calibration: input.calibration, batchSize: o.batchSize, quiet: o.quiet, log: log,
                                       averaged: averaged, fuse: fuse, timer: timer)
        let outcome = try method.align(context)
        timer = context.timer
        let fused = outcome.fused, alignedLocal = outcome.aligned
        var hyper = outcome.hyperparameters
        let scores = outcome.calibrationScores

        if !fused.batchNorms.isEmpty { hyper["batch_norm"] = o.batchNorm.rawValue }
        let fusedHits = try hits(fused, input.test, comm: comm)
        let averageHits = try hits(averaged, input.test, comm: comm)
        timer.lap("evaluate")
        func row(_ name: String, _ kind: RowKind, _ acc: Double, _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: [acc], mean: acc, hyperparameters: hp)
        }
        let bestSingle = testAccuracy.indices.max { testAccuracy[$0] < testAccuracy[$1] }!
        rows.append(row("ensemble (mean softmax)", .ensemble, ensemble))
        rows.append(row("best single model (\(input.names[bestSingle]))", .bestSingle, testAccuracy[bestSingle]))
        rows.append(row("reference (\(input.names[ref]))", .reference, testAccuracy[ref]))
        rows.append(row("mean single model", .baseline, testAccuracy.reduce(0, +) / Double(k)))
        if o.method != Average.self { rows.append(row("weight averaging (no alignment)", .baseline, averageHits / Double(nTest))) }
        rows.append(row("fused: \(o.method.name)", .fused, fusedHits / Double(nTest), hyper))
        for (i, n) in input.names.enumerated() { rows.append(row(n, .single, testAccuracy[i], ["calibration": String(format: "%.4f", calAccuracy[i])])) }

        let report = MergeReport(method: o.method.name, suite: input.suite, suiteKind: input.suiteKind, architecture: arch.description,
                                 columns: ["accuracy"], models: input.names, ranks: comm.size,
                                 reference: o.method.aligns ? input.names[ref] : nil, referenceRule: o.method.aligns ? o.reference.description : nil,
                                 calibrationSamples: nCal, hyperparameters: hyper, calibrationScores: scores, rows: rows, fusedFile: nil, seconds: timer.seconds, bytes: timer.counted)
        return MergeResult(report: report, fused: fused, backbone: [], heads: [], alignedLocal: alignedLocal)
    }

    // MARK: Tasks (shared origin): average, task arithmetic, TIES on the experts' backbones

    public static func mergeTasks(_ input: TasksInputs, options o: MergeOptions, comm: Communicator,
                                  log: @escaping (String) -> Void = { _ in }) throws -> MergeResult {
        try o.validate()
        var timer = PhaseTimer(counting: comm)
        let k = input.tasks.count
        if let why = MethodRegistry.check(o.method, kind: .tasks) { throw PipelineError("--method \(why)") }
        guard let method = o.method as? any TaskVectorMerge.Type else {
            throw PipelineError("--method \(o.method.name) does not combine task vectors")
        }
        guard k >= 2 else { throw PipelineError("a merge needs at least two experts, suite '\(input.suite)' gives \(k)") }
        var stripped = input.architectures
        for i in stripped.indices { stripped[i].classes = 0 }
        do { try requireSameArchitecture(stripped, names: input.tasks.map { "expert \($0)" }) } catch { throw PipelineError(wrapping: error) }
        let shard = ModelShard(total: k, comm: comm)
        let local = shard.local
        let pre = input.pretrained
        let backboneLayout = FlatLayout(pre.backboneStateDict())
        let preFlat = backboneLayout.flatten(pre.stateDictionary())
        let experts = try agreeing(comm, "loading the experts") { try local.map { backboneLayout.flatten(try input.load($0).stateDictionary()) } }
        timer.lap("load")

        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
        // A merge alone reads each keyed set of logits once: its own evaluator keeps nothing.
        let evaluator = o.evaluator ?? Evaluator(budget: 0)
        /// The logits of `backbone` (its flat form, built only when not already evaluated) under task t's head on `data`.
        func readLogits(_ key: Evaluator.Key?, task t: Int, _ data: LabeledImages, backbone: () -> StateDict) throws -> [Float] {
            try evaluator.logits(key) {
                let net = try pre.with(backbone: backbone(), head: input.heads[t])
                return Trainer.logits(net, data: data, indices: Array(0..<data.count)).storage
            }
        }
        /// Accuracy of a backbone with each task's head on each task's set (tasks spread over the ranks); `model` names
        /// a backbone the run's evaluator may already have read on the test sets.
        func evaluate(_ flat: [Double], sets: [LabeledImages], model: String? = nil) throws -> [Double] {
            var backbone: StateDict?
            var h = [Double](repeating: 0, count: k)
            for t in 0..<k where t % comm.size == comm.rank {
                let key = model.flatMap { m in input.keys?.test(model: m, task: t) }
                let l = try readLogits(key, task: t, sets[t]) {
                    if backbone == nil { backbone = backboneLayout.unflatten(flat) }
                    return backbone!
                }
                let preds = Tensor(shape: [sets[t].count, input.heads[t].weight.shape[0]], storage: l).argmaxRows()
                h[t] = Double(zip(preds, sets[t].labels).filter { $0 == $1 }.count) / Double(max(1, sets[t].count))
            }
            try comm.allreduce(&h, op: .sum)
            return h
        }
        let averageFlat = try TaskVectors.average(experts, shard: shard)
        let context = TaskVectorContext(shard: shard, experts: experts, pretrained: preFlat, average: averageFlat, layout: backboneLayout,
                                        parameters: o.parameters, seed: o.seed) { mean(try evaluate($0, sets: input.calibration)) }
        context.taskData = TaskData(network: { i, flat in try pre.with(backbone: backboneLayout.unflatten(flat), head: input.heads[i]) },
                                    calibration: { input.calibration[$0] }, log: (o.quiet || !comm.isRoot) ? { _ in } : log)
        let outcome = try method.merge(context)
        let fusedFlat = outcome.backbone, hyper = outcome.hyperparameters, scores = outcome.calibrationScores
        if let dump = o.dumpCalibration, comm.isRoot, !outcome.diagnostics.isEmpty {
            try SafeTensors.write(outcome.diagnostics.map { ($0.name, .float64($0.values, shape: $0.shape)) }, metadata: outcome.diagnosticsMetadata,
                                  to: dump.appendingPathComponent("\(o.method.name).safetensors"))
        }
        timer.lap("fit")

        // Ensemble per task: mean over experts of softmax(h_t(f_k(x))); experts on their own tasks.
        var ensemble = [Double](repeating: 0, count: k), own = [Double](repeating: 0, count: k)
        let progress = PhaseProgress("evaluation (test, ensembles)", total: k, style: (o.quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle)
        for t in 0..<k {
            defer { progress.update(t + 1) }
            let data = input.test[t], c = input.heads[t].weight.shape[0], n = data.count
            let contributions = try zip(local, experts).map { i, flat -> (index: Int, values: [Double]) in
                let logits = try readLogits(input.keys.map { $0.test(model: $0.experts[i], task: t) }, task: t, data) { backboneLayout.unflatten(flat) }
                var v = Evaluation.softmaxRows(logits, classes: c)
                var hit = [Double](repeating: 0, count: k)
                if i == t { hit[t] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: c, labels: data.labels)) }
                v += hit
                return (i, v)
            }
            let s = try shard.sum(contributions.map(\.values))
            ensemble[t] = Double(Evaluation.argmaxHits(s[0..<(n * c)], classes: c, labels: data.labels)) / Double(n)
            own[t] = s[n * c + t] / Double(n)
        }
        progress.finish()
        let fusedAcc = try evaluate(fusedFlat, sets: input.test)
        let preAcc = try evaluate(preFlat, sets: input.test, model: input.keys?.pretrained)
        let avgAcc = try evaluate(averageFlat, sets: input.test, model: input.keys?.average)
        timer.lap("evaluate")
        func row(_ name: String, _ kind: RowKind, _ acc: [Double], _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: acc, mean: mean(acc), hyperparameters: hp)
        }
        var rows = [row("experts (each on its own task)", .bestSingle, own), row("ensemble (mean softmax)", .ensemble, ensemble),
                    row("pretrained + task heads", .baseline, preAcc)]
        if o.method != Average.self { rows.append(row("weight averaging", .baseline, avgAcc)) }
        rows.append(row("fused: \(o.method.name)", .fused, fusedAcc, hyper))
        let report = MergeReport(method: o.method.name, suite: input.suite, suiteKind: "tasks", architecture: pre.architecture.description + " backbone, task heads",
                                 columns: input.tasks, models: input.tasks, ranks: comm.size, reference: nil, referenceRule: nil,
                                 calibrationSamples: input.calibration.first?.count ?? 0, hyperparameters: hyper, calibrationScores: scores,
                                 rows: rows, fusedFile: nil, seconds: timer.seconds, bytes: timer.counted)
        let fusedDict = backboneLayout.unflatten(fusedFlat)
        return MergeResult(report: report, fused: nil, backbone: backboneLayout.names.map { ($0, fusedDict[$0]!) },
                           heads: input.tasks.enumerated().map { ($1, input.heads[$0].weight, input.heads[$0].bias) })
    }

    // MARK: From the zoo

    /// Loads a suite from the zoo cache, merges it, and writes the fused model (rank 0, atomically).
    public static func run(_ o: MergeOptions, comm: Communicator, log: @escaping (String) -> Void) throws -> MergeReport {
        try o.validate()
        let result: MergeResult
        /// Tasks suites: a file of the merged architecture, whose header the fused backbone's file repeats.
        var tasksProbe: URL?
        if let files = o.modelFiles, let pretrained = o.pretrained {
            (result, tasksProbe) = try mergeTasksFiles(o, pretrained: pretrained, experts: files, taskData: o.taskData ?? [], comm: comm, log: log)
        } else if let files = o.modelFiles {
            if let why = MethodRegistry.check(o.method, kind: .seeds, modelFiles: true) { throw PipelineError("--method \(why)") }
            result = try mergeSameTask(from: .files(files), options: o, comm: comm, log: log)
        } else {
            let (dir, manifest): (URL, ZooManifest)
            do { (dir, manifest) = try ZooCache.find(suite: o.suite, root: o.zooRoot) } catch { throw PipelineError(wrapping: error) }
            if manifest.kind != .tasks {
                result = try mergeSameTask(from: .suite(directory: dir, manifest: manifest), options: o, comm: comm, log: log)
            } else {
                (result, tasksProbe) = try mergeTasksSuite(o, directory: dir, manifest: manifest, comm: comm, log: log)
            }
        }

        var report = result.report
        let file = o.outDirectory.appendingPathComponent("\(o.method.name).safetensors")
        if comm.isRoot {
            try FileManager.default.createDirectory(at: o.outDirectory, withIntermediateDirectories: true)
            var meta = ["ligand.method": o.method.name, "ligand.suite": o.suite, "ligand.models": report.models.joined(separator: ",")]
            for (key, v) in report.hyperparameters { meta["ligand.\(key)"] = v }
            if let r = report.reference { meta["ligand.reference"] = r }
            // Imported models that share an import record pass it on, so `ligand export` writes the fusion in their layout.
            if let r = o.modelFiles.flatMap(ImportRecord.shared(by:)) { meta[ImportRecord.metadataKey] = r }
            if let net = result.fused {
                try ModelFile.save(net, to: file, metadata: meta)
            } else {
                var tensors: [(name: String, value: TensorPayload)] = result.backbone.map { ($0.name, .float32($0.value)) }
                for h in result.heads {
                    tensors.append(("heads.\(h.task).weight", .float32(h.weight)))
                    tensors.append(("heads.\(h.task).bias", .float32(h.bias)))
                }
                let arch: Architecture
                do { arch = try ModelFile.architecture(of: try SafeTensorsFile(url: tasksProbe!)) } catch { throw PipelineError(wrapping: error) }
                let probe = try Network<Float>(arch, seed: 0)
                tensors += probe.batchCounters().map { ($0.name, .int64([0], shape: [])) }
                meta[ModelFile.architectureKey] = probe.architecture.json
                meta[ModelFile.headsKey] = result.heads.map(\.task).joined(separator: ",")
                try SafeTensors.write(tensors, metadata: meta, to: file)
            }
        }
        try comm.barrier()
        report.fusedFile = file.path
        return report
    }

    /// A seeds or splits suite, or model files: inputs built by `sameTaskInputs`, merged by the alignment or least-squares pipeline.
    static func mergeSameTask(from origin: SameTaskOrigin, options o: MergeOptions, comm: Communicator,
                              log: @escaping (String) -> Void) throws -> MergeResult {
        if o.tasks != nil { throw PipelineError("--tasks applies to tasks suites; suite '\(o.suite)' merges models of one task (use --models)") }
        let (input, selection) = try sameTaskInputs(o, origin: origin, cacheLogits: true)
        if o.method.fuses { return try FusionRun.mergeSameTask(input, selection: selection, options: o, comm: comm, log: log) }
        return try mergeSameTask(input, options: o, comm: comm, log: log)
    }

    /// A tasks suite: its experts (and pretrained backbone, heads, task data) merged; also an expert's file, for the fused file's header.
    static func mergeTasksSuite(_ o: MergeOptions, directory dir: URL, manifest: ZooManifest, comm: Communicator,
                                log: @escaping (String) -> Void) throws -> (MergeResult, URL) {
        let labels = Array(Set(manifest.models.map(\.architecture))).sorted()
        let archLabel = o.architecture ?? labels.first!
        guard labels.contains(archLabel) else { throw PipelineError("suite '\(o.suite)' has no \(archLabel) models (it has \(labels.joined(separator: ", ")))") }
        guard o.architecture != nil || labels.count == 1 else {
            throw PipelineError("suite '\(o.suite)' holds several architectures (\(labels.joined(separator: ", "))): choose one with --arch")
        }
        let evaluator = o.evaluator ?? Evaluator(budget: 0)
        let data: ZooData, splits: SuiteSplits
        do {
            data = try evaluator.data(o.dataDirectory)
            splits = try SuitePlan.splits(manifest.spec, labels: data.train.labels)
        } catch { throw PipelineError(wrapping: error) }
        let (calIdx, selectionIdx) = o.cutCalibration(splits.calibration)
        func header(_ url: URL) throws -> Architecture {
            do { return try ModelFile.architecture(of: try SafeTensorsFile(url: url)) } catch { throw PipelineError(wrapping: error) }
        }
        let result: MergeResult
        var experts: [(task: TaskTransform, url: URL)] = manifest.models.compactMap { m in
            guard m.architecture == archLabel, case .expert(let t) = m.role else { return nil }
            return (t, dir.appendingPathComponent(m.file))
        }
        if let s = o.subset {
            if let bad = s.first(where: { $0 >= experts.count }) {
                throw PipelineError("subset index \(bad) is out of range: suite '\(o.suite)' has \(experts.count) \(archLabel) experts")
            }
            experts = s.map { experts[$0] }
        } else if let wanted = o.tasks {
            for w in wanted where !experts.contains(where: { $0.task.rawValue == w }) {
                throw PipelineError("suite '\(o.suite)' has no \(archLabel) expert for task '\(w)' (it has \(experts.map(\.task.rawValue).joined(separator: ", ")))")
            }
            guard Set(wanted).count == wanted.count else { throw PipelineError("--tasks lists a task twice: \(wanted.joined(separator: ","))") }
            experts = wanted.map { w in experts.first { $0.task.rawValue == w }! }
        } else if let n = o.models { experts = Array(experts.prefix(n)) }
        guard let preModel = manifest.models.first(where: { $0.architecture == archLabel && $0.role == .pretrained }) else {
            throw PipelineError("suite '\(o.suite)' has no pretrained \(archLabel) backbone")
        }
        let archs = try experts.map { try header($0.url) }
        let pre = try agreeing(comm, "loading the pretrained model") { try ModelFile.load(dir.appendingPathComponent(preModel.file)).network }
        let heads = try agreeing(comm, "reading the task heads") {
            try experts.map { e -> (weight: Tensor, bias: Tensor) in
                let f = try SafeTensorsFile(url: e.url)
                return (try f.floats(pre.head.weight.name), try f.floats(pre.head.bias!.name))
            }
        }
        let cal = try agreeing(comm, "task data") { try experts.map { try $0.task.apply(data.train.subset(calIdx)) } }
        let test = try agreeing(comm, "task data") { try experts.map { try evaluator.testSet($0.task, of: data) } }
        var input = TasksInputs(suite: o.suite, tasks: experts.map(\.task.rawValue), architectures: archs,
                                load: { try ModelFile.load(experts[$0].url).network }, heads: heads, pretrained: pre, calibration: cal, test: test)
        input.keys = TasksKeys(experts: experts, pretrained: dir.appendingPathComponent(preModel.file), dataDirectory: o.dataDirectory)
        if let dump = o.dumpCalibration, comm.isRoot {
            try FileManager.default.createDirectory(at: dump, withIntermediateDirectories: true)
            for (e, c) in zip(experts, cal) {
                let pixels = Tensor(shape: [c.count, c.height, c.width, c.channels], storage: c.pixels)
                try SafeTensors.write([("pixels", .float32(pixels))], metadata: ["ligand.task": e.task.rawValue],
                                      to: dump.appendingPathComponent("calibration-\(e.task.rawValue).safetensors"))
            }
        }
        if o.method.fuses {
            guard o.align == nil else { throw PipelineError("--align is for seeds and splits suites; suite '\(o.suite)' holds experts fine-tuned from one pretrained model") }
            let selection = try agreeing(comm, "task data") { try experts.map { try $0.task.apply(data.train.subset(selectionIdx)) } }
            result = try FusionRun.mergeTasks(input, selection: selection, options: o, comm: comm, log: log)
        } else {
            result = try mergeTasks(input, options: o, comm: comm, log: log)
        }
        return (result, dir.appendingPathComponent(manifest.models.first { $0.architecture == archLabel }!.file))
    }
}
