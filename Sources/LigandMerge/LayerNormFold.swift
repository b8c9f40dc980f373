import LigandNN
import LigandNumerics

/// Folds every LayerNorm's affine part into the linear layer its output feeds: LN(x) = γ ⊙ n(x) + β read by (W, b)
/// gives W·(γ ⊙ n(x) + β) + b = (W·diag γ)·n(x) + (W·β + b), so W ← W·diag γ, b ← b + W·β, γ ← 1, β ← 0. The network
/// computes the same function (up to Float32 rounding), and its LayerNorms hold no vector a map of the residual stream
/// must carry: what a dense map on a ViT's stream needs (CCA's `stream: dense`). Computed in Float64.
public func foldLayerNorms(_ state: StateDict, graph: MergeGraph, model: String = "model") throws -> StateDict {
    try graph.validate(state, model: model)
    try graph.requireFoldableLayerNorms(model: model)
    var out = state
    for role in graph.tensors where role.kind == .normWeight {
        let norm = String(role.name.dropLast(".weight".count)), reader = graph.layerNormReaders[norm]!
        let gamma = state[role.name]!.storage.map(Double.init), beta = state[norm + ".bias"]!.storage.map(Double.init)
        let w = state[reader + ".weight"]!, rows = w.shape[0], cols = w.shape[1]
        guard cols == gamma.count else { throw MergeError.invalidInput("\(model): '\(reader).weight' reads \(cols) units but LayerNorm '\(norm)' has \(gamma.count)") }
        var folded = [Float](repeating: 0, count: w.count)
        var shift = [Double](repeating: 0, count: rows)
        for o in 0..<rows {
            var s = 0.0
            for i in 0..<cols {
                let wi = Double(w.storage[o * cols + i])
                folded[o * cols + i] = Float(wi * gamma[i])
                s += wi * beta[i]
            }
            shift[o] = s
        }
        if let b = state[reader + ".bias"] {
            out[reader + ".bias"] = Tensor(shape: b.shape, storage: zip(b.storage, shift).map { Float(Double($0) + $1) })
        } else if let o = shift.firstIndex(where: { $0 != 0 }) {
            throw MergeError.invalidInput("\(model): '\(reader)' has no bias to take LayerNorm '\(norm)''s β (W·β is \(shift[o]) in row \(o))")
        }
        out[reader + ".weight"] = Tensor(shape: w.shape, storage: folded)
        out[role.name] = Tensor(shape: [gamma.count], repeating: 1)
        out[norm + ".bias"] = Tensor(zeros: [beta.count])
    }
    return out
}

extension MergeGraph {
    /// Refuses an architecture with a LayerNorm that no single linear layer reads (CLIP's norm_pre feeds the stream).
    public func requireFoldableLayerNorms(model: String = "model") throws {
        for role in tensors where role.kind == .normWeight {
            let norm = String(role.name.dropLast(".weight".count))
            guard layerNormReaders[norm] != nil else {
                throw MergeError.invalidInput("\(model): LayerNorm '\(norm)' normalises the residual stream itself (no linear layer reads it alone), so its γ and β cannot be folded")
            }
        }
    }
}
