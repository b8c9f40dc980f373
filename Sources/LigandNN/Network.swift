import LigandNumerics

/// One step of a network's body, dispatched statically so every layer runs specialised.
enum Node<S: FloatScalar> {
    case linear(Linear<S>)
    case conv(Conv2d<S>)
    case batchNorm(BatchNorm2d<S>)
    /// `tap` names the merge point this activation belongs to.
    case relu(ReLU<S>, tap: String)
    case maxPool(MaxPool2d<S>)
    case globalAvgPool(GlobalAvgPool<S>)
    case flatten
    /// A residual block writing into residual stream `stream`.
    case block(BasicBlock<S>, stream: String)
    /// Patch embedding, class token and position embedding: image → tokens [N, T, d].
    case tokens(TokenEmbedding<S>)
    /// A transformer block writing the residual stream `stream` (its linear layers' inputs are taps of their own).
    case transformer(TransformerBlock<S>, stream: String)
    /// The class token: [N, T, d] → [N, d].
    case classToken
    /// A LayerNorm whose output is the tap `tap`.
    case layerNorm(LayerNorm<S>, tap: String)
    /// A bias-free projection of the features (CLIP's `proj`), optionally to unit length; its output is the tap `tap`.
    case project(Linear<S>, unit: UnitNorm<S>?, tap: String)
}

extension Node {
    /// The node's parameters in state_dict order (none for activations, pooling and reshapes).
    var parameters: [Parameter<S>] {
        switch self {
        case .linear(let l): return l.parameters
        case .conv(let l): return l.parameters
        case .batchNorm(let l): return l.parameters
        case .block(let b, _): return b.parameters
        case .tokens(let e): return e.parameters
        case .transformer(let b, _): return b.parameters
        case .layerNorm(let l, _): return l.parameters
        case .project(let l, _, _): return l.parameters
        case .relu, .maxPool, .globalAvgPool, .flatten, .classToken: return []
        }
    }
}

public enum NetworkError: Error, CustomStringConvertible {
    case invalidArchitecture([String])
    case missingTensor(String)
    case unexpectedTensor(String)
    case shapeMismatch(name: String, expected: [Int], found: [Int])
    case nonFinite(name: String, index: Int)
    case inputShape(expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .invalidArchitecture(let e): return "invalid architecture: " + e.joined(separator: "; ")
        case .missingTensor(let n): return "tensor '\(n)' is missing"
        case .unexpectedTensor(let n): return "tensor '\(n)' does not belong to this architecture"
        case .shapeMismatch(let n, let e, let f): return "tensor '\(n)' has shape \(f), the architecture needs \(e)"
        case .nonFinite(let n, let i): return "tensor '\(n)' holds a NaN or infinite value at element \(i)"
        case .inputShape(let e, let f): return "input has shape \(f), the network expects [N] + \(e)"
        }
    }
}

/// A merge point: a hidden activation space that alignment maps act on (see algorithms.md, CCA Merge).
public struct MergePoint: Equatable, Sendable {
    public let name: String
    public let channels: Int
}

/// An MLP, VGG-style CNN, ResNet-20 or Vision Transformer built from an `Architecture`, with PyTorch (timm) state_dict names.
public final class Network<S: FloatScalar> {
    public let architecture: Architecture
    let nodes: [Node<S>]
    public let head: Linear<S>
    public let mergePoints: [MergePoint]
    /// Taps whose activations belong to another merge point (a ViT's residual stream after block i, tapped as "blocks.i",
    /// is the one point "stream"); a tap that is neither a point nor listed here feeds no alignment statistic.
    public let tapPoints: [String: String]
    /// A ViT's attention blocks as merge points (heads matched as wholes), in block order; empty for other kinds.
    public let attention: [AttentionPoints]
    private var flattenShape: [Int] = [], tokenShape: [Int] = []

    /// A network of `arch` with He-normal weights drawn from `seed`.
    public convenience init(_ arch: Architecture, seed: UInt64) throws {
        try self.init(arch, rng: SeededRNG(seed: seed, stream: "init"))
    }

