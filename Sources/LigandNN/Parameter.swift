import LigandNumerics

/// A trainable tensor with its gradient, named as in a PyTorch state_dict.
public final class Parameter<S: FloatScalar> {
    public let name: String
    public var value: TensorOf<S>
    public var grad: TensorOf<S>
    /// Weight decay applies to weights, not to biases or BatchNorm affine terms.
    public let decays: Bool

    public init(_ name: String, _ value: TensorOf<S>, decays: Bool) {
        self.name = name
        self.value = value
        self.grad = TensorOf<S>(zeros: value.shape)
        self.decays = decays
    }

    public func zeroGrad() {
        grad.withUnsafeMutableBufferPointer { g in g.update(repeating: 0) }
    }
}

/// A non-trainable state tensor (BatchNorm running statistics).
public final class Buffer<S: FloatScalar> {
    public let name: String
    public var value: TensorOf<S>
    public init(_ name: String, _ value: TensorOf<S>) { self.name = name; self.value = value }
}

@inline(__always) func withPointers<S: FloatScalar, R>(_ a: TensorOf<S>, _ body: (UnsafePointer<S>) -> R) -> R {
    a.storage.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// PyTorch's default Linear/Conv initialisation: weights U(±√(6/((1+a²)·fan_in))) with a = √5, bias U(±1/√fan_in).
func kaimingUniform<S: FloatScalar>(_ shape: [Int], fanIn: Int, rng: inout SeededRNG) -> TensorOf<S> {
    let bound = S((1.0 / Double(fanIn)).squareRoot())
    if rng.drawless { return TensorOf<S>(zeros: shape) }
    return TensorOf<S>.randomUniform(shape, lo: -bound, hi: bound, rng: &rng)
}

/// He normal initialisation (std √(2/fan_in)), for ReLU networks trained from scratch.
func heNormal<S: FloatScalar>(_ shape: [Int], fanIn: Int, rng: inout SeededRNG) -> TensorOf<S> {
    rng.drawless ? TensorOf<S>(zeros: shape) : TensorOf<S>.randomNormal(shape, std: S((2.0 / Double(fanIn)).squareRoot()), rng: &rng)
}

/// Normal weights of a fixed deviation (timm's transformer initialisation uses 0.02).
func normalWeights<S: FloatScalar>(_ shape: [Int], std: Double, rng: inout SeededRNG) -> TensorOf<S> {
    rng.drawless ? TensorOf<S>(zeros: shape) : TensorOf<S>.randomNormal(shape, std: S(std), rng: &rng)
}
