import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNN
import LigandNumerics

/// One line of an evaluation table: accuracies (fractions) per column.
public struct EvalRow: Codable, Equatable, Sendable {
    public var name: String
    /// model, ensemble or baseline.
    public var kind: String
    public var accuracies: [Double]
    public var lambda: Double?
}

/// The result of `ligand eval`: identical whatever the number of ranks.
public struct EvalReport: Codable, Equatable, Sendable {
    public var suite: String?
    public var architecture: String
    public var split: String
    public var images: Int
    public var columns: [String]
    public var rows: [EvalRow]

    /// The table a person reads (percentages with two decimals).
    public func render() -> String {
        let nameWidth = max(28, (rows.map(\.name.count).max() ?? 0) + 2)
        let colWidth = max(9, (columns.map(\.count).max() ?? 0) + 2)
        func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
            s.count >= n ? s + " " : (left ? s + String(repeating: " ", count: n - s.count) : String(repeating: " ", count: n - s.count) + s)
        }
        var out = "\(suite.map { "suite \($0), " } ?? "")\(architecture), \(split) split, \(images) images per column\n"
        out += pad("model", nameWidth, left: true) + columns.map { pad($0, colWidth) }.joined() + "\n"
        for r in rows {
            let name = r.name + (r.lambda.map { String(format: " (λ=%.2f)", $0) } ?? "")
            out += pad(name, nameWidth, left: true) + r.accuracies.map { pad(String(format: "%.2f", 100 * $0), colWidth) }.joined() + "\n"
        }
        return out
    }
}

public enum EvalError: Error, CustomStringConvertible, LocalizedError {
    case architectureMismatch(file: String, found: String, expected: String, reference: String)
    case empty
    public var description: String {
        switch self {
        case let .architectureMismatch(file, found, expected, reference):
            return "\(file): holds a \(found), but \(reference) is a \(expected); every model of an evaluation must have one architecture"
        case .empty: return "no model to evaluate"
        }
    }
    public var errorDescription: String? { description }
}

public enum Evaluation {
    /// Task arithmetic's λ grid, 0.05 … 1 in steps of 0.05: Ilharco et al. (2023)'s grid without λ = 0 (the pretrained model itself).
    public static let taskArithmeticLambdas: [Double] = (1...20).map { Double($0) / 20 }
    /// Checks every file's header (no tensor is read) and returns the common architecture.
    public static func commonArchitecture(_ files: [URL], ignoringClasses: Bool = false) throws -> Architecture {
        guard let first = files.first else { throw EvalError.empty }
        var reference: Architecture?
        for url in files {
            guard FileManager.default.fileExists(atPath: url.path) else { throw ZooError("\(url.path): model file not found") }
            var arch = try ModelFile.architecture(of: try SafeTensorsFile(url: url))
            if ignoringClasses { arch.classes = 0 }
            if let r = reference, r != arch {
                throw EvalError.architectureMismatch(file: url.path, found: arch.description, expected: r.description, reference: first.path)
            }
            reference = arch
        }
        return reference!
    }

    /// Row-wise softmax of Float32 logits, in Float64.
    public static func softmaxRows(_ logits: [Float], classes c: Int) -> [Double] {
        var out = [Double](repeating: 0, count: logits.count)
        for r in 0..<(logits.count / c) {
            var m = -Double.infinity
            for j in 0..<c { m = max(m, Double(logits[r * c + j])) }
            var s = 0.0
            for j in 0..<c { let e = Foundation.exp(Double(logits[r * c + j]) - m); out[r * c + j] = e; s += e }
            for j in 0..<c { out[r * c + j] /= s }
        }
        return out
    }

    /// Rows whose largest score is the label (scores [rows, c], row-major).
    public static func argmaxHits(_ scores: ArraySlice<Double>, classes c: Int, labels: [Int]) -> Int {
        var correct = 0
        let base = scores.startIndex
        for (r, y) in labels.enumerated() {
            var best = 0
            for j in 1..<c where scores[base + r * c + j] > scores[base + r * c + best] { best = j }
            if best == y { correct += 1 }
        }
        return correct
    }

    public static func accuracy(_ scores: ArraySlice<Double>, classes c: Int, labels: [Int]) -> Double {
        labels.isEmpty ? 0 : Double(argmaxHits(scores, classes: c, labels: labels)) / Double(labels.count)
    }

    static func correct(_ logits: [Float], classes c: Int, labels: [Int]) -> Int {
        Tensor(shape: [labels.count, c], storage: logits).argmaxRows().enumerated().filter { $0.element == labels[$0.offset] }.count
    }

