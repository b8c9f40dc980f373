import LigandNumerics

/// ResNet basic block (He et al. 2016): relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x), with a
/// 1×1 convolution + BN shortcut when the stride or width changes.
public final class BasicBlock<S: FloatScalar> {
    public let name: String
    public let conv1: Conv2d<S>, bn1: BatchNorm2d<S>, relu1 = ReLU<S>()
    public let conv2: Conv2d<S>, bn2: BatchNorm2d<S>, reluOut = ReLU<S>()
    public let shortcut: (conv: Conv2d<S>, bn: BatchNorm2d<S>)?

    public init(name: String, inChannels: Int, outChannels: Int, stride: Int, rng: inout SeededRNG) {
        self.name = name
        conv1 = Conv2d(name: "\(name).conv1", inChannels: inChannels, outChannels: outChannels, kernel: 3, stride: stride, padding: 1, bias: false, rng: &rng)
        bn1 = BatchNorm2d(name: "\(name).bn1", channels: outChannels)
        conv2 = Conv2d(name: "\(name).conv2", inChannels: outChannels, outChannels: outChannels, kernel: 3, stride: 1, padding: 1, bias: false, rng: &rng)
        bn2 = BatchNorm2d(name: "\(name).bn2", channels: outChannels)
        if stride != 1 || inChannels != outChannels {
            shortcut = (Conv2d(name: "\(name).shortcut.0", inChannels: inChannels, outChannels: outChannels, kernel: 1, stride: stride, padding: 0, bias: false, rng: &rng),
                        BatchNorm2d(name: "\(name).shortcut.1", channels: outChannels))
        } else { shortcut = nil }
    }

    public var parameters: [Parameter<S>] {
        conv1.parameters + bn1.parameters + conv2.parameters + bn2.parameters + (shortcut.map { $0.conv.parameters + $0.bn.parameters } ?? [])
    }
    public var batchNorms: [BatchNorm2d<S>] { [bn1, bn2] + (shortcut.map { [$0.bn] } ?? []) }

    /// `inner` receives the block's hidden activation (after relu1), a merge point of its own.
    public func forward(_ x: TensorOf<S>, training: Bool, inner: ((TensorOf<S>) -> Void)? = nil) -> TensorOf<S> {
        let h = relu1.forward(bn1.forward(conv1.forward(x, training: training), training: training), training: training)
        inner?(h)
        var out = bn2.forward(conv2.forward(h, training: training), training: training)
        let skip = shortcut.map { $0.bn.forward($0.conv.forward(x, training: training), training: training) } ?? x
        add(&out, skip)
        return reluOut.forward(out, training: training)
    }

    public func backward(_ dy: TensorOf<S>) -> TensorOf<S> {
        let d = reluOut.backward(dy)
        var dx = conv1.backward(bn1.backward(relu1.backward(conv2.backward(bn2.backward(d)))))
        let dskip = shortcut.map { $0.conv.backward($0.bn.backward(d)) } ?? d
        add(&dx, dskip)
        return dx
    }
}
