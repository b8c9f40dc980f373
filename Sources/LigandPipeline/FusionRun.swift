import Foundation
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics
import LigandZoo

/// RegMean and progressive least-squares fusion over a Communicator (algorithms.md, "One fused model for every
/// task"): model k lives on one rank (ModelShard), which computes its Float64 Gram and cross sums on its task's
/// calibration images; the rank-count-independent `deterministicSum` adds them over models, rank 0 solves and
/// broadcasts the layer, and every rank moves on to the next layer with the fused layers so far.
/// Memory per rank is O(its models × layer width²), never O(data): batches stream through.
/// BatchNorm (ResNet-20) is folded into the preceding convolution before solving; the fused file then holds
/// folded convolutions followed by identity BatchNorms (mean 0, variance 1) whose β is the fused bias.
public enum FusionRun {
    static let ridgeScale = "relative to the mean diagonal of the Gram matrix, toward the models' mean"

    /// The models of one fusion as this rank holds them, and the distributed RegMean / progressive steps on them.
    struct Context {
        /// Where each model lives; every sum over models is its rank-count-independent `sum`.
        let shard: ModelShard
        var comm: Communicator { shard.comm }
        var local: Range<Int> { shard.local }
        var k: Int { shard.total }
        let names: [String]
        let nets: [Network<Float>]
        let states: [StateDict]
        let plan: FusionPlan
        /// The units fused: the backbone's, plus the head for a same-task merge.
        let units: [WeightLayer]
        let layout: FlatLayout
        /// A network whose architecture and head the partially fused networks take.
        let like: Network<Float>
        let batchSize: Int
        /// Calibration images of model i (its task's).
        let calibration: (Int) -> LabeledImages

        func sum(_ vectors: [[Double]]) throws -> [Double] { try shard.sum(vectors) }

        func batches(_ data: LabeledImages) -> CalibrationBatches {
            let starts = Array(stride(from: 0, to: data.count, by: batchSize))
            return CalibrationBatches(count: starts.count) { MergeRun.batch(data, Array(starts[$0]..<min(data.count, starts[$0] + batchSize))) }
        }

        func shapes(_ u: WeightLayer) -> [(name: String, shape: [Int])] {
            LeastSquaresFusion.unfold(u, FoldedLayer(weight: Matrix(zeros: u.outChannels, u.columns), bias: [Double](repeating: 0, count: u.outChannels)))
                .map { ($0.name, $0.value.shape) }
        }

        /// Rank 0 runs `solve` (the tensors of some units); every rank receives them, or every rank throws its error.
        func solvedOnRoot(_ phase: String, _ names: [(name: String, shape: [Int])], _ solve: () throws -> [(name: String, value: Tensor)]) throws -> StateDict {
            let mine: [Float]? = try MergeRun.agreeing(comm, phase) { comm.isRoot ? try solve().flatMap(\.value.storage) : nil }
            var flat = mine ?? []
            try comm.broadcast(&flat, root: 0)
            var out: StateDict = [:], offset = 0
            for (n, s) in names {
                let c = s.reduce(1, *)
                guard offset + c <= flat.count else { throw PipelineError("\(phase): rank 0 sent \(flat.count) values, \(n) needs more") }
                out[n] = Tensor(shape: s, storage: Array(flat[offset..<(offset + c)]))
                offset += c
            }
            return out
        }

        /// Σ_k of each unit's RegMean statistics and the models' mean folded layer, from one pass over the data.
        func regmeanSums() throws -> [(statistics: RegMeanStatistics, prior: FoldedLayer)] {
            let perModel = try MergeRun.agreeing(comm, "RegMean statistics") {
                try zip(local, nets).map { i, net in try LeastSquaresFusion.regmeanContribution(plan, units: units, expert: net, data: batches(calibration(i))) }
            }
            return try units.enumerated().map { u, unit in
                let folded = try MergeRun.agreeing(comm, "folding \(unit.name)") {
                    try states.indices.map { try LeastSquaresFusion.fold(unit, states[$0], model: names[local.lowerBound + $0]) }
                }
                let total = try sum(perModel.indices.map { perModel[$0][u].packed + folded[$0].augmented.data })
                let template = RegMeanStatistics(unit)
                let n = template.packed.count
                return (try template.unpacked(Array(total[..<n])),
                        FoldedLayer(augmented: Matrix(rows: unit.outChannels, cols: unit.columns + 1, data: total[n...].map { $0 / Double(k) })))
            }
        }