    /// Each rank's block of `networks` (indices 0..<K) yields logits on `data`; one deterministic sum
    /// gives every model's accuracy and the two ensembles, bitwise the same for any rank count.
    static func ensembleRound(count k: Int, data: LabeledImages, classes c: Int, comm: Communicator, progress: PhaseProgress? = nil,
                              network: (Int) throws -> Network<Float>) throws -> (models: [Double], softmax: Double, logits: Double) {
        let n = data.count
        let shard = ModelShard(total: k, comm: comm), mine = shard.local
        var contributions: [[Double]] = []
        for i in mine {
            defer { progress?.update(i - mine.lowerBound + 1) }
            let net = try network(i)
            let logits = Trainer.logits(net, data: data, indices: Array(0..<n)).storage
            var v = softmaxRows(logits, classes: c)
            v += logits.map(Double.init)
            var hits = [Double](repeating: 0, count: k)
            hits[i] = Double(correct(logits, classes: c, labels: data.labels))
            v += hits
            contributions.append(v)
        }
        let sum = try shard.sum(contributions)
        let nc = n * c
        let models = (0..<k).map { sum[2 * nc + $0] / Double(n) }
        return (models, accuracy(sum[0..<nc], classes: c, labels: data.labels), accuracy(sum[nc..<(2 * nc)], classes: c, labels: data.labels))
    }

    /// Same task: every model on one evaluation set, plus the prediction ensembles.
    public static func sameTask(files: [URL], names: [String], data: LabeledImages, suite: String?, split: String,
                                comm: Communicator, progress style: PhaseProgress.Style = .quiet) throws -> EvalReport {
        let arch = try commonArchitecture(files)
        let progress = PhaseProgress("evaluation (this rank's models)", total: ModelShard(total: files.count, comm: comm).local.count,
                                     style: comm.isRoot ? style : .quiet)
        let r = try ensembleRound(count: files.count, data: data, classes: arch.classes, comm: comm, progress: progress) { i in
            try ModelFile.load(files[i], expecting: arch).network
        }
        progress.finish()
        var rows = zip(names, r.models).map { EvalRow(name: $0, kind: "model", accuracies: [$1]) }
        rows.append(EvalRow(name: "best single model", kind: "model", accuracies: [r.models.max() ?? 0]))
        rows.append(EvalRow(name: "ensemble (mean softmax)", kind: "ensemble", accuracies: [r.softmax]))
        rows.append(EvalRow(name: "ensemble (mean logits)", kind: "ensemble", accuracies: [r.logits]))
        return EvalReport(suite: suite, architecture: arch.description, split: split, images: data.count, columns: ["accuracy"], rows: rows)
    }

