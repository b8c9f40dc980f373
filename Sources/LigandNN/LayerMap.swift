import LigandNumerics

/// One weight layer (Linear or Conv2d, with the BatchNorm that follows it) as the merge graph and least-squares
/// fusion see it: where its input comes from (the image, or a merge-point tap then max-pools / a global average
/// pool), its geometry, and the merge points its output and input units belong to. Derived from the network's
/// node list (`Network.layerMap`), so an architecture is described once, where the network is built.
public struct WeightLayer: Equatable, Sendable {
    public enum Source: Equatable, Sendable {
        case image
        /// The i-th tap of `Network.features` in call order (a ResNet stream appears once per block).
        case tap(Int)
    }
    /// Layer prefix in the state dict, e.g. "layers.0", "features.3", "layer2.0.shortcut.0".
    public let name: String
    public let source: Source
    /// Per-sample shape of the source: [h, w, c], [features] for an MLP tap, or [tokens, features] for a transformer's.
    public let sourceShape: [Int]
    /// 2×2 max-pools between the source and this layer.
    public let pools: Int
    public let globalPool: Bool
    /// 0 for a linear layer.
    public let kernel: Int
    public let stride: Int, padding: Int
    /// Channels (convolution) or features (linear) of the input.
    public let inChannels: Int
    public let outChannels: Int
    public let hasBias: Bool
    /// Prefix of the BatchNorm that follows the layer (folded into it by least-squares fusion).
    public internal(set) var batchNorm: String?
    /// The merge point of the output units (nil: the head's classes; set when the walk reaches the layer's tap) and of
    /// the input units (nil: the image).
    public internal(set) var outPoint: String?
    public let inPoint: String?

    public var isConv: Bool { kernel > 0 }
    public var weightName: String { name + ".weight" }
    public var biasName: String? { hasBias ? name + ".bias" : nil }
    /// Columns of the layer's input rows: kh·kw·c (im2col, tap-major) or the feature count.
    public var columns: Int { isConv ? kernel * kernel * inChannels : inChannels }

    /// Per-sample shape of the layer's input, after the pools.
    public var inputShape: [Int] {
        guard sourceShape.count == 3 else { return sourceShape }
        var (h, w) = (sourceShape[0], sourceShape[1])
        for _ in 0..<pools { h /= 2; w /= 2 }
        if globalPool { return [sourceShape[2]] }
        return isConv ? [h, w, sourceShape[2]] : [h * w * sourceShape[2]]
    }

    public var geometry: ConvGeometry? {
        guard isConv else { return nil }
        let s = inputShape
        return ConvGeometry(height: s[0], width: s[1], channels: s[2], kernelH: kernel, kernelW: kernel, stride: stride, padding: padding)
    }

    /// Input rows each sample contributes (output positions of a convolution, a transformer's tokens).
    public var rowsPerSample: Int { geometry.map { $0.outHeight * $0.outWidth } ?? (sourceShape.count == 2 ? sourceShape[0] : 1) }
    /// Multiply-add FLOPs of this layer's GEMM for one sample (2 per multiply-add).
    public var forwardFLOPs: Double { 2 * Double(rowsPerSample * columns * outChannels) }
}

/// The weight layers of a network in forward order (each after every layer its input depends on), and its head.
public struct LayerMap: Sendable {
    public let body: [WeightLayer]
    public let head: WeightLayer
}