        /// `base` with every unit replaced by its RegMean solution at (α, ridge) and the models' mean bias.
        func regmean(_ sums: [(statistics: RegMeanStatistics, prior: FoldedLayer)], alpha: Double, ridge: Double, base: StateDict) throws -> StateDict {
            let solved = try solvedOnRoot("RegMean solve at α = \(MergeRun.formatted(alpha)), ridge = \(MergeRun.formatted(ridge))", units.flatMap { shapes($0) }) {
                try units.indices.flatMap { u -> [(name: String, value: Tensor)] in
                    let w = try LeastSquaresFusion.regmeanSolve(layer: units[u].name, statistics: sums[u].statistics, prior: sums[u].prior.weight, alpha: alpha, relativeRidge: ridge)
                    return LeastSquaresFusion.unfold(units[u], FoldedLayer(weight: w, bias: sums[u].prior.bias))
                }
            }
            var out = base
            for (n, t) in solved { out[n] = t }
            return out
        }

        /// Progressive least squares from `start`: layer by layer from the input, X̃ from the fused layers so far, each
        /// layer regularised toward `toward`'s (nil: the models' mean layer).
        func progressive(ridge: Double, start: StateDict, toward: StateDict? = nil) throws -> StateDict {
            try progressive(ridges: [ridge], start: start, toward: toward).fused
        }

        /// The same with each layer's ridge chosen from `ridges` in turn: the one whose network (later layers still
        /// `start`'s) `score`s best; one statistics pass per layer serves every ridge. One ridge needs no score.
        func progressive(ridges: [Double], start: StateDict, toward: StateDict? = nil,
                         score: ((StateDict) throws -> Double)? = nil) throws -> (fused: StateDict, ridges: [Double]) {
            precondition(ridges.count == 1 || score != nil, "a per-layer ridge choice needs a score")
            var fused = start, chosen: [Double] = []
            // ρ = ∞ is the prior alone: no pass over the calibration data when no finite ridge will read the statistics.
            let needsStatistics = ridges.contains { $0 != .infinity }
            for unit in units {
                let fusedNet = needsStatistics ? try like.with(backbone: fused) : nil
                let contributions = try MergeRun.agreeing(comm, "progressive statistics of layer '\(unit.name)'") {
                    try zip(local, nets).enumerated().map { j, pair -> [Double] in
                        let (i, net) = pair
                        let layer = try LeastSquaresFusion.fold(unit, states[j], model: names[i])
                        let s = try fusedNet.map { try LeastSquaresFusion.progressiveContribution(plan, unit, fused: $0, expert: net, expertLayer: layer, data: batches(calibration(i))) }
                            ?? ProgressiveStatistics(unit)
                        return s.packed + layer.augmented.data
                    }
                }
                let total = try sum(contributions)
                let template = ProgressiveStatistics(unit)
                let n = template.packed.count
                var best: (score: Double, ridge: Double, layer: StateDict)?
                for ridge in ridges {
                    let solved = try solvedOnRoot("progressive solve at ridge = \(MergeRun.formatted(ridge))", shapes(unit)) {
                        let stats = try template.unpacked(Array(total[..<n]))
                        let prior = try toward.map { try LeastSquaresFusion.fold(unit, $0, model: "the starting merge") }
                            ?? FoldedLayer(augmented: Matrix(rows: unit.outChannels, cols: unit.columns + 1, data: total[n...].map { $0 / Double(k) }))
                        return LeastSquaresFusion.unfold(unit, try LeastSquaresFusion.progressiveSolve(layer: unit.name, statistics: stats, prior: prior, relativeRidge: ridge))
                    }
                    guard let score else { best = (0, ridge, solved); break }
                    var candidate = fused
                    for (n, t) in solved { candidate[n] = t }
                    let s = try score(candidate)
                    if best == nil || s > best!.score { best = (s, ridge, solved) }
                }
                for (n, t) in best!.layer { fused[n] = t }
                chosen.append(best!.ridge)
            }
            return (fused, chosen)
        }