    /// A tasks suite for one architecture: every expert on every task (task t read through head h_t),
    /// the ensembles per task, and (with `baselines`) the pretrained backbone with the task heads,
    /// weight averaging and task arithmetic of the experts' backbones (λ fitted on calibration).
    public static func tasks(experts: [(task: TaskTransform, url: URL)], pretrained: URL, test: LabeledImages,
                             calibration: LabeledImages, suite: String?, baselines: Bool, lambdas: [Double],
                             comm: Communicator, progress style: PhaseProgress.Style = .quiet) throws -> EvalReport {
        let style = comm.isRoot ? style : .quiet
        let k = experts.count
        _ = try commonArchitecture(experts.map(\.url) + [pretrained], ignoringClasses: true)
        let loaded = try experts.map { try ModelFile.load($0.url).network }
        let heads = loaded.map { (weight: $0.head.weight.value, bias: $0.head.bias?.value ?? Tensor(zeros: [$0.classes])) }
        var columns = experts.map(\.task.rawValue)
        columns.append("average")
        var expertRows = [[Double]](repeating: [], count: k)
        var softmaxRow: [Double] = [], logitsRow: [Double] = []
        var testSets: [LabeledImages] = []
        let taskProgress = PhaseProgress("evaluation (tasks: every expert, ensembles)", total: experts.count, style: style)
        for (t, e) in experts.enumerated() {
            defer { taskProgress.update(t + 1) }
            let data = try e.task.apply(test)
            testSets.append(data)
            let r = try ensembleRound(count: k, data: data, classes: e.task.classes, comm: comm) { i in
                try ZooBuilder.expertNetwork(pretrained: loaded[i], head: heads[t])
            }
            for i in 0..<k { expertRows[i].append(r.models[i]) }
            softmaxRow.append(r.softmax); logitsRow.append(r.logits)
        }
        taskProgress.finish()
        func withMean(_ v: [Double]) -> [Double] { v + [v.reduce(0, +) / Double(max(1, v.count))] }
        var rows: [EvalRow] = []
        let own = (0..<k).map { expertRows[$0][$0] }
        var baselineRows: [EvalRow] = []
        if baselines {
            let pre = try ModelFile.load(pretrained).network
            // The task-vector maths of every merge (TaskVectors); each rank holds every expert here, so its sums are serial.
            let layout = pre.backboneStateDict().map { (name: $0.name, shape: $0.value.shape) }
            func flat(_ net: Network<Float>) -> [Double] {
                let d = Dictionary(uniqueKeysWithValues: net.stateDict().map { ($0.name, $0.value) })
                return layout.flatMap { d[$0.name]!.storage.map(Double.init) }
            }
            func backbone(_ v: [Double]) -> [String: Tensor] {
                var out: [String: Tensor] = [:], offset = 0
                for e in layout {
                    let n = e.shape.reduce(1, *)
                    out[e.name] = Tensor(shape: e.shape, storage: v[offset..<(offset + n)].map { Float($0) })
                    offset += n
                }
                return out
            }
            let serial = ModelShard(total: k, comm: InProcessCommunicator.single())
            let expertFlats = loaded.map(flat), preFlat = flat(pre)
            let averageFlat = try TaskVectors.average(expertFlats, shard: serial)
            let delta = try TaskVectors.sum(expertFlats, pretrained: preFlat, shard: serial)
            let mask = TaskVectors.parameterMask(layout.map { ($0.name, $0.shape.reduce(1, *)) })
            func taskArithmetic(_ lambda: Double) -> [String: Tensor] {
                backbone(TaskVectors.combine(pretrained: preFlat, delta: delta, lambda: lambda, isParameter: mask, average: averageFlat))
            }
            let preBackbone = backbone(preFlat), average = backbone(averageFlat)
            let calSets = try experts.map { try $0.task.apply(calibration) }
            let mine = blockRange(count: k, parts: comm.size, part: comm.rank)
            // Round 1: calibration hits of every λ on this rank's tasks, summed exactly (integers).
            var calHits = [Double](repeating: 0, count: lambdas.count)
            let lambdaProgress = PhaseProgress("task arithmetic λ (calibration, this rank's tasks)", total: mine.count * lambdas.count, style: style)
            for (m, t) in mine.enumerated() {
                for (j, l) in lambdas.enumerated() {
                    defer { lambdaProgress.update(m * lambdas.count + j + 1) }
                    let net = try pre.with(backbone: taskArithmetic(l), head: heads[t])
                    calHits[j] += Double(correct(Trainer.logits(net, data: calSets[t], indices: Array(0..<calSets[t].count)).storage,
                                                 classes: experts[t].task.classes, labels: calSets[t].labels))
                }
            }
            lambdaProgress.finish()
            try comm.allreduce(&calHits, op: .sum)
            let bestJ = calHits.indices.max { calHits[$0] < calHits[$1] || (calHits[$0] == calHits[$1] && $0 > $1) } ?? 0
            let lambda = lambdas[bestJ]
            let ta = taskArithmetic(lambda)
            // Round 2: test hits of the three baselines per task.
            var hits = [Double](repeating: 0, count: 3 * k)
            for t in mine {
                let c = experts[t].task.classes
                for (b, backbone) in [preBackbone, average, ta].enumerated() {
                    let net = try pre.with(backbone: backbone, head: heads[t])
                    hits[b * k + t] = Double(correct(Trainer.logits(net, data: testSets[t], indices: Array(0..<testSets[t].count)).storage,
                                                     classes: c, labels: testSets[t].labels))
                }
            }
            try comm.allreduce(&hits, op: .sum)
            let n = Double(test.count)
            rows.append(EvalRow(name: "pretrained + task heads", kind: "baseline", accuracies: withMean((0..<k).map { hits[$0] / n })))
            baselineRows.append(EvalRow(name: "weight averaging", kind: "baseline", accuracies: withMean((0..<k).map { hits[k + $0] / n })))
            baselineRows.append(EvalRow(name: "task arithmetic", kind: "baseline", accuracies: withMean((0..<k).map { hits[2 * k + $0] / n }), lambda: lambda))
        }
        for i in 0..<k { rows.append(EvalRow(name: "expert \(experts[i].task.rawValue)", kind: "model", accuracies: withMean(expertRows[i]))) }
        rows.append(EvalRow(name: "experts (each on its task)", kind: "model", accuracies: withMean(own)))
        rows.append(EvalRow(name: "ensemble (mean softmax)", kind: "ensemble", accuracies: withMean(softmaxRow)))
        rows.append(EvalRow(name: "ensemble (mean logits)", kind: "ensemble", accuracies: withMean(logitsRow)))
        rows += baselineRows
        return EvalReport(suite: suite, architecture: (try ModelFile.architecture(of: SafeTensorsFile(url: pretrained))).description + " backbone, task heads", split: "test",
                          images: test.count, columns: columns, rows: rows)
    }
}
