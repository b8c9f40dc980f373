import LigandNumerics

/// Which tensors a task-vector merge (task arithmetic, TIES) combines. The others are AVERAGED over the
/// experts: that is the right thing for frozen heads shared by all experts, and for BN running statistics it
/// is a placeholder to be replaced by `reestimateBatchNorm` on training data after merging.
public enum TensorSelection: Sendable {
    case all
    /// Every tensor except BN running statistics and the classification head (the default).
    case backboneParameters
    case names(Set<String>)

    func includes(_ name: String, graph: MergeGraph?) -> Bool {
        switch self {
        case .all: return true
        case .names(let s): return s.contains(name)
        case .backboneParameters:
            if let role = graph?.role(named: name) { return !role.isRunningStatistic && !role.isHead }
            return !name.hasSuffix(".running_mean") && !name.hasSuffix(".running_var")
        }
    }
}

/// Refuses sets of state dicts that differ in names or shapes (or are empty), naming the model and tensor.
func checkCompatible(_ models: [StateDict], names: [String]) throws {
    guard let first = models.first else { throw MergeError.invalidInput("no models to merge") }
    for (k, m) in models.enumerated() {
        for (name, t) in first {
            guard let v = m[name] else { throw MergeError.missingTensor(model: names[k], tensor: name) }
            guard v.shape == t.shape else { throw MergeError.shapeMismatch(model: names[k], tensor: name, expected: t.shape, found: v.shape) }
            if let i = v.firstNonFinite { throw MergeError.nonFiniteTensor(model: names[k], tensor: name, index: i) }
        }
        if let extra = m.keys.sorted().first(where: { first[$0] == nil }) { throw MergeError.unexpectedTensor(model: names[k], tensor: extra) }
    }
}

func modelNames(_ n: Int, prefix: String = "model") -> [String] { (0..<n).map { "\(prefix) \($0)" } }

/// Weight averaging: θ = (1/K) Σ_k θ_k over every tensor, summed in Float64.
public func averageStateDicts(_ models: [StateDict]) throws -> StateDict {
    try checkCompatible(models, names: modelNames(models.count))
    var out: StateDict = [:]
    for (name, t) in models[0] {
        var acc = [Double](repeating: 0, count: t.count)
        for m in models { m[name]!.withUnsafeBufferPointer { p in for i in 0..<acc.count { acc[i] += Double(p[i]) } } }
        let k = Double(models.count)
        out[name] = Tensor(shape: t.shape, storage: acc.map { Float($0 / k) })
    }
    return out
}

/// Task arithmetic: θ = θ_pre + λ Σ_k (θ_k − θ_pre) over the selected tensors; the others averaged over the experts.
public func taskArithmetic(pretrained: StateDict, experts: [StateDict], lambda: Double,
                           selection: TensorSelection = .backboneParameters, graph: MergeGraph? = nil) throws -> StateDict {
    guard lambda.isFinite else { throw MergeError.hyperparameter(name: "λ", value: lambda, requirement: "must be finite") }
    guard !experts.isEmpty else { throw MergeError.invalidInput("task arithmetic needs at least one expert") }
    try checkCompatible([pretrained] + experts, names: ["the pretrained model"] + modelNames(experts.count, prefix: "expert"))
    var out = try averageStateDicts(experts)
    for (name, pre) in pretrained where selection.includes(name, graph: graph) {
        var acc = [Double](repeating: 0, count: pre.count)
        pre.withUnsafeBufferPointer { p in
            for e in experts { e[name]!.withUnsafeBufferPointer { q in for i in 0..<acc.count { acc[i] += Double(q[i]) - Double(p[i]) } } }
        }
        out[name] = Tensor(shape: pre.shape, storage: (0..<pre.count).map { Float(Double(pre[$0]) + lambda * acc[$0]) })
    }
    return out
}

