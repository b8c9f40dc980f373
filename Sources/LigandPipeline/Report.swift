import Foundation

/// One merged model of one run of `ligand run`: every figure the JSON report holds (docs/run.md).
public struct RunRecord: Codable, Sendable, Equatable {
    public var suite: String
    public var suiteKind: String
    public var architecture: String
    public var method: String
    /// NeuLig: "task" or "global" (or "batch"); nil for methods with one fused model.
    public var mode: String?
    public var k: Int
    /// The merged models (seeds, splits) or tasks (tasks suites), by name and by index in the suite.
    public var subset: [String]
    public var subsetIndices: [Int]
    public var seed: UInt64
    public var split: String
    /// Task names (tasks suites) or ["accuracy"]; `accuracies` follows this order.
    public var columns: [String]
    public var accuracies: [Double]
    /// The merged model's accuracy (the mean over tasks for tasks suites), a fraction.
    public var accuracy: Double
    /// Prediction ensemble (mean softmax) of the same models.
    public var ensemble: Double?
    /// Seeds/splits: the best single model; tasks: the experts, each on its own task.
    public var bestSingle: Double?
    /// NeuLig's Portland ensemble (Σ_k β_k(x)·logits_k) of the same models, in NeuLig's records.
    public var portlandEnsemble: Double?
    /// Every other row of the run's report (baselines, Portland ensemble, …) by name: mean accuracy.
    public var baselines: [String: Double]
    /// The recipe's settings and the hyper-parameters chosen on calibration.
    public var hyperparameters: [String: String]
    /// Merges: the mean calibration accuracy of every candidate the method weighed, keyed by its settings, so the
    /// choice in `hyperparameters` can be checked against its alternatives (nil for NeuLig and older records).
    public var calibrationScores: [String: Double]?
    public var wallSeconds: Double
    /// Payload bytes rank 0 moved through collectives during the run (0 on one rank).
    public var bytesCommunicated: Int?
    public var ranks: Int
    /// Per rank (index = rank): CPU seconds (user + system, every thread) and peak resident bytes over the run
    /// (nil in reports written before they were measured, or where the kernel does not report the peak).
    public var cpuSecondsPerRank: [Double]?
    public var peakResidentBytesPerRank: [Int]?
    /// `bytesCommunicated` split by phase of the run (statistics, portland, evaluate, …), where the run counted them.
    public var bytesPerPhase: [String: Int]?
    /// NeuLig: payload bytes rank 0 moved per Portland training step (the design bounds it by O(B·(K + C))).
    public var bytesPerPortlandStep: Double?

    public init(suite: String, suiteKind: String, architecture: String, method: String, mode: String? = nil, k: Int, subset: [String],
                subsetIndices: [Int], seed: UInt64, split: String = "test", columns: [String], accuracies: [Double], accuracy: Double,
                ensemble: Double?, bestSingle: Double?, portlandEnsemble: Double? = nil, baselines: [String: Double] = [:],
                hyperparameters: [String: String] = [:], wallSeconds: Double, bytesCommunicated: Int?, ranks: Int) {
        self.suite = suite; self.suiteKind = suiteKind; self.architecture = architecture; self.method = method; self.mode = mode
        self.k = k; self.subset = subset; self.subsetIndices = subsetIndices; self.seed = seed; self.split = split
        self.columns = columns; self.accuracies = accuracies; self.accuracy = accuracy; self.ensemble = ensemble
        self.bestSingle = bestSingle; self.portlandEnsemble = portlandEnsemble; self.baselines = baselines; self.hyperparameters = hyperparameters
        self.wallSeconds = wallSeconds; self.bytesCommunicated = bytesCommunicated; self.ranks = ranks
    }

    /// The label of the method's series: "neulig (task)", "cca", or "cca → regmean" after an alignment.
    public var series: String {
        let name = hyperparameters["align"].map { "\($0) → \(method)" } ?? method
        return mode.map { "\(name) (\($0))" } ?? name
    }

