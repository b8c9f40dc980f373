/// Adam (Kingma & Ba, ICLR 2015) on a flat Float64 vector: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε), the bias corrections from running products β^t.
/// What the merges that learn a few coefficients or one layer's task vector (WUDI, AdaMerging) step with.
public struct Adam: Sendable {
    public let lr: Double, beta1: Double, beta2: Double, eps: Double
    private var first: [Double], second: [Double]
    private var power1 = 1.0, power2 = 1.0

    public init(count: Int, lr: Double, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        first = [Double](repeating: 0, count: count); second = first
    }

    /// One step of `p` along the gradient `g` (both of the count given at init).
    public mutating func step(_ p: inout [Double], _ g: [Double]) {
        precondition(p.count == first.count && g.count == first.count, "Adam: \(p.count) values, \(g.count) gradients, \(first.count) expected")
        power1 *= beta1; power2 *= beta2
        let (b1, b2, c1, c2) = (beta1, beta2, 1 - power1, 1 - power2)
        for j in 0..<p.count {
            first[j] = b1 * first[j] + (1 - b1) * g[j]
            second[j] = b2 * second[j] + (1 - b2) * g[j] * g[j]
            p[j] -= lr * (first[j] / c1) / ((second[j] / c2).squareRoot() + eps)
        }
    }
}