        /// Progressive least squares with its ridge chosen on calibration (`score`): one ridge for every layer, each of
        /// the grid tried in full, or (`perLayer`) each layer's in turn. Every candidate's score lands in `scores`.
        func chosenProgressive(ridges: [Double], perLayer: Bool, start: StateDict, toward: StateDict?, score: (StateDict) throws -> Double,
                               scores: inout [String: Double], log: (String) -> Void) throws -> (score: Double, ridge: String, fused: StateDict) {
            if perLayer {
                let (fused, chosen) = try withoutActuallyEscaping(score) { try progressive(ridges: ridges, start: start, toward: toward, score: $0) }
                let s = try score(fused), label = chosen.map { MergeRun.formatted($0) }.joined(separator: ",")
                scores["ridges=\(label)"] = s
                log(String(format: "progressive, ridges per layer %@: calibration accuracy %.2f%%", label, 100 * s))
                return (s, label, fused)
            }
            var best: (score: Double, ridge: String, fused: StateDict)?
            for r in ridges {
                let fused = try progressive(ridge: r, start: start, toward: toward)
                let s = try score(fused)
                scores["ridge=\(MergeRun.formatted(r))"] = s
                log(String(format: "progressive, ridge = %@: calibration accuracy %.2f%%", MergeRun.formatted(r), 100 * s))
                if best == nil || s > best!.score { best = (s, MergeRun.formatted(r), fused) }
            }
            return best!
        }
    }

    // MARK: Tasks suites: one backbone for every task, each task keeps its head