    /// The records of one run from its report rows: the merged rows of `method`, with the ensemble and best single beside them.
    public static func from(rows: [ReportRow], method: String, suite: String, suiteKind: String, architecture: String, columns: [String],
                            k: Int, subset: [String], subsetIndices: [Int], seed: UInt64, settings: [String: String],
                            wallSeconds: Double, bytes: Int?, ranks: Int,
                            usage: (cpuSeconds: [Double], peakResidentBytes: [Int]?)? = nil,
                            bytesPerPhase: [String: Int]? = nil, bytesPerPortlandStep: Double? = nil,
                            calibrationScores: [String: Double]? = nil) -> [RunRecord] {
        // NeuLig reports a fused row per mode; every other method one.
        let fused = rows.filter { $0.kind == .fused }
        let merged = method == "neulig" ? fused : Array(fused.prefix(1))
        let ensembleRow = rows.first { $0.kind == .ensemble }
        let best = rows.first { $0.kind == .bestSingle }?.mean, portland = rows.first { $0.kind == .portlandEnsemble }?.mean
        var others: [String: Double] = [:]
        for r in rows where !merged.contains(where: { $0.name == r.name }) && ![.ensemble, .bestSingle, .portlandEnsemble, .reference, .single].contains(r.kind) {
            others[r.name] = r.mean
        }
        return merged.map { row in
            let n = row.name.lowercased()
            let mode: String? = n.contains("task mode") ? "task" : n.contains("global mode") ? "global" : n.contains("per batch") ? "batch" : nil
            var hp = settings
            for (key, v) in row.hyperparameters { hp[key] = v }
            var record = RunRecord(suite: suite, suiteKind: suiteKind, architecture: architecture, method: method, mode: mode, k: k, subset: subset,
                                   subsetIndices: subsetIndices, seed: seed, columns: columns, accuracies: row.accuracies, accuracy: row.mean,
                                   ensemble: ensembleRow?.mean, bestSingle: best, portlandEnsemble: portland, baselines: others, hyperparameters: hp,
                                   wallSeconds: wallSeconds, bytesCommunicated: bytes, ranks: ranks)
            record.cpuSecondsPerRank = usage?.cpuSeconds
            record.peakResidentBytesPerRank = usage?.peakResidentBytes
            record.bytesPerPhase = bytesPerPhase
            record.bytesPerPortlandStep = bytesPerPortlandStep
            record.calibrationScores = calibrationScores
            return record
        }
    }
}

/// A coding-path step of a validation error: an array index or a field name.
struct ReportIndexKey: CodingKey {
    var stringValue: String, intValue: Int?
    init(_ i: Int) { stringValue = "\(i)"; intValue = i }
    init(_ s: String) { stringValue = s; intValue = nil }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { self.init(intValue) }
}

extension RunRecord {
    /// The largest K a report may hold: far beyond any suite, small enough to draw.
    static let maxK = 1_000_000

    /// The first field whose value no run can produce (field name, message), nil when every field is plausible.
    public var problem: (String, String)? {
        func fraction(_ x: Double?) -> Bool { x.map { $0.isFinite && $0 >= 0 && $0 <= 1 } ?? true }
        let what = "must be an accuracy, a fraction in [0, 1]"
        if k < 1 || k > Self.maxK { return ("k", "must be an integer in 1...\(Self.maxK), got \(k)") }
        if !fraction(accuracy) { return ("accuracy", "\(what), got \(accuracy)") }
        if let i = accuracies.firstIndex(where: { !fraction($0) }) { return ("accuracies[\(i)]", "\(what), got \(accuracies[i])") }
        if !fraction(ensemble) { return ("ensemble", "\(what), got \(ensemble!)") }
        if !fraction(bestSingle) { return ("bestSingle", "\(what), got \(bestSingle!)") }
        if !fraction(portlandEnsemble) { return ("portlandEnsemble", "\(what), got \(portlandEnsemble!)") }
        if let (name, v) = baselines.sorted(by: { $0.key < $1.key }).first(where: { !fraction($0.value) }) { return ("baselines.\(name)", "\(what), got \(v)") }
        if let (name, v) = calibrationScores?.sorted(by: { $0.key < $1.key }).first(where: { !fraction($0.value) }) {
            return ("calibrationScores.\(name)", "\(what), got \(v)")
        }
        if !(wallSeconds.isFinite && wallSeconds >= 0) { return ("wallSeconds", "must be a finite number of seconds ≥ 0, got \(wallSeconds)") }
        if ranks < 1 { return ("ranks", "must be at least 1, got \(ranks)") }
        if let b = bytesCommunicated, b < 0 { return ("bytesCommunicated", "must be ≥ 0, got \(b)") }
        if let c = cpuSecondsPerRank, c.count != ranks || c.contains(where: { !($0.isFinite && $0 >= 0) }) {
            return ("cpuSecondsPerRank", "must hold one finite number of seconds ≥ 0 per rank (\(ranks)), got \(c)")
        }
        if let m = peakResidentBytesPerRank, m.count != ranks || m.contains(where: { $0 < 0 }) {
            return ("peakResidentBytesPerRank", "must hold one byte count ≥ 0 per rank (\(ranks)), got \(m)")
        }
        if let (phase, b) = bytesPerPhase?.sorted(by: { $0.key < $1.key }).first(where: { $0.value < 0 }) {
            return ("bytesPerPhase.\(phase)", "must be ≥ 0, got \(b)")
        }
        if let b = bytesPerPortlandStep, !(b.isFinite && b >= 0) { return ("bytesPerPortlandStep", "must be a finite byte count ≥ 0, got \(b)") }
        if let i = subsetIndices.first(where: { $0 < 0 }) { return ("subsetIndices", "must be model indices ≥ 0, got \(i)") }
        return nil
    }
}