/// TIES-Merging: per task vector keep the entries whose magnitude is among the top `keepFraction` of that
/// vector (over all selected tensors together; entries tied with the threshold are kept), elect each
/// coordinate's sign as the sign of the summed kept values, average the kept values of that sign
/// (0 where none, or where the sum is exactly 0), θ = θ_pre + λ·that; unselected tensors averaged.
public func ties(pretrained: StateDict, experts: [StateDict], lambda: Double, keepFraction: Double = 0.2,
                 selection: TensorSelection = .backboneParameters, graph: MergeGraph? = nil) throws -> StateDict {
    guard lambda.isFinite else { throw MergeError.hyperparameter(name: "λ", value: lambda, requirement: "must be finite") }
    guard keepFraction > 0 && keepFraction <= 1 else {
        throw MergeError.hyperparameter(name: "TIES keep fraction", value: keepFraction, requirement: "must be in (0, 1]")
    }
    guard !experts.isEmpty else { throw MergeError.invalidInput("TIES needs at least one expert") }
    try checkCompatible([pretrained] + experts, names: ["the pretrained model"] + modelNames(experts.count, prefix: "expert"))
    let names = pretrained.keys.sorted().filter { selection.includes($0, graph: graph) }
    let total = names.reduce(0) { $0 + pretrained[$1]!.count }
    var out = try averageStateDicts(experts)
    guard total > 0 else { return out }
    let base = names.flatMap { pretrained[$0]!.storage.map(Double.init) }
    let keep = max(1, Int((keepFraction * Double(total)).rounded()))
    // Task vectors are rebuilt in a second pass rather than kept, so memory stays O(P) whatever K is.
    func trimmedTaskVector(_ e: StateDict, threshold: Double?) -> ([Double], Double) {
        var tau = names.flatMap { e[$0]!.storage.map(Double.init) }
        for i in 0..<total { tau[i] -= base[i] }
        let t = threshold ?? tau.map(abs).sorted(by: >)[keep - 1]
        for i in 0..<total where abs(tau[i]) < t { tau[i] = 0 }
        return (tau, t)
    }
    var sum = [Double](repeating: 0, count: total)
    var thresholds: [Double] = []
    for e in experts {
        let (tau, t) = trimmedTaskVector(e, threshold: nil)
        for i in 0..<total { sum[i] += tau[i] }
        thresholds.append(t)
    }
    var agreeing = [Double](repeating: 0, count: total), agreeingCount = [Double](repeating: 0, count: total)
    for (e, t) in zip(experts, thresholds) {
        let (tau, _) = trimmedTaskVector(e, threshold: t)
        for i in 0..<total where tau[i] != 0 && sum[i] != 0 && (tau[i] > 0) == (sum[i] > 0) { agreeing[i] += tau[i]; agreeingCount[i] += 1 }
    }
    let merged = (0..<total).map { agreeingCount[$0] > 0 ? agreeing[$0] / agreeingCount[$0] : 0 }
    var offset = 0
    for name in names {
        let t = pretrained[name]!
        out[name] = Tensor(shape: t.shape, storage: (0..<t.count).map { Float(base[offset + $0] + lambda * merged[offset + $0]) })
        offset += t.count
    }
    return out
}

/// The fused model of an alignment method: every model mapped into the reference's space (nil = the
/// reference itself, or no alignment), then averaged.
public func alignAndAverage(_ models: [StateDict], maps: [[String: PointMap]?], graph: MergeGraph) throws -> StateDict {
    guard models.count == maps.count else { throw MergeError.invalidInput("\(models.count) models but \(maps.count) map sets") }
    guard !models.isEmpty else { throw MergeError.invalidInput("no models to merge") }
    let aligned = try zip(models, maps).enumerated().map { k, pair in
        try pair.1.map { try applyMaps(pair.0, maps: $0, graph: graph, model: "model \(k)") } ?? pair.0
    }
    return try averageStateDicts(aligned)
}
