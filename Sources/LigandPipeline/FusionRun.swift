import Foundation
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics
import LigandZoo

/// RegMean and progressive least-squares fusion of a tasks suite over a Communicator (algorithms.md, "One fused
/// model for every task"): expert k lives on one rank (blockRange), which computes its Float64 Gram and cross
/// sums on task k's calibration images; the rank-count-independent `deterministicSum` adds them over experts,
/// rank 0 solves and broadcasts the layer, and every rank moves on to the next layer with the fused layers so far.
/// Memory per rank is O(its experts × layer width²), never O(data): batches stream through.
/// BatchNorm (ResNet-20) is folded into the preceding convolution before solving; the fused file then holds
/// folded convolutions followed by identity BatchNorms (mean 0, variance 1) whose β is the fused bias.
public enum FusionRun {
    public static func mergeTasks(_ input: TasksInputs, selection: [LabeledImages], options o: AlignOptions, comm: Communicator,
                                  log: @escaping (String) -> Void = { _ in }) throws -> AlignResult {
        try o.validate()
        guard o.method.fuses else { throw AlignError("FusionRun runs regmean or progressive, not \(o.method.rawValue)") }
        var timings: [String: Double] = [:]
        var clock = Date()
        func lap(_ key: String) { timings[key, default: 0] += Date().timeIntervalSince(clock); clock = Date() }
        let k = input.tasks.count
        guard k >= 1 else { throw AlignError("suite '\(input.suite)' gives no experts to fuse") }
        guard input.calibration.count == k, input.test.count == k, input.heads.count == k, selection.count == k else {
            throw AlignError("the tasks inputs disagree: \(k) tasks, \(input.calibration.count) calibration sets, \(selection.count) selection sets, \(input.test.count) test sets, \(input.heads.count) heads")
        }
        for t in 0..<k where input.calibration[t].count == 0 { throw AlignError("\(FusionError.emptyCalibration(task: input.tasks[t]))") }
        var stripped = input.architectures
        for i in stripped.indices { stripped[i].classes = 0 }
        do { try requireSameArchitecture(stripped, names: input.tasks.map { "expert \($0)" }) } catch { throw AlignError("\(error)") }
        let pre = input.pretrained
        let plan: FusionPlan
        do { plan = try FusionPlan(pre.architecture) } catch { throw AlignError("\(error)") }
        let selectionSets = (0..<k).map { selection[$0].count > 0 ? selection[$0] : input.calibration[$0] }
        let heldOut = selection.allSatisfy { $0.count > 0 }

        let local = blockRange(count: k, parts: comm.size, part: comm.rank)
        let headNames = Set(pre.head.parameters.map(\.name))
        let layout = FlatLayout(pre.stateDict().filter { !headNames.contains($0.name) })
        let nets = try AlignRun.agreeing(comm, "loading the experts") { try local.map { try input.load($0) } }
        let states = nets.map { $0.stateDictionary() }
        let expertFlats = states.map { layout.flatten($0) }
        lap("load")

        func sum(_ vectors: [[Double]]) throws -> [Double] {
            try deterministicSum(contributions: zip(local, vectors).map { (index: $0, values: $1) }, total: k, comm: comm)
        }
        func batches(_ data: LabeledImages) -> CalibrationBatches {
            let starts = Array(stride(from: 0, to: data.count, by: o.batchSize))
            return CalibrationBatches(count: starts.count) { AlignRun.batch(data, Array(starts[$0]..<min(data.count, starts[$0] + o.batchSize))) }
        }
        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(1, v.count)) }
        /// Accuracy of a backbone with each task's head on each task's set, the tasks spread over the ranks.
        func evaluate(_ backbone: StateDict, sets: [LabeledImages]) throws -> [Double] {
            var h = try AlignRun.agreeing(comm, "evaluation") { () -> [Double] in
                var h = [Double](repeating: 0, count: k)
                for t in 0..<k where t % comm.size == comm.rank {
                    let net = try Merging.network(backbone: backbone, like: pre, classes: input.heads[t].weight.shape[0], head: input.heads[t])
                    let logits = Trainer.logits(net, data: sets[t], indices: Array(0..<sets[t].count)).storage
                    h[t] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: net.classes, labels: sets[t].labels)) / Double(max(1, sets[t].count))
                }
                return h
            }
            try comm.allreduce(&h, op: .sum)
            return h
        }
        /// Rank 0 runs `solve` (the tensors of some units); every rank receives them, or every rank throws its error.
        func solvedOnRoot(_ phase: String, _ names: [(name: String, shape: [Int])], _ solve: () throws -> [(name: String, value: Tensor)]) throws -> StateDict {
            let mine: [Float]? = try AlignRun.agreeing(comm, phase) { comm.isRoot ? try solve().flatMap(\.value.storage) : nil }
            var flat = mine ?? []
            try comm.broadcast(&flat, root: 0)
            var out: StateDict = [:], offset = 0
            for (n, s) in names {
                let c = s.reduce(1, *)
                out[n] = Tensor(shape: s, storage: Array(flat[offset..<(offset + c)]))
                offset += c
            }
            return out
        }
        func shapes(_ u: FusionUnit) -> [(name: String, shape: [Int])] {
            LeastSquaresFusion.unfold(u, FoldedLayer(weight: Matrix(zeros: u.outChannels, u.columns), bias: [Double](repeating: 0, count: u.outChannels)))
                .map { ($0.name, $0.value.shape) }
        }

        let averageFlat = try sum(expertFlats).map { $0 / Double(k) }
        let average = layout.unflatten(averageFlat)
        var scores: [String: Double] = [:]
        var rows: [ReportRow] = []
        var hyper: [String: String] = [:]
        let ridgeScale = "relative to the mean diagonal of the Gram matrix, toward the experts' mean"
        let bn = plan.units.contains { $0.batchNorm != nil }

        // RegMean: one statistics pass and one reduction serve the whole (α, ridge) grid.
        var regmean: (backbone: StateDict, alpha: Double, ridge: Double)?
        do {
            let perExpert = try AlignRun.agreeing(comm, "RegMean statistics") {
                try zip(local, nets).map { i, net in try LeastSquaresFusion.regmeanContribution(plan, expert: net, data: batches(input.calibration[i])) }
            }
            var sums: [RegMeanStatistics] = [], priors: [FoldedLayer] = []
            for (u, unit) in plan.units.enumerated() {
                let folded = try AlignRun.agreeing(comm, "folding \(unit.name)") {
                    try states.indices.map { try LeastSquaresFusion.fold(unit, states[$0], model: "expert \(input.tasks[local.lowerBound + $0])") }
                }
                let total = try sum(perExpert.indices.map { perExpert[$0][u].packed + folded[$0].augmented.data })
                let template = RegMeanStatistics(unit)
                let n = template.packed.count
                sums.append(try template.unpacked(Array(total[..<n])))
                priors.append(FoldedLayer(augmented: Matrix(rows: unit.outChannels, cols: unit.columns + 1, data: total[n...].map { $0 / Double(k) })))
            }
            lap("regmean-statistics")
            let names = plan.units.flatMap { shapes($0) }
            var best: (score: Double, alpha: Double, ridge: Double, backbone: StateDict)?
            for r in o.ridges {
                for a in o.alphas {
                    let label = "alpha=\(AlignRun.formatted(a)),ridge=\(AlignRun.formatted(r))"
                    var candidate = average
                    let solved = try solvedOnRoot("RegMean solve at α = \(AlignRun.formatted(a)), ridge = \(AlignRun.formatted(r))", names) {
                        try plan.units.indices.flatMap { u -> [(name: String, value: Tensor)] in
                            let w = try LeastSquaresFusion.regmeanSolve(layer: plan.units[u].name, statistics: sums[u], prior: priors[u].weight, alpha: a, relativeRidge: r)
                            return LeastSquaresFusion.unfold(plan.units[u], FoldedLayer(weight: w, bias: priors[u].bias))
                        }
                    }
                    for (n, t) in solved { candidate[n] = t }
                    let s = mean(try evaluate(candidate, sets: selectionSets))
                    scores[(o.method == .regmean ? "" : "regmean ") + label] = s
                    if best == nil || s > best!.score { best = (s, a, r, candidate) }
                }
            }
            log(String(format: "RegMean: α = %@, ridge = %@, calibration accuracy %.2f%%", AlignRun.formatted(best!.alpha), AlignRun.formatted(best!.ridge), 100 * best!.score))
            regmean = (best!.backbone, best!.alpha, best!.ridge)
            lap("regmean-grid")
        }

        // Progressive: layer by layer from the input, X̃ from the fused layers so far, for each ridge of the grid.
        var progressive: (backbone: StateDict, ridge: Double)?
        if o.method == .progressive {
            var best: (score: Double, ridge: Double, backbone: StateDict)?
            for r in o.ridges {
                var fused = average
                for unit in plan.units {
                    let fusedNet = try LeastSquaresFusion.network(like: pre, backbone: fused)
                    let contributions = try AlignRun.agreeing(comm, "progressive statistics of layer '\(unit.name)'") {
                        try zip(local, nets).enumerated().map { j, pair -> [Double] in
                            let (i, net) = pair
                            let layer = try LeastSquaresFusion.fold(unit, states[j], model: "expert \(input.tasks[i])")
                            let s = try LeastSquaresFusion.progressiveContribution(plan, unit, fused: fusedNet, expert: net, expertLayer: layer, data: batches(input.calibration[i]))
                            return s.packed + layer.augmented.data
                        }
                    }
                    let total = try sum(contributions)
                    let template = ProgressiveStatistics(unit)
                    let n = template.packed.count
                    let solved = try solvedOnRoot("progressive solve at ridge = \(AlignRun.formatted(r))", shapes(unit)) {
                        let stats = try template.unpacked(Array(total[..<n]))
                        let prior = FoldedLayer(augmented: Matrix(rows: unit.outChannels, cols: unit.columns + 1, data: total[n...].map { $0 / Double(k) }))
                        return LeastSquaresFusion.unfold(unit, try LeastSquaresFusion.progressiveSolve(layer: unit.name, statistics: stats, prior: prior, relativeRidge: r))
                    }
                    for (n, t) in solved { fused[n] = t }
                }
                let s = mean(try evaluate(fused, sets: selectionSets))
                scores["ridge=\(AlignRun.formatted(r))"] = s
                log(String(format: "progressive, ridge = %@: calibration accuracy %.2f%%", AlignRun.formatted(r), 100 * s))
                if best == nil || s > best!.score { best = (s, r, fused) }
            }
            progressive = (best!.backbone, best!.ridge)
            lap("progressive")
        }

        // Task arithmetic beside them, λ fitted on the same held-out calibration images.
        let preFlat = layout.flatten(pre.stateDictionary())
        let isParameter = zip(layout.names, layout.shapes).flatMap { n, s in
            [Bool](repeating: !(n.hasSuffix(".running_mean") || n.hasSuffix(".running_var")), count: s.reduce(1, *))
        }
        let delta = try sum(expertFlats.map { e in (0..<e.count).map { e[$0] - preFlat[$0] } })
        func taskArithmetic(_ lambda: Double) -> StateDict {
            layout.unflatten((0..<preFlat.count).map { isParameter[$0] ? preFlat[$0] + lambda * delta[$0] : averageFlat[$0] })
        }
        var bestLambda = (lambda: o.lambdas[0], score: -1.0)
        for l in o.lambdas {
            let s = mean(try evaluate(taskArithmetic(l), sets: selectionSets))
            scores["task-arithmetic lambda=\(AlignRun.formatted(l))"] = s
            if s > bestLambda.score { bestLambda = (l, s) }
        }
        lap("task-arithmetic")

        // Test accuracy: every expert on its own task, the baselines, the fused models.
        var own = try AlignRun.agreeing(comm, "evaluating the experts") { () -> [Double] in
            var h = [Double](repeating: 0, count: k)
            for (j, i) in local.enumerated() {
                let logits = Trainer.logits(nets[j], data: input.test[i], indices: Array(0..<input.test[i].count)).storage
                h[i] = Double(Evaluation.argmaxHits(ArraySlice(logits.map(Double.init)), classes: nets[j].classes, labels: input.test[i].labels)) / Double(max(1, input.test[i].count))
            }
            return h
        }
        try comm.allreduce(&own, op: .sum)
        func row(_ name: String, _ kind: String, _ acc: [Double], _ hp: [String: String] = [:]) -> ReportRow {
            ReportRow(name: name, kind: kind, accuracies: acc, mean: mean(acc), hyperparameters: hp)
        }
        rows.append(row("experts (each on its own task)", "model", own))
        rows.append(row("pretrained + task heads", "baseline", try evaluate(layout.unflatten(preFlat), sets: input.test)))
        rows.append(row("weight averaging", "baseline", try evaluate(average, sets: input.test)))
        rows.append(row("task arithmetic", "baseline", try evaluate(taskArithmetic(bestLambda.lambda), sets: input.test), ["lambda": AlignRun.formatted(bestLambda.lambda)]))
        let fused: StateDict
        let rm = regmean!
        let rmHyper = ["alpha": AlignRun.formatted(rm.alpha), "ridge": AlignRun.formatted(rm.ridge)]
        if let p = progressive {
            rows.append(row("regmean", "baseline", try evaluate(rm.backbone, sets: input.test), rmHyper))
            hyper["ridge"] = AlignRun.formatted(p.ridge)
            rows.append(row("fused: progressive", "merge", try evaluate(p.backbone, sets: input.test), hyper))
            fused = p.backbone
        } else {
            hyper = rmHyper
            rows.append(row("fused: regmean", "merge", try evaluate(rm.backbone, sets: input.test), hyper))
            fused = rm.backbone
        }
        hyper["ridge_scale"] = ridgeScale
        hyper["selection"] = heldOut ? "\(selectionSets[0].count) held-out calibration images per task" : "the statistics images (no held-out calibration left)"
        if bn { hyper["batchnorm"] = "folded into the preceding convolution (identity BatchNorm in the fused file)" }
        lap("evaluate")

        let report = AlignReport(method: o.method.rawValue, suite: input.suite, suiteKind: "tasks", architecture: pre.architecture.description + " backbone, task heads",
                                 columns: input.tasks, models: input.tasks, ranks: comm.size, reference: nil, referenceRule: nil,
                                 calibrationSamples: input.calibration.first?.count ?? 0, hyperparameters: hyper, calibrationScores: scores,
                                 rows: rows, fusedFile: nil, seconds: timings)
        return AlignResult(report: report, fused: nil, backbone: layout.names.map { ($0, fused[$0]!) },
                           heads: input.tasks.enumerated().map { ($1, input.heads[$0].weight, input.heads[$0].bias) })
    }
}