    /// A network of `arch` holding `tensors` (every one required, as `load` checks); no initial weights are drawn.
    @_specialize(exported: true, where S == Float)
    public static func loaded(_ arch: Architecture, _ tensors: [String: TensorOf<S>], counters: [String: Int64] = [:]) throws -> Network {
        let net = try Network(arch, rng: .drawless)
        try net.load(tensors, counters: counters)
        return net
    }

    /// A network of `arch` whose weights `initial` draws (`.drawless`: zeros, for a network loaded next).
    @_specialize(exported: true, where S == Float)
    public init(_ arch: Architecture, rng initial: SeededRNG) throws {
        let problems = arch.validationErrors()
        guard problems.isEmpty else { throw NetworkError.invalidArchitecture(problems) }
        architecture = arch
        var rng = initial
        var nodes: [Node<S>] = []
        var points: [MergePoint] = []
        var aliases: [String: String] = [:]
        var attention: [AttentionPoints] = []
        let (h, w, c) = (arch.input[0], arch.input[1], arch.input[2])
        switch arch.kind {
        case .mlp:
            nodes.append(.flatten)
            var width = h * w * c
            for (i, out) in arch.hidden!.enumerated() {
                nodes.append(.linear(Linear(name: "layers.\(2 * i)", inFeatures: width, outFeatures: out, rng: &rng)))
                nodes.append(.relu(ReLU(), tap: "layers.\(2 * i + 1)"))
                points.append(MergePoint(name: "layers.\(2 * i + 1)", channels: out))
                width = out
            }
            head = Linear(name: "head", inFeatures: width, outFeatures: arch.classes, rng: &rng)
        case .vgg:
            // Indices follow an nn.Sequential of Conv2d, [BatchNorm2d,] ReLU and MaxPool2d modules, as torchvision's VGG names them.
            var index = 0, channels = c
            let bn = arch.hasBatchNorm
            for item in arch.config! {
                switch item {
                case .conv(let out):
                    nodes.append(.conv(Conv2d(name: "features.\(index)", inChannels: channels, outChannels: out, kernel: 3, padding: 1, rng: &rng)))
                    if bn { nodes.append(.batchNorm(BatchNorm2d(name: "features.\(index + 1)", channels: out))) }
                    let relu = index + (bn ? 2 : 1)
                    nodes.append(.relu(ReLU(), tap: "features.\(relu)"))
                    points.append(MergePoint(name: "features.\(relu)", channels: out))
                    channels = out; index = relu + 1
                case .pool:
                    nodes.append(.maxPool(MaxPool2d(kernel: 2))); index += 1
                }
            }
            nodes.append(.globalAvgPool(GlobalAvgPool()))
            head = Linear(name: "classifier", inFeatures: channels, outFeatures: arch.classes, rng: &rng)
        case .resnet20:
            let k = arch.width!
            let widths = [16 * k, 32 * k, 64 * k]
            nodes.append(.conv(Conv2d(name: "conv1", inChannels: c, outChannels: widths[0], kernel: 3, padding: 1, bias: false, rng: &rng)))
            nodes.append(.batchNorm(BatchNorm2d(name: "bn1", channels: widths[0])))
            nodes.append(.relu(ReLU(), tap: "stream1"))
            var channels = widths[0]
            for stage in 0..<3 {
                points.append(MergePoint(name: "stream\(stage + 1)", channels: widths[stage]))
                for b in 0..<3 {
                    let name = "layer\(stage + 1).\(b)"
                    let block = BasicBlock<S>(name: name, inChannels: channels, outChannels: widths[stage], stride: (stage > 0 && b == 0) ? 2 : 1, rng: &rng)
                    nodes.append(.block(block, stream: "stream\(stage + 1)"))
                    points.append(MergePoint(name: "\(name).inner", channels: widths[stage]))
                    channels = widths[stage]
                }
            }
            nodes.append(.globalAvgPool(GlobalAvgPool()))
            head = Linear(name: "fc", inFeatures: channels, outFeatures: arch.classes, rng: &rng)
        case .vit:
            // timm's VisionTransformer: tokens, pre-norm blocks, final norm, the head on the class token (global_pool='token');
            // CLIP's tower adds norm_pre before the blocks and a projection (to unit length) before the head.
            let d = arch.width!, grid = arch.vitGrid!, hidden = arch.vitHidden!, eps = arch.layerNormEps
            // One residual stream through every block: one merge point, whatever block it is tapped after.
            points.append(MergePoint(name: Self.vitStream, channels: d))
            nodes.append(.tokens(TokenEmbedding(channels: c, patch: arch.patch!, grid: grid, width: d, bias: arch.patchBias != false, rng: &rng)))
            if arch.preNorm == true { nodes.append(.layerNorm(LayerNorm(name: "norm_pre", features: d, eps: eps), tap: "norm_pre")) }
            for i in 0..<arch.depth! {
                let block = TransformerBlock<S>(name: "blocks.\(i)", width: d, heads: arch.heads!, hidden: hidden, eps: eps,
                                                quickGELU: arch.activation == .quickGELU, rng: &rng)
                nodes.append(.transformer(block, stream: "blocks.\(i)"))
                let heads = block.attentionPoints
                points += [MergePoint(name: heads.qk, channels: d), MergePoint(name: heads.v, channels: d),
                           MergePoint(name: block.inputNames.fc2, channels: hidden)]
                aliases["blocks.\(i)"] = Self.vitStream
                aliases[block.inputNames.proj] = heads.v
                attention.append(heads)
            }
            // Only the class token reaches the head, so the final norm is applied to it alone (per token, the same values).
            nodes.append(.classToken)
            nodes.append(.layerNorm(LayerNorm(name: "norm", features: d, eps: eps), tap: "norm"))
            if let e = arch.embed {
                // open_clip draws proj with std d^-1/2.
                let proj = Linear<S>(name: "proj", inFeatures: d, outFeatures: e, bias: false, std: 1 / Double(d).squareRoot(), rng: &rng)
                nodes.append(.project(proj, unit: arch.unitFeatures == true ? UnitNorm() : nil, tap: "proj"))
            }
            head = Linear(name: "head", inFeatures: arch.embed ?? d, outFeatures: arch.classes, std: 0.02, rng: &rng)
        }
        self.nodes = nodes
        self.mergePoints = points
        self.tapPoints = aliases
        self.attention = attention
    }

