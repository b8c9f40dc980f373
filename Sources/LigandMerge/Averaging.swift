import LigandNumerics

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
