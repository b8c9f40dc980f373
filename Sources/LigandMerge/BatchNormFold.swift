import LigandNN
import LigandNumerics

/// What alignment does with BatchNorm layers (algorithms.md, CCA Merge: "BatchNorm").
public enum BatchNormHandling: String, CaseIterable, Sendable {
    /// The reference code's way: M maps BN's scale, shift and running statistics like vectors; running
    /// statistics re-estimated on training data after merging.
    case map
    /// The same, without the re-estimation (a diagnostic: what the mapped vectors alone give).
    case mapKeep = "map-keep"
    /// BN folded into the preceding convolution first (BN then is the identity plus a shift), so a dense map
    /// acts on a plain convolution with bias, exactly as on an MLP layer; no statistics to re-estimate.
    case fold
    /// REPAIR (Jordan et al., "REPAIR: REnormalizing Permuted Activations for Interpolation Repair", ICLR 2023,
    /// Sec. 4): folded as `fold`, then each fused BN's scale and shift set to the average over the K aligned
    /// models of the per-channel std and mean of that BN's output (eval mode, training images), and the
    /// running statistics re-estimated, so the fused units keep the statistics the models' units had.
    case repair

    /// Whether the fused model's running statistics are re-estimated on training data.
    public var reestimates: Bool { self == .map || self == .repair }
    /// Whether BN is folded into the convolution before mapping.
    public var folds: Bool { self == .fold || self == .repair }
    /// BN's scale and running statistics after folding are the identity: no map may touch them.
    public var frozenKinds: Set<TensorRole.Kind> { folds ? [.bnWeight, .runningMean, .runningVar] : [] }
}

/// Folds every BatchNorm into the convolution before it (eval-mode BN: y = γ(z − μ)/√(σ² + ε) + β):
/// W ← s·W and the shift s(b − μ) + β moved into BN's β with s = γ/√(σ² + ε); the conv's own bias (if
/// any) becomes 0 and BN becomes γ = 1, μ = 0, σ² = 1 − ε. The network computes the same function
/// (eval mode) up to Float32 rounding. Computed in Float64.
public func foldBatchNorm(_ state: StateDict, graph: MergeGraph, model: String = "model") throws -> StateDict {
    try graph.validate(state, model: model)
    let eps = Double(BatchNorm2d<Float>(name: "probe", channels: 1).eps)
    var out = state
    var lastConv: String?
    for role in graph.tensors {
        if role.kind == .convWeight { lastConv = String(role.name.dropLast(".weight".count)) }
        guard role.kind == .bnWeight else { continue }
        let bn = String(role.name.dropLast(".weight".count))
        guard let conv = lastConv else { throw MergeError.invalidInput("\(model): BatchNorm '\(bn)' follows no convolution") }
        let w = state[conv + ".weight"]!, c = w.shape[0], inner = w.count / c
        guard role.shape == [c] else { throw MergeError.invalidInput("\(model): BatchNorm '\(bn)' has \(role.shape) channels, convolution '\(conv)' \(c)") }
        let gamma = state[bn + ".weight"]!.storage, beta = state[bn + ".bias"]!.storage
        let mean = state[bn + ".running_mean"]!.storage, variance = state[bn + ".running_var"]!.storage
        let bias = state[conv + ".bias"]?.storage
        var folded = [Float](repeating: 0, count: w.count), shift = [Float](repeating: 0, count: c)
        for o in 0..<c {
            let s = Double(gamma[o]) / (Double(variance[o]) + eps).squareRoot()
            for j in 0..<inner { folded[o * inner + j] = Float(Double(w.storage[o * inner + j]) * s) }
            shift[o] = Float(s * (Double(bias?[o] ?? 0) - Double(mean[o])) + Double(beta[o]))
        }
        out[conv + ".weight"] = Tensor(shape: w.shape, storage: folded)
        if bias != nil { out[conv + ".bias"] = Tensor(shape: [c], repeating: 0) }
        out[bn + ".weight"] = Tensor(shape: [c], repeating: 1)
        out[bn + ".bias"] = Tensor(shape: [c], storage: shift)
        out[bn + ".running_mean"] = Tensor(shape: [c], repeating: 0)
        out[bn + ".running_var"] = Tensor(shape: [c], repeating: Float(1 - eps))
        lastConv = nil
    }
    return out
}