    /// A ViT's residual stream as a merge point: the patch embedding, class token, position embedding, every LayerNorm,
    /// attention output projection and fc2 write it; qkv, fc1 and the head (or CLIP's proj) read it.
    public static var vitStream: String { "stream" }

    public var featureWidth: Int { head.inFeatures }
    public var classes: Int { head.outFeatures }

    /// The input of the classification head; `tap` sees every merge-point activation as [samples, channels].
    @_specialize(exported: true, where S == Float)
    public func features(_ x: TensorOf<S>, training: Bool = false, tap: ((String, TensorOf<S>) -> Void)? = nil) -> TensorOf<S> {
        var a = architecture.normalize.map { $0.apply(x) } ?? x
        for node in nodes {
            switch node {
            case .linear(let l): a = l.forward(a, training: training)
            case .conv(let l): a = l.forward(a, training: training)
            case .batchNorm(let l): a = l.forward(a, training: training)
            case .relu(let l, let name):
                a = l.forward(a, training: training)
                if let tap { tap(name, a.reshaped([-1, a.shape.last!])) }
            case .maxPool(let l): a = l.forward(a, training: training)
            case .globalAvgPool(let l): a = l.forward(a, training: training)
            case .flatten:
                flattenShape = a.shape
                a = a.reshaped([a.shape[0], -1])
            case .block(let b, let stream):
                a = b.forward(a, training: training, inner: tap.map { t in { h in t("\(b.name).inner", h.reshaped([-1, h.shape.last!])) } })
                if let tap { tap(stream, a.reshaped([-1, a.shape.last!])) }
            case .tokens(let e): a = e.forward(a, training: training)
            case .transformer(let b, let stream):
                a = b.forward(a, training: training, inputs: tap)
                if let tap { tap(stream, a.reshaped([-1, a.shape.last!])) }
            case .classToken:
                tokenShape = a.shape
                a = classTokenRows(a)
            case .layerNorm(let l, let name):
                a = l.forward(a, training: training)
                if let tap { tap(name, a.reshaped([-1, a.shape.last!])) }
            case .project(let l, let unit, let name):
                a = l.forward(a, training: training)
                if let unit { a = unit.forward(a, training: training) }
                if let tap { tap(name, a) }
            }
        }
        return a
    }