extension Network {
    /// The network's weight layers, read off its node list: the one walk the merge graph and the fusion plan share.
    public var layerMap: LayerMap {
        let a = architecture
        var body: [WeightLayer] = []
        var source = WeightLayer.Source.image, sourceShape = a.input, pools = 0, globalPool = false, taps = 0
        var point: String? = nil
        let stream = Network<S>.vitStream
        var (h, w, c) = (a.input[0], a.input[1], a.input[2])
        // Layers whose output merge point is the next tap.
        var pending: [Int] = []
        func layer(_ name: String, from: WeightLayer.Source, shape: [Int], pools: Int = 0, globalPool: Bool = false, kernel: Int = 0,
                   stride: Int = 1, padding: Int = 0, in i: Int, out o: Int, bias: Bool, batchNorm: String? = nil,
                   outPoint: String?, inPoint: String?) -> WeightLayer {
            WeightLayer(name: name, source: from, sourceShape: shape, pools: pools, globalPool: globalPool, kernel: kernel, stride: stride,
                        padding: padding, inChannels: i, outChannels: o, hasBias: bias, batchNorm: batchNorm, outPoint: outPoint, inPoint: inPoint)
        }
        func prefix(_ p: Parameter<S>) -> String { String(p.name.dropLast(".weight".count)) }
        func conv(_ l: Conv2d<S>, from: WeightLayer.Source, shape: [Int], pools: Int = 0, batchNorm: String?, out: String?, in: String?) -> WeightLayer {
            layer(prefix(l.weight), from: from, shape: shape, pools: pools, kernel: l.kernel, stride: l.stride, padding: l.padding,
                  in: l.inChannels, out: l.outChannels, bias: l.bias != nil, batchNorm: batchNorm, outPoint: out, inPoint: `in`)
        }
        // `isPoint`: the tap is a merge point (a LayerNorm's output, the head's input in a ViT, is not).
        func tapped(_ name: String, isPoint: Bool = true) {
            for i in pending { body[i].outPoint = name }
            pending = []
            source = .tap(taps); taps += 1
            sourceShape = sourceShape.count != 3 ? sourceShape : [h, w, c]
            pools = 0; point = isPoint ? name : nil
        }
        func linear(_ l: Linear<S>, tap: Int, tokens: Int, out: String?, in: String?) -> WeightLayer {
            layer(prefix(l.weight), from: .tap(tap), shape: [tokens, l.inFeatures], in: l.inFeatures, out: l.outFeatures, bias: l.bias != nil,
                  outPoint: out, inPoint: `in`)
        }
        for node in nodes {
            switch node {
            case .flatten: break
            case .linear(let l):
                pending.append(body.count)
                body.append(layer(prefix(l.weight), from: source, shape: sourceShape, pools: pools, globalPool: globalPool,
                                  in: l.inFeatures, out: l.outFeatures, bias: l.bias != nil, outPoint: nil, inPoint: point))
                sourceShape = [l.outFeatures]
            case .conv(let l):
                pending.append(body.count)
                body.append(conv(l, from: source, shape: sourceShape, pools: pools, batchNorm: nil, out: nil, in: point))
                h = (h + 2 * l.padding - l.kernel) / l.stride + 1; w = (w + 2 * l.padding - l.kernel) / l.stride + 1; c = l.outChannels
            case .batchNorm(let l): body[body.count - 1].batchNorm = l.name
            case .relu(_, let tap): tapped(tap)
            case .maxPool: h /= 2; w /= 2; pools += 1
            case .globalAvgPool: globalPool = true
            case .block(let b, let stream):
                let input = source, inShape = [h, w, c], inner = "\(b.name).inner"
                body.append(conv(b.conv1, from: input, shape: inShape, batchNorm: b.bn1.name, out: inner, in: point))
                let (oh, ow) = ((h + 2 * b.conv1.padding - b.conv1.kernel) / b.conv1.stride + 1, (w + 2 * b.conv1.padding - b.conv1.kernel) / b.conv1.stride + 1)
                body.append(conv(b.conv2, from: .tap(taps), shape: [oh, ow, b.conv2.outChannels], batchNorm: b.bn2.name, out: stream, in: inner))
                if let s = b.shortcut { body.append(conv(s.conv, from: input, shape: inShape, batchNorm: s.bn.name, out: stream, in: point)) }
                (h, w, c) = (oh, ow, b.conv2.outChannels)
                taps += 1
                tapped(stream)
            case .tokens(let e):
                // The residual stream is one merge point through every block (a LayerNorm keeps a permutation of it);
                // qkv's output rows belong to the block's attention points (MergeGraph reads them off `AttentionPoints`).
                body.append(conv(e.proj, from: source, shape: sourceShape, batchNorm: nil, out: stream, in: point))
                sourceShape = [e.patches + 1, e.width]
            case .transformer(let b, let residual):
                let t = sourceShape[0], act = b.inputNames.fc2
                body.append(linear(b.attn.qkv, tap: taps, tokens: t, out: nil, in: stream))
                body.append(linear(b.attn.proj, tap: taps + 1, tokens: t, out: stream, in: b.attentionPoints.v))
                body.append(linear(b.fc1, tap: taps + 2, tokens: t, out: act, in: stream))
                body.append(linear(b.fc2, tap: taps + 3, tokens: t, out: stream, in: act))
                taps += 4
                tapped(residual, isPoint: false)
                point = stream
            case .classToken: sourceShape = [sourceShape[sourceShape.count - 1]]
            case .layerNorm(_, let tap):
                tapped(tap, isPoint: false)
                point = stream
            case .project(let l, _, let tap):
                body.append(layer(prefix(l.weight), from: source, shape: sourceShape, in: l.inFeatures, out: l.outFeatures, bias: l.bias != nil,
                                  outPoint: nil, inPoint: point))
                sourceShape = [l.outFeatures]
                tapped(tap, isPoint: false)
            }
        }
        let head = layer(prefix(self.head.weight), from: source, shape: sourceShape, pools: pools, globalPool: globalPool,
                         in: self.head.inFeatures, out: self.head.outFeatures, bias: self.head.bias != nil, outPoint: nil, inPoint: point)
        return LayerMap(body: body, head: head)
    }
}

extension Network {
    /// Multiply-add FLOPs of one sample's forward pass (2 per multiply-add): every weight layer and the head, and a
    /// transformer's attention products (Q·Kᵀ and A·V: 4·T²·d per block). Elementwise work is left out.
    public var forwardFLOPs: Double {
        let map = layerMap
        var total = (map.body + [map.head]).reduce(0.0) { $0 + $1.forwardFLOPs }
        var tokens = 0
        for node in nodes {
            switch node {
            case .tokens(let e): tokens = e.patches + 1
            case .transformer(let b, _): total += 4 * Double(tokens * tokens * b.attn.width)
            default: break
            }
        }
        return total
    }

    /// FLOPs of one sample's training step as `backwardParameters` runs it: the forward pass, the weight gradients
    /// (one forward's worth) and the input gradients (another), less the first weight layer's, which nothing reads.
    public var trainingFLOPs: Double {
        guard let first = layerMap.body.first, case .image = first.source else { return 3 * forwardFLOPs }
        return 3 * forwardFLOPs - first.forwardFLOPs
    }
}