/// Text made inert in Markdown and SVG alike: the entities for & < >, `extra` for the format's own specials, control
/// characters (not allowed in XML 1.0) replaced by U+FFFD.
func inertText(_ s: String, _ extra: [Unicode.Scalar: String]) -> String {
    var out = ""
    for ch in s.unicodeScalars {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        default:
            if let e = extra[ch] { out += e } else { out.unicodeScalars.append(ch.properties.generalCategory == .control ? "\u{FFFD}" : ch) }
        }
    }
    return out
}

/// Text from a report (recipe, suite, method names) made inert in Markdown: no raw HTML, no table breaks, no links.
func markdownEscaped(_ s: String) -> String {
    inertText(s, ["|": "\\|", "\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "\n": " ", "\r": " ", "\t": " "])
}

/// Mean and sample standard deviation, accumulated in Float64.
public struct MeanStd: Codable, Sendable, Equatable {
    public var mean: Double
    public var std: Double
    public var count: Int

    public init(_ values: [Double]) {
        count = values.count
        mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        let m = mean
        std = values.count > 1 ? (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot() : 0
    }

    /// "85.16 ± 0.21" in percent (no ± for a single value).
    public var percent: String {
        count > 1 ? String(format: "%.2f ± %.2f", 100 * mean, 100 * std) : String(format: "%.2f", 100 * mean)
    }
}

/// The records of one suite × method (× mode) × K: merged, ensemble and best single over subsets and seeds.
public struct RunGroup: Codable, Sendable, Equatable {
    public var suite: String
    public var series: String
    public var k: Int
    public var runs: Int
    public var merged: MeanStd
    public var ensemble: MeanStd?
    public var bestSingle: MeanStd?
    /// NeuLig's Portland ensemble of the same subsets (from the NeuLig runs of the same suite, K, subset and seed).
    /// `ensemble` too is taken from another run of the same models when a run has none.
    public var portlandEnsemble: MeanStd?
    /// Merged over best single (tasks: over the experts' mean accuracy), per run, in [0, …].
    public var normalised: MeanStd?
    /// Mean of (merged − ensemble) in percentage points.
    public var gapPoints: Double?
    public var wallSeconds: Double
    /// The busiest rank's CPU seconds (mean over the runs) and the largest peak resident bytes of any rank and run
    /// (nil when a run did not measure them).
    public var cpuSecondsMaxRank: Double?
    public var peakResidentBytesMaxRank: Int?
    /// Mean bytes rank 0 moved through collectives per run.
    public var bytesCommunicated: Double?
    /// The same split by phase (mean over the runs that counted them), and NeuLig's mean bytes per Portland step.
    public var bytesPerPhase: [String: Double]? = nil
    public var bytesPerPortlandStep: Double? = nil
}

/// The whole output of `ligand run`: the records and their grouping.
public struct RunReport: Codable, Sendable {
    public var recipe: String
    public var ranks: Int
    public var records: [RunRecord]

    public init(recipe: String, ranks: Int, records: [RunRecord]) { self.recipe = recipe; self.ranks = ranks; self.records = records }

    enum CodingKeys: String, CodingKey { case recipe, ranks, records }

    /// Decodes and validates: a hand-edited report with k = -1 or an accuracy of 1e308 is refused, not drawn as inf.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        recipe = try c.decode(String.self, forKey: .recipe)
        ranks = try c.decode(Int.self, forKey: .ranks)
        records = try c.decode([RunRecord].self, forKey: .records)
        if ranks < 1 { throw DecodingError.dataCorruptedError(forKey: .ranks, in: c, debugDescription: "must be at least 1, got \(ranks)") }
        for (i, r) in records.enumerated() {
            if let (field, problem) = r.problem {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.records, ReportIndexKey(i), ReportIndexKey(field)], debugDescription: problem))
            }
        }
    }

    /// Groups in first-appearance order of suite and series, K ascending.
    public var groups: [RunGroup] {
        var keys: [String] = [], bySeries: [String: [RunRecord]] = [:]
        for r in records {
            let key = "\(r.suite)\u{0}\(r.series)"
            if bySeries[key] == nil { keys.append(key) }
            bySeries[key, default: []].append(r)
        }
        return keys.flatMap { key -> [RunGroup] in
            let rs = bySeries[key]!
            return Set(rs.map(\.k)).sorted().map { k in
                let g = rs.filter { $0.k == k }
                // The ensembles are of the subset, not of the method: a run that does not compute one (RegMean, progressive)
                // takes it from another run of the same suite, K, subset and seed.
                func sameModels<T>(_ r: RunRecord, _ field: KeyPath<RunRecord, T?>) -> T? {
                    r[keyPath: field] ?? records.first { $0[keyPath: field] != nil && $0.suite == r.suite && $0.k == r.k && $0.subsetIndices == r.subsetIndices && $0.seed == r.seed }?[keyPath: field]
                }
                let ens = g.compactMap { sameModels($0, \.ensemble) }, best = g.compactMap(\.bestSingle)
                let portland = g.compactMap { sameModels($0, \.portlandEnsemble) }
                let normalised = g.compactMap { r in r.bestSingle.flatMap { $0 > 0 ? r.accuracy / $0 : nil } }
                let gaps = g.compactMap { r in sameModels(r, \.ensemble).map { 100 * (r.accuracy - $0) } }
                return RunGroup(suite: g[0].suite, series: g[0].series, k: k, runs: g.count, merged: MeanStd(g.map(\.accuracy)),
                                ensemble: ens.isEmpty ? nil : MeanStd(ens), bestSingle: best.isEmpty ? nil : MeanStd(best),
                                portlandEnsemble: portland.isEmpty ? nil : MeanStd(portland), normalised: normalised.isEmpty ? nil : MeanStd(normalised),
                                gapPoints: gaps.isEmpty ? nil : gaps.reduce(0, +) / Double(gaps.count),
                                wallSeconds: g.reduce(0) { $0 + $1.wallSeconds },
                                cpuSecondsMaxRank: g.allSatisfy { $0.cpuSecondsPerRank != nil } ? MeanStd(g.map { $0.cpuSecondsPerRank!.max() ?? 0 }).mean : nil,
                                peakResidentBytesMaxRank: g.allSatisfy { $0.peakResidentBytesPerRank != nil } ? g.map { $0.peakResidentBytesPerRank!.max() ?? 0 }.max() : nil,
                                bytesCommunicated: g.allSatisfy { $0.bytesCommunicated != nil } ? MeanStd(g.map { Double($0.bytesCommunicated!) }).mean : nil,
                                bytesPerPhase: Self.meanPerPhase(g.compactMap(\.bytesPerPhase)),
                                bytesPerPortlandStep: { let b = g.compactMap(\.bytesPerPortlandStep); return b.isEmpty ? nil : MeanStd(b).mean }())
            }
        }
    }

    /// Mean bytes per phase over the runs' splits (a phase a run did not have counts 0 there); nil without any.
    static func meanPerPhase(_ splits: [[String: Int]]) -> [String: Double]? {
        guard !splits.isEmpty else { return nil }
        var sums: [String: Double] = [:]
        for split in splits { for (phase, b) in split { sums[phase, default: 0] += Double(b) } }
        return sums.mapValues { $0 / Double(splits.count) }
    }

    /// A Markdown table per suite. Seeds and splits: merged (mean ± std over subsets and seeds), ensemble, best single
    /// and the gap. Tasks: merged, normalised (merged over the experts' mean), the experts, NeuLig's Portland ensemble and
    /// the prediction ensemble: a per-task merge is measured against the experts, not only the prediction ensemble.
    public func markdown() -> String {
        var s = "# Results of \(markdownEscaped(recipe))\n\nTest accuracy in %, mean ± sample std over subsets and seeds; gap = merged − ensemble in points; "
        s += "best single = the best model of the subset (seeds, splits); experts = each expert on its own task, normalised = merged / experts, "
        s += "Portland ensemble = NeuLig's input-weighted ensemble of the same experts (tasks). \(ranks) rank(s).\n"
        let gs = groups
        var suites: [String] = []
        for g in gs where !suites.contains(g.suite) { suites.append(g.suite) }
        for suite in suites {
            let kind = records.first { $0.suite == suite }?.suiteKind ?? ""
            s += "\n## \(markdownEscaped(suite)) (\(markdownEscaped(kind)))\n\n"
            if kind == "tasks" {
                s += "| method | K | runs | merged | normalised | experts | Portland ensemble | ensemble | wall s |\n"
                s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            } else {
                s += "| method | K | runs | merged | ensemble | best single | gap (pts) | wall s |\n"
                s += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
            }
            for g in gs where g.suite == suite {
                s += "| \(markdownEscaped(g.series)) | \(g.k) | \(g.runs) | \(g.merged.percent) | "
                if kind == "tasks" {
                    s += "\(g.normalised?.percent ?? "–") | \(g.bestSingle?.percent ?? "–") | \(g.portlandEnsemble?.percent ?? "–") | \(g.ensemble?.percent ?? "–") | "
                } else {
                    s += "\(g.ensemble?.percent ?? "–") | \(g.bestSingle?.percent ?? "–") | " + (g.gapPoints.map { String(format: "%+.2f", $0) } ?? "–") + " | "
                }
                s += String(format: "%.1f |\n", g.wallSeconds)
            }
        }
        let measured = gs.filter { $0.cpuSecondsMaxRank != nil || $0.peakResidentBytesMaxRank != nil }
        if !measured.isEmpty {
            s += "\n## Cost per run\n\nThe busiest rank's CPU seconds (user + system, every thread; mean over the runs), the largest peak resident "
            s += "memory of any rank and run, and the bytes rank 0 moved through collectives (mean over the runs): in all, in the three phases that moved "
            s += "most, and per Portland training step (NeuLig); costs-vs-k.svg draws them against K.\n\n"
            s += "| suite | series | K | runs | wall s | CPU s (busiest rank) | peak RSS MB (any rank) | MB communicated | by phase (MB) | KB per Portland step |\n"
            s += "|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n"
            for g in measured {
                s += "| \(markdownEscaped(g.suite)) | \(markdownEscaped(g.series)) | \(g.k) | \(g.runs) | " + String(format: "%.1f", g.wallSeconds) + " | "
                s += (g.cpuSecondsMaxRank.map { String(format: "%.1f", $0) } ?? "–") + " | "
                s += (g.peakResidentBytesMaxRank.map { String(format: "%.0f", Double($0) / 1e6) } ?? "–") + " | "
                s += (g.bytesCommunicated.map { String(format: "%.2f", $0 / 1e6) } ?? "–") + " | "
                let phases = (g.bytesPerPhase ?? [:]).filter { $0.value > 0 }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(3)
                s += (phases.isEmpty ? "–" : phases.map { markdownEscaped($0.key) + " " + String(format: "%.2f", $0.value / 1e6) }.joined(separator: ", ")) + " | "
                s += (g.bytesPerPortlandStep.map { String(format: "%.1f", $0 / 1e3) } ?? "–") + " |\n"
            }
        }
        return s
    }
}