    /// Token 0 of every sample: [N, T, d] → [N, d].
    private func classTokenRows(_ x: TensorOf<S>) -> TensorOf<S> {
        let n = x.shape[0], t = x.shape[1], d = x.shape[2]
        var y = TensorOf<S>(zeros: [n, d])
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
            for b in 0..<n { (py.baseAddress! + b * d).update(from: px.baseAddress! + b * t * d, count: d) }
        } }
        return y
    }

    /// Logits [N, classes] for NHWC input [N, H, W, C].
    @_specialize(exported: true, where S == Float)
    public func forward(_ x: TensorOf<S>, training: Bool = false) -> TensorOf<S> {
        head.forward(features(x, training: training), training: training)
    }

    /// Back-propagates dL/dlogits through the last training forward, accumulating parameter gradients; returns dL/dx.
    @_specialize(exported: true, where S == Float)
    @discardableResult
    public func backward(_ dLogits: TensorOf<S>) -> TensorOf<S> { propagate(dLogits, toInput: true)! }

    /// Back-propagates dL/dlogits into the parameter gradients only, as training needs: back-propagation stops at
    /// the first layer with parameters, and a first linear, convolution or patch embedding skips its dx (for
    /// the MLP a fifth of the step's FLOPs). The gradients are bitwise those of `backward(_:)`.
    @_specialize(exported: true, where S == Float)
    public func backwardParameters(_ dLogits: TensorOf<S>) { _ = propagate(dLogits, toInput: false) }

    /// As `backwardParameters(_:)` from dL/dfeatures [N, featureWidth] of the last training `features(_:)` call:
    /// a loss on the features alone (the head gets no gradient).
    @_specialize(exported: true, where S == Float)
    public func backwardParameters(features dFeatures: TensorOf<S>) { _ = propagate(dFeatures, toInput: false, throughHead: false) }

    private func propagate(_ dLogits: TensorOf<S>, toInput: Bool, throughHead: Bool = true) -> TensorOf<S>? {
        var d = throughHead ? head.backward(dLogits) : dLogits
        let stop = toInput ? nil : firstParameterised
        for (index, node) in nodes.enumerated().reversed() {
            let last = index == stop
            switch node {
            case .linear(let l) where last: _ = l.backward(d, inputGradient: false); return nil
            case .conv(let l) where last: _ = l.backward(d, inputGradient: false); return nil
            case .tokens(let e) where last: _ = e.backward(d, inputGradient: false); return nil
            case .linear(let l): d = l.backward(d)
            case .conv(let l): d = l.backward(d)
            case .batchNorm(let l): d = l.backward(d)
            case .relu(let l, _): d = l.backward(d)
            case .maxPool(let l): d = l.backward(d)
            case .globalAvgPool(let l): d = l.backward(d)
            case .flatten: d = d.reshaped(flattenShape)
            case .block(let b, _): d = b.backward(d)
            case .tokens(let e): d = e.backward(d)
            case .transformer(let b, _): d = b.backward(d)
            case .classToken:
                // The gradient reaches token 0 only.
                let (n, t, w) = (tokenShape[0], tokenShape[1], tokenShape[2])
                var dx = TensorOf<S>(zeros: tokenShape)
                d.withUnsafeBufferPointer { pd in dx.withUnsafeMutableBufferPointer { px in
                    for b in 0..<n { (px.baseAddress! + b * t * w).update(from: pd.baseAddress! + b * w, count: w) }
                } }
                d = dx
            case .layerNorm(let l, _): d = l.backward(d)
            case .project(let l, let unit, _): d = l.backward(unit?.backward(d) ?? d)
            }
            if last { return nil }
        }
        return toInput ? architecture.normalize.map { $0.backward(d) } ?? d : nil
    }

    /// The first node (from the input) that holds parameters: no gradient below it is needed for training.
    private var firstParameterised: Int? { nodes.firstIndex { !$0.parameters.isEmpty } }

    public var parameters: [Parameter<S>] { nodes.flatMap(\.parameters) + head.parameters }

    /// Every LayerNorm (a ViT's two per block and its final norm).
    public var layerNorms: [LayerNorm<S>] {
        nodes.flatMap { node -> [LayerNorm<S>] in
            switch node {
            case .transformer(let b, _): return b.layerNorms
            case .layerNorm(let l, _): return [l]
            default: return []
            }
        }
    }

    /// Each LayerNorm's reader: the linear layer (state-dict prefix) its output alone feeds, where one does (a block's
    /// norm1 → attn.qkv, norm2 → mlp.fc1, the final norm → proj or the head); CLIP's norm_pre feeds the stream, no layer.
    public var layerNormReaders: [String: String] {
        var out: [String: String] = [:]
        var open: String?
        func prefix(_ l: Linear<S>) -> String { String(l.weight.name.dropLast(".weight".count)) }
        for node in nodes {
            switch node {
            case .transformer(let b, _):
                out[b.norm1.name] = prefix(b.attn.qkv); out[b.norm2.name] = prefix(b.fc1); open = nil
            case .layerNorm(let l, _): open = l.name
            case .project(let l, _, _): if let n = open { out[n] = prefix(l) }; open = nil
            case .classToken: break
            default: open = nil
            }
        }
        if let n = open { out[n] = prefix(head) }
        return out
    }

    public var batchNorms: [BatchNorm2d<S>] {
        nodes.flatMap { node -> [BatchNorm2d<S>] in
            switch node {
            case .batchNorm(let l): return [l]
            case .block(let b, _): return b.batchNorms
            default: return []
            }
        }
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// `stateDict()` without the classification head: what task vectors, merges and fused backbones cover.
    public func backboneStateDict() -> [(name: String, value: TensorOf<S>)] {
        let headNames = Set(head.parameters.map(\.name))
        return stateDict().filter { !headNames.contains($0.name) }
    }

    /// Every floating-point tensor in PyTorch state_dict order (parameters and BN running statistics).
    public func stateDict() -> [(name: String, value: TensorOf<S>)] {
        var out: [(String, TensorOf<S>)] = []
        func bn(_ l: BatchNorm2d<S>) {
            out += [(l.weight.name, l.weight.value), (l.bias.name, l.bias.value),
                    (l.runningMean.name, l.runningMean.value), (l.runningVar.name, l.runningVar.value)]
        }
        for node in nodes {
            switch node {
            case .linear(let l): out += l.parameters.map { ($0.name, $0.value) }
            case .conv(let l): out += l.parameters.map { ($0.name, $0.value) }
            case .batchNorm(let l): bn(l)
            case .block(let b, _):
                out += b.conv1.parameters.map { ($0.name, $0.value) }; bn(b.bn1)
                out += b.conv2.parameters.map { ($0.name, $0.value) }; bn(b.bn2)
                if let s = b.shortcut { out += s.conv.parameters.map { ($0.name, $0.value) }; bn(s.bn) }
            case .tokens(let e): out += e.parameters.map { ($0.name, $0.value) }
            case .transformer(let b, _): out += b.parameters.map { ($0.name, $0.value) }
            case .layerNorm(let l, _): out += l.parameters.map { ($0.name, $0.value) }
            case .project(let l, _, _): out += l.parameters.map { ($0.name, $0.value) }
            default: break
            }
        }
        return out + head.parameters.map { ($0.name, $0.value) }
    }

    /// BatchNorm's `num_batches_tracked` counters (I64 in PyTorch files).
    public func batchCounters() -> [(name: String, value: Int64)] {
        batchNorms.map { ("\($0.name).num_batches_tracked", $0.numBatchesTracked) }
    }

    /// The same counters by name, as `load` takes them.
    public var batchCounterValues: [String: Int64] { Dictionary(uniqueKeysWithValues: batchCounters().map { ($0.name, $0.value) }) }

    /// Replaces every tensor; refuses missing, extra, mis-shaped or non-finite tensors by name.
    @_specialize(exported: true, where S == Float)
    public func load(_ tensors: [String: TensorOf<S>], counters: [String: Int64] = [:], allowExtra: Bool = false) throws {
        let targets = stateDict()
        var known = Set<String>()
        for (name, current) in targets {
            known.insert(name)
            guard let t = tensors[name] else { throw NetworkError.missingTensor(name) }
            guard t.shape == current.shape else { throw NetworkError.shapeMismatch(name: name, expected: current.shape, found: t.shape) }
            if let i = t.firstNonFinite { throw NetworkError.nonFinite(name: name, index: i) }
        }
        if !allowExtra, let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) { throw NetworkError.unexpectedTensor(extra) }
        var byName: [String: (TensorOf<S>) -> Void] = [:]
        for p in parameters { byName[p.name] = { p.value = $0 } }
        for l in batchNorms {
            byName[l.runningMean.name] = { l.runningMean.value = $0 }
            byName[l.runningVar.name] = { l.runningVar.value = $0 }
        }
        for (name, _) in targets { byName[name]!(tensors[name]!) }
        for l in batchNorms { if let c = counters["\(l.name).num_batches_tracked"] { l.numBatchesTracked = c } }
    }

    /// A copy with the same weights in another scalar type (Float64 for gradient checks).
    public func converted<T: FloatScalar>(to: T.Type) throws -> Network<T> {
        try Network<T>.loaded(architecture, Dictionary(uniqueKeysWithValues: stateDict().map { ($0.name, $0.value.converted(to: T.self)) }),
                              counters: batchCounterValues)
    }

    /// Checks an input batch's shape against the architecture.
    public func validateInput(_ x: TensorOf<S>) throws {
        guard x.rank == 4, Array(x.shape.dropFirst()) == architecture.input else {
            throw NetworkError.inputShape(expected: architecture.input, found: x.shape)
        }
    }
}