    public static func mergeTasks(_ input: TasksInputs, selection: [LabeledImages], options o: MergeOptions, comm: Communicator,
                                  log: @escaping (String) -> Void = { _ in }) throws -> MergeResult {
        try o.validate()
        guard o.method.fuses else { throw PipelineError("FusionRun runs regmean or progressive, not \(o.method.name)") }
        var timer = PhaseTimer(counting: comm)
        let k = input.tasks.count
        guard k >= 1 else { throw PipelineError("suite '\(input.suite)' gives no experts to fuse") }
        guard input.calibration.count == k, input.test.count == k, input.heads.count == k, selection.count == k else {
            throw PipelineError("the tasks inputs disagree: \(k) tasks, \(input.calibration.count) calibration sets, \(selection.count) selection sets, \(input.test.count) test sets, \(input.heads.count) heads")
        }
        for t in 0..<k where input.calibration[t].count == 0 { throw PipelineError("\(FusionError.emptyCalibration(task: input.tasks[t]))") }
        var stripped = input.architectures
        for i in stripped.indices { stripped[i].classes = 0 }
        do { try requireSameArchitecture(stripped, names: input.tasks.map { "expert \($0)" }) } catch { throw PipelineError(wrapping: error) }
        let pre = input.pretrained
        let plan: FusionPlan
        do { plan = try FusionPlan(pre.architecture) } catch { throw PipelineError(wrapping: error) }
        let selectionSets = (0..<k).map { selection[$0].count > 0 ? selection[$0] : input.calibration[$0] }
        let heldOut = selection.allSatisfy { $0.count > 0 }

        let shard = ModelShard(total: k, comm: comm), local = shard.local
        let layout = FlatLayout(pre.backboneStateDict())
        let nets = try MergeRun.agreeing(comm, "loading the experts") { try local.map { try input.load($0) } }
        let states = nets.map { $0.stateDictionary() }
        let expertFlats = states.map { layout.flatten($0) }
        let c = Context(shard: shard, names: input.tasks.map { "expert \($0)" }, nets: nets, states: states, plan: plan,
                        units: plan.units, layout: layout, like: pre, batchSize: o.batchSize, calibration: { input.calibration[$0] })
        timer.lap("load")

        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(1, v.count)) }
        // A merge alone reads each keyed set of logits once: its own evaluator keeps nothing.
        let evaluator = o.evaluator ?? Evaluator(budget: 0)
        /// Accuracy of a backbone with each task's head on each task's set, the tasks spread over the ranks; `model` names
        /// a backbone the run's evaluator may already have read on the test sets.
        func evaluate(_ backbone: StateDict, sets: [LabeledImages], model: String? = nil) throws -> [Double] {
            var h = try MergeRun.agreeing(comm, "evaluation") { () -> [Double] in
                var h = [Double](repeating: 0, count: k)
                for t in 0..<k where t % comm.size == comm.rank {
                    let classes = input.heads[t].weight.shape[0]
                    let logits = try evaluator.logits(model.flatMap { m in input.keys?.test(model: m, task: t) }) {
                        let net = try pre.with(backbone: backbone, head: input.heads[t])
                        return Trainer.logits(net, data: sets[t], indices: Array(0..<sets[t].count)).storage
                    }
                    h[t] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: classes, labels: sets[t].labels)) / Double(max(1, sets[t].count))
                }
                return h
            }
            try comm.allreduce(&h, op: .sum)
            return h
        }

        let averageFlat = try TaskVectors.average(expertFlats, shard: shard)
        let average = layout.unflatten(averageFlat)
        var scores: [String: Double] = [:]
        var rows: [ReportRow] = []
        var hyper: [String: String] = [:]

        // RegMean: one statistics pass and one reduction serve the whole (α, ridge) grid.
        var regmean: (score: Double, alpha: Double, ridge: Double, backbone: StateDict)?
        if o.method == RegMean.self {
            let sums = try c.regmeanSums()
            timer.lap("regmean-statistics")
            for r in o.parameters.numbers(Progressive.ridges) {
                for a in o.parameters.numbers(RegMean.alphas) {
                    let candidate = try c.regmean(sums, alpha: a, ridge: r, base: average)
                    let s = mean(try evaluate(candidate, sets: selectionSets))
                    scores["alpha=\(MergeRun.formatted(a)),ridge=\(MergeRun.formatted(r))"] = s
                    if regmean == nil || s > regmean!.score { regmean = (s, a, r, candidate) }
                }
            }
            log(String(format: "RegMean: α = %@, ridge = %@, calibration accuracy %.2f%%", MergeRun.formatted(regmean!.alpha), MergeRun.formatted(regmean!.ridge), 100 * regmean!.score))
            timer.lap("regmean-grid")
        }

        let preFlat = layout.flatten(pre.stateDictionary())
        let taskVectors = TaskVectorContext(shard: shard, experts: expertFlats, pretrained: preFlat, average: averageFlat, layout: layout,
                                            parameters: o.parameters, seed: o.seed) { mean(try evaluate(layout.unflatten($0), sets: selectionSets)) }
        var progressive: (score: Double, ridge: String, fused: StateDict)?
        if o.method == Progressive.self {
            // The start and prior: the experts' mean, or a data-free merge (its α or λ chosen on the same selection images).
            var start = average, toward: StateDict?
            let startName = o.parameters.text(Progressive.start) ?? "average"
            if startName != "average" {
                guard let m = MethodRegistry.method(named: startName) as? any TaskVectorMerge.Type else { throw PipelineError("progressive_start: '\(startName)' is not a task-vector merge") }
                let outcome = try m.merge(taskVectors)
                start = layout.unflatten(outcome.backbone)
                toward = start
                for (key, s) in outcome.calibrationScores { scores["start \(startName) \(key)"] = s }
                hyper["start"] = ([startName] + outcome.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
                log("progressive: starting from \(hyper["start"]!)")
                timer.lap("progressive-start")
            }
            progressive = try c.chosenProgressive(ridges: o.parameters.numbers(Progressive.ridges), perLayer: o.parameters.flag(Progressive.perLayerRidge),
                                                  start: start, toward: toward, score: { mean(try evaluate($0, sets: selectionSets)) },
                                                  scores: &scores, log: log)
            timer.lap("progressive")
        }

        // Task arithmetic beside them: the method's own λ search, on the same held-out calibration images.
        let taskArithmetic = try TaskArithmetic.search(taskVectors, experts: expertFlats, label: "task-arithmetic ").outcome
        scores.merge(taskArithmetic.calibrationScores) { $1 }
        timer.lap("task-arithmetic")

        // Test accuracy: every expert on its own task, the baselines, the fused models.
        var own = try MergeRun.agreeing(comm, "evaluating the experts") { () -> [Double] in
            var h = [Double](repeating: 0, count: k)
            for (j, i) in local.enumerated() {
                let logits = evaluator.logits(input.keys.map { $0.test(model: $0.experts[i], task: i) }) {
                    Trainer.logits(nets[j], data: input.test[i], indices: Array(0..<input.test[i].count)).storage
                }
                h[i] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: nets[j].classes, labels: input.test[i].labels)) / Double(max(1, input.test[i].count))
            }
            return h
        }
        try comm.allreduce(&own, op: .sum)
        func row(_ name: String, _ kind: RowKind, _ acc: [Double], _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: acc, mean: mean(acc), hyperparameters: hp)
        }
        rows.append(row("experts (each on its own task)", .bestSingle, own))
        rows.append(row("pretrained + task heads", .baseline, try evaluate(layout.unflatten(preFlat), sets: input.test, model: input.keys?.pretrained)))
        rows.append(row("weight averaging", .baseline, try evaluate(average, sets: input.test, model: input.keys?.average)))
        rows.append(row("task arithmetic", .baseline, try evaluate(layout.unflatten(taskArithmetic.backbone), sets: input.test), taskArithmetic.hyperparameters))
        let fused: StateDict
        if let p = progressive {
            hyper["ridge"] = p.ridge
            rows.append(row("fused: progressive", .fused, try evaluate(p.fused, sets: input.test), hyper))
            fused = p.fused
        } else {
            let rm = regmean!
            hyper = ["alpha": MergeRun.formatted(rm.alpha), "ridge": MergeRun.formatted(rm.ridge)]
            rows.append(row("fused: regmean", .fused, try evaluate(rm.backbone, sets: input.test), hyper))
            fused = rm.backbone
        }
        hyper["ridge_scale"] = hyper["start"] == nil ? ridgeScale : "relative to the mean diagonal of the Gram matrix, toward the starting merge"
        hyper["selection"] = heldOut ? "\(selectionSets[0].count) held-out calibration images per task" : "the statistics images (no held-out calibration left)"
        if plan.units.contains(where: { $0.batchNorm != nil }) { hyper["batchnorm"] = "folded into the preceding convolution (identity BatchNorm in the fused file)" }
        timer.lap("evaluate")

        let report = MergeReport(method: o.method.name, suite: input.suite, suiteKind: "tasks", architecture: pre.architecture.description + " backbone, task heads",
                                 columns: input.tasks, models: input.tasks, ranks: comm.size, reference: nil, referenceRule: nil,
                                 calibrationSamples: input.calibration.first?.count ?? 0, hyperparameters: hyper, calibrationScores: scores,
                                 rows: rows, fusedFile: nil, seconds: timer.seconds, bytes: timer.counted)
        return MergeResult(report: report, fused: nil, backbone: layout.names.map { ($0, fused[$0]!) },
                           heads: input.tasks.enumerated().map { ($1, input.heads[$0].weight, input.heads[$0].bias) })
    }

    // MARK: Seeds and splits suites: one model for one task, after alignment (multi-level)

    /// Fuses the models of a same-task suite: each rank's models are first aligned into the reference's space by
    /// `o.align` (cca, permute, weight-matching; nil: used as they are) through `MergeRun.mergeSameTask`, then
    /// fused by progressive least squares (or RegMean) on every layer, the 10-way head included, with X̃ and the
    /// targets from the calibration split. The report keeps the alignment's rows (ensemble, single models, its merge).
    public static func mergeSameTask(_ input: SameTaskInputs, selection: LabeledImages, options o: MergeOptions, comm: Communicator,
                                     log: @escaping (String) -> Void = { _ in }) throws -> MergeResult {
        try o.validate()
        guard o.method.fuses else { throw PipelineError("FusionRun runs regmean or progressive, not \(o.method.name)") }
        var timer = PhaseTimer(counting: comm)
        guard input.calibration.count > 0 else { throw PipelineError("suite '\(input.suite)': the calibration split is empty, the fusion needs calibration images") }
        let alignMethod = o.align ?? Average.self
        var ao = o
        ao.method = alignMethod
        ao.parameters.remove(CommonParameters.align)
        let aligned = try MergeRun.mergeSameTask(input, options: ao, comm: comm, log: log)
        timer.lap("align")
        let k = input.names.count, arch = input.architectures[0]
        let plan: FusionPlan
        do { plan = try FusionPlan(arch) } catch { throw PipelineError(wrapping: error) }
        let counters = try Network<Float>(arch, seed: 0).batchCounterValues
        let shard = ModelShard(total: k, comm: comm)
        let nets = try MergeRun.agreeing(comm, "aligned models") { try aligned.alignedLocal.map { try Network<Float>.loaded(arch, $0, counters: counters) } }
        let states = nets.map { $0.stateDictionary() }
        let layout = FlatLayout(try Network<Float>(arch, seed: 0).stateDict())
        let selectionSet = selection.count > 0 ? selection : input.calibration
        let c = Context(shard: shard, names: input.names, nets: nets, states: states, plan: plan, units: plan.units + [plan.head],
                        layout: layout, like: try Network<Float>(arch, seed: 0), batchSize: o.batchSize, calibration: { _ in input.calibration })
        let average = layout.unflatten(try c.sum(states.map { layout.flatten($0) }).map { $0 / Double(k) })
        func accuracy(_ state: StateDict, _ data: LabeledImages) throws -> Double {
            let net = try MergeRun.agreeing(comm, "fused network") { try Network<Float>.loaded(arch, state, counters: counters) }
            return try MergeRun.hits(net, data, comm: comm) / Double(max(1, data.count))
        }

        var scores = aligned.report.calibrationScores
        var hyper: [String: String] = [:]
        var best: (score: Double, state: StateDict)?
        if o.method == Progressive.self {
            let p = try c.chosenProgressive(ridges: o.parameters.numbers(Progressive.ridges), perLayer: o.parameters.flag(Progressive.perLayerRidge),
                                            start: average, toward: nil, score: { try accuracy($0, selectionSet) }, scores: &scores, log: log)
            best = (p.score, p.fused)
            hyper = ["ridge": p.ridge]
        } else {
            let sums = try c.regmeanSums()
            for r in o.parameters.numbers(Progressive.ridges) {
                for a in o.parameters.numbers(RegMean.alphas) {
                    let fused = try c.regmean(sums, alpha: a, ridge: r, base: average)
                    let s = try accuracy(fused, selectionSet)
                    scores["alpha=\(MergeRun.formatted(a)),ridge=\(MergeRun.formatted(r))"] = s
                    if best == nil || s > best!.score { best = (s, fused); hyper = ["alpha": MergeRun.formatted(a), "ridge": MergeRun.formatted(r)] }
                }
            }
        }
        timer.lap(o.method.name)
        let testAccuracy = try accuracy(best!.state, input.test)
        timer.lap("evaluate")
        hyper["align"] = o.align?.name ?? "none"
        for (key, v) in aligned.report.hyperparameters { hyper["align_" + key] = v }
        let rowHyper = hyper
        hyper["ridge_scale"] = ridgeScale
        hyper["selection"] = selection.count > 0 ? "\(selection.count) held-out calibration images" : "the statistics images (no held-out calibration left)"
        if plan.units.contains(where: { $0.batchNorm != nil }) { hyper["batchnorm"] = "folded into the preceding convolution (identity BatchNorm in the fused file)" }
        var rows = aligned.report.rows
        if let i = rows.firstIndex(where: { $0.kind == .fused }) {
            rows[i].name = o.align == nil ? "weight averaging" : "\(alignMethod.name) merge (aligned, averaged)"
            rows[i].kind = .baseline
        }
        let name = "fused: \(o.method.name)" + (o.align.map { " after \($0.name)" } ?? "")
        rows.insert(ReportRow(name: name, kind: .fused, accuracies: [testAccuracy], mean: testAccuracy, hyperparameters: rowHyper),
                    at: (rows.firstIndex { $0.name.hasPrefix(input.names[0]) } ?? rows.count))
        for (key, v) in aligned.report.seconds { timer.seconds["align-" + key] = v }
        var report = aligned.report
        report.method = o.method.name + (o.align.map { "+\($0.name)" } ?? "")
        report.hyperparameters = hyper
        report.calibrationScores = scores
        report.rows = rows
        report.seconds = timer.seconds
        if let fit = timer.counted {
            var bytes = fit
            // The alignment's own phases replace its one lap, so the phases still sum to the run's total.
            if let inner = aligned.report.bytes { bytes["align"] = nil; for (key, v) in inner { bytes["align-" + key] = v } }
            report.bytes = bytes
        }
        let fusedNet = try Network<Float>.loaded(arch, best!.state, counters: counters)
        return MergeResult(report: report, fused: fusedNet, backbone: [], heads: [])
    }
}
