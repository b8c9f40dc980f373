import LigandData
import LigandNumerics

/// The diagonal Fisher information of a classifier (Matena & Raffel, "Merging Models with Fisher-Weighted Averaging",
/// NeurIPS 2022, Eq. 5): F_j = (1/N) Σ_x Σ_y p(y|x)·(∂ log p(y|x)/∂θ_j)², the expectation over the model's own
/// predictive distribution taken exactly over the classes, one example at a time, accumulated in Float64.
public enum DiagonalFisher {
    /// F per parameter name, for the rows `indices` of `data`. BatchNorm uses its running statistics (the model's
    /// inference behaviour), so every example is its own batch of one.
    public static func compute(_ net: Network<Float>, data: LabeledImages, indices: [Int]) -> [String: [Double]] {
        let parameters = net.parameters
        var fisher = parameters.map { [Double](repeating: 0, count: $0.value.count) }
        let frozen = net.batchNorms.map(\.frozen)
        for bn in net.batchNorms { bn.frozen = true }
        defer { for (bn, f) in zip(net.batchNorms, frozen) { bn.frozen = f } }
        let c = net.classes, size = data.sampleSize
        for i in indices {
            let x = Tensor(shape: [1, data.height, data.width, data.channels], storage: Array(data.pixels[(i * size)..<((i + 1) * size)]))
            let p = Loss.softmax(net.forward(x, training: false)).storage.map(Double.init)
            for y in 0..<c where p[y] > 0 {
                // ∂ log p_y / ∂logits = e_y − p; each class needs its own backward, hence its own forward.
                net.zeroGrad()
                _ = net.forward(x, training: true)
                net.backwardParameters(Tensor(shape: [1, c], storage: (0..<c).map { Float(($0 == y ? 1 : 0) - p[$0]) }))
                for (k, param) in parameters.enumerated() {
                    param.grad.withUnsafeBufferPointer { g in
                        for j in 0..<g.count { let v = Double(g[j]); fisher[k][j] += p[y] * v * v }
                    }
                }
            }
        }
        net.zeroGrad()
        let n = Double(max(1, indices.count))
        return Dictionary(uniqueKeysWithValues: zip(parameters, fisher).map { ($0.name, $1.map { $0 / n }) })
    }
}