extension Architecture.Normalization {
    /// y[c] = (x[channels[c]] · scale − mean[c]) / std[c] over the last (channel) axis of an NHWC batch.
    public func apply<S: FloatScalar>(_ x: TensorOf<S>) -> TensorOf<S> {
        let order = channels ?? Array(0..<std.count), c = order.count
        let inverse = std.map { S(1 / $0) }, shift = mean.map { S($0) }, s = S(scale ?? 1)
        precondition(c > 0 && x.count % c == 0, "normalize: \(x.shape) is not a whole number of \(c)-channel pixels")
        var y = x
        x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
            var i = 0
            while i < px.count {
                // Without a scale the product is skipped, so a plain (x − mean) / std keeps its bits.
                for k in 0..<c { py[i + k] = ((scale == nil ? px[i + order[k]] : px[i + order[k]] * s) - shift[k]) * inverse[k] }
                i += c
            }
        } }
        return y
    }

    /// dL/dx[channels[c]] = dL/dy[c] · scale / std[c]: the gradient through `apply`.
    func backward<S: FloatScalar>(_ d: TensorOf<S>) -> TensorOf<S> {
        let order = channels ?? Array(0..<std.count), c = order.count
        let inverse = std.map { S(1 / $0) }, s = S(scale ?? 1)
        var y = d
        d.withUnsafeBufferPointer { pd in y.withUnsafeMutableBufferPointer { py in
            var i = 0
            while i < pd.count {
                for k in 0..<c { py[i + order[k]] = scale == nil ? pd[i + k] * inverse[k] : pd[i + k] * inverse[k] * s }
                i += c
            }
        } }
        return y
    }

    /// The contract as a formula: "(x · 255 − [0.5]) / [0.25]", "(x[2, 1, 0] − …) / …".
    public var formula: String {
        "(x" + (channels.map { "\($0)" } ?? "") + (scale.map { " · \(String(format: "%g", $0))" } ?? "") + " − \(mean)) / \(std)"
    }
}

extension Network where S == Float {
    /// A network of this one's architecture holding `backbone` read through `head` (its class count from the head;
    /// this network's own head when nil), with this one's BatchNorm counters: a merged or pretrained backbone under a
    /// task's head.
    public func with(backbone: [String: Tensor], head: (weight: Tensor, bias: Tensor)? = nil) throws -> Network<Float> {
        var arch = architecture, tensors = backbone
        if let head {
            arch.classes = head.weight.shape[0]
            tensors[self.head.weight.name] = head.weight
            if let b = self.head.bias { tensors[b.name] = head.bias }
        } else {
            for p in self.head.parameters { tensors[p.name] = p.value }
        }
        return try .loaded(arch, tensors, counters: batchCounterValues)
    }
}
