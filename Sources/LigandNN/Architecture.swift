import Foundation
import LigandNumerics

/// A self-describing model architecture; stored as JSON in a model file's `__metadata__["ligand.architecture"]`.
public struct Architecture: Codable, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable, CaseIterable { case mlp, vgg, resnet20, vit }
    /// One VGG item: a 3×3 convolution of that many channels, or a 2×2 max-pool.
    public enum VGGItem: Codable, Equatable, Sendable {
        case conv(Int), pool
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(Int.self) { self = .conv(n); return }
            let s = try c.decode(String.self)
            guard s == "M" else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "VGG item must be a channel count or \"M\", got \"\(s)\"") }
            self = .pool
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self { case .conv(let n): try c.encode(n); case .pool: try c.encode("M") }
        }
    }

    public var kind: Kind
    /// Input image shape [height, width, channels].
    public var input: [Int]
    public var classes: Int
    /// MLP hidden widths.
    public var hidden: [Int]?
    /// VGG layer list, e.g. [32, 32, "M", 64, 64, "M"].
    public var config: [VGGItem]?
    /// ResNet-20 width multiplier (1 → 16/32/64 channels); a ViT's embedding width d.
    public var width: Int?
    /// VGG only: a BatchNorm after every convolution (torchvision's `vgg*_bn` layout); nil means none,
    /// so the JSON (and every cache key) of a plain VGG is unchanged.
    public var batchNorm: Bool?
    /// ViT only: the side of a square patch, the number of transformer blocks and of attention heads, and the MLP's
    /// hidden width as a multiple of d (timm's patch_size, depth, num_heads, mlp_ratio).
    public var patch: Int?, depth: Int?, heads: Int?, mlpRatio: Double?
    /// ViT variants for CLIP's image tower (open_clip's `VisionTransformer`); nil is timm's default each time, so the
    /// JSON (and every cache key) of a timm ViT is unchanged: the MLP's activation, the LayerNorms' ε (1e-6), a
    /// LayerNorm on the tokens before the first block (`norm_pre`, open_clip's `ln_pre`; false), a bias on the patch
    /// projection (true), a bias-free projection of the final-normed class token to `embed` features (`proj`,
    /// open_clip's `visual.proj` transposed; none), and those features scaled to unit length before the head, as
    /// CLIP's zero-shot and fine-tuned classification heads read them (false; needs `embed`).
    public var activation: Activation?, eps: Double?, preNorm: Bool?, patchBias: Bool?, embed: Int?, unitFeatures: Bool?
    /// The transformer MLP's activation: exact GELU (timm, PyTorch's default) or QuickGELU, x·σ(1.702x) (OpenAI's CLIP).
    public enum Activation: String, Codable, Sendable, CaseIterable { case gelu, quickGELU = "quick_gelu" }
    /// The input contract beyond pixels / 255: `Normalization` before the first layer (nil: the network takes
    /// pixels / 255 as they are, and the JSON is unchanged).
    public var normalize: Normalization?

    /// The input contract beyond pixels / 255, applied by the network itself so every command that feeds it images
    /// agrees: y[c] = (x[channels[c]] · scale − mean[c]) / std[c], x the stored image in [0, 1] (torchvision's
    /// `Normalize` after `ToTensor`, with `scale` 255 for a model trained on raw 0…255 pixels and `channels`
    /// [2, 1, 0] for one trained on BGR images).
    public struct Normalization: Codable, Equatable, Sendable {
        public var mean: [Double]
        public var std: [Double]
        /// Multiplies the [0, 1] pixels first (nil: 1).
        public var scale: Double?
        /// Which stored channel each input channel reads (nil: as stored).
        public var channels: [Int]?
        public init(mean: [Double], std: [Double], scale: Double? = nil, channels: [Int]? = nil) {
            self.mean = mean; self.std = std
            self.scale = scale == 1 ? nil : scale
            self.channels = channels.flatMap { $0 == Array(0..<$0.count) ? nil : $0 }
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(mean: try c.decode([Double].self, forKey: .mean), std: try c.decode([Double].self, forKey: .std),
                      scale: try c.decodeIfPresent(Double.self, forKey: .scale), channels: try c.decodeIfPresent([Int].self, forKey: .channels))
        }

        /// Problems for an image of `channels` channels, each naming the field.
        public func validationErrors(channels count: Int) -> [String] {
            var e: [String] = []
            if mean.count != count || std.count != count {
                e.append("normalize needs one mean and one std per input channel (\(count)), got \(mean.count) and \(std.count)")
            }
            if let m = mean.first(where: { !$0.isFinite }) { e.append("normalize.mean must be finite, got \(m)") }
            if let s = std.first(where: { !($0.isFinite && $0 > 0 && 1 / $0 < Double(Float.greatestFiniteMagnitude)) }) {
                e.append("normalize.std must be positive and finite, got \(s)")
            }
            if let scale, !(scale.isFinite && scale > 0 && scale <= 1e6) { e.append("normalize.scale must be in (0, 1e6], got \(scale)") }
            if let channels, channels.sorted() != Array(0..<count) {
                e.append("normalize.channels must order the \(count) input channels (a permutation of 0…\(count - 1), e.g. [2, 1, 0] for BGR), got \(channels)")
            }
            return e
        }
    }

    enum CodingKeys: String, CodingKey {
        case kind, input, classes, hidden, config, width, batchNorm = "batch_norm", patch, depth, heads, mlpRatio = "mlp_ratio", normalize
        case activation, eps, preNorm = "pre_norm", patchBias = "patch_bias", embed, unitFeatures = "unit_features"
    }

    public init(kind: Kind, input: [Int], classes: Int, hidden: [Int]? = nil, config: [VGGItem]? = nil, width: Int? = nil, batchNorm: Bool? = nil,
                patch: Int? = nil, depth: Int? = nil, heads: Int? = nil, mlpRatio: Double? = nil, normalize: Normalization? = nil) {
        self.normalize = normalize
        self.kind = kind; self.input = input; self.classes = classes; self.hidden = hidden; self.config = config; self.width = width
        self.batchNorm = batchNorm == true ? true : nil
        self.patch = patch; self.depth = depth; self.heads = heads; self.mlpRatio = mlpRatio
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(kind: try c.decode(Kind.self, forKey: .kind), input: try c.decode([Int].self, forKey: .input),
                  classes: try c.decode(Int.self, forKey: .classes), hidden: try c.decodeIfPresent([Int].self, forKey: .hidden),
                  config: try c.decodeIfPresent([VGGItem].self, forKey: .config), width: try c.decodeIfPresent(Int.self, forKey: .width),
                  batchNorm: try c.decodeIfPresent(Bool.self, forKey: .batchNorm), patch: try c.decodeIfPresent(Int.self, forKey: .patch),
                  depth: try c.decodeIfPresent(Int.self, forKey: .depth), heads: try c.decodeIfPresent(Int.self, forKey: .heads),
                  mlpRatio: try c.decodeIfPresent(Double.self, forKey: .mlpRatio),
                  normalize: try c.decodeIfPresent(Normalization.self, forKey: .normalize))
        // A default spelled out reads as absent, so one network has one description (and one cache key).
        activation = try c.decodeIfPresent(Activation.self, forKey: .activation).flatMap { $0 == .gelu ? nil : $0 }
        eps = try c.decodeIfPresent(Double.self, forKey: .eps).flatMap { $0 == 1e-6 ? nil : $0 }
        preNorm = try c.decodeIfPresent(Bool.self, forKey: .preNorm) == true ? true : nil
        patchBias = try c.decodeIfPresent(Bool.self, forKey: .patchBias) == false ? false : nil
        embed = try c.decodeIfPresent(Int.self, forKey: .embed)
        unitFeatures = try c.decodeIfPresent(Bool.self, forKey: .unitFeatures) == true ? true : nil
    }

    /// True for a VGG with BatchNorm.
    public var hasBatchNorm: Bool { kind == .vgg && batchNorm == true }

    public static func mlp(hidden: [Int] = [512, 512], input: [Int] = [28, 28, 1], classes: Int = 10) -> Architecture {
        Architecture(kind: .mlp, input: input, classes: classes, hidden: hidden)
    }
    public static func vgg(_ config: [VGGItem] = [.conv(32), .conv(32), .pool, .conv(64), .conv(64), .pool, .conv(128), .conv(128), .pool],
                           input: [Int] = [28, 28, 1], classes: Int = 10, batchNorm: Bool = false) -> Architecture {
        Architecture(kind: .vgg, input: input, classes: classes, config: config, batchNorm: batchNorm)
    }
    public static func resnet20(width: Int = 1, input: [Int] = [28, 28, 1], classes: Int = 10) -> Architecture {
        Architecture(kind: .resnet20, input: input, classes: classes, width: width)
    }

    /// A Vision Transformer (timm's `VisionTransformer` layout: class token, learned position embedding, pre-norm blocks).
    public static func vit(patch: Int = 7, width: Int = 64, depth: Int = 4, heads: Int = 4, mlpRatio: Double = 2,
                           input: [Int] = [28, 28, 1], classes: Int = 10) -> Architecture {
        Architecture(kind: .vit, input: input, classes: classes, width: width, patch: patch, depth: depth, heads: heads, mlpRatio: mlpRatio)
    }

    /// CLIP's image tower as open_clip builds it (`VisionTransformer` of open_clip, OpenAI's weights): `ln_pre`,
    /// QuickGELU, LayerNorm ε 1e-5, a bias-free patch projection, `proj` to `embed` features, unit-length features.
    public static func clip(patch: Int, width: Int, depth: Int, heads: Int, mlpRatio: Double = 4, embed: Int,
                            input: [Int], classes: Int) -> Architecture {
        var a = vit(patch: patch, width: width, depth: depth, heads: heads, mlpRatio: mlpRatio, input: input, classes: classes)
        a.activation = .quickGELU; a.eps = 1e-5; a.preNorm = true; a.patchBias = false; a.embed = embed; a.unitFeatures = true
        return a
    }

    /// The LayerNorms' ε, timm's 1e-6 unless set.
    public var layerNormEps: Double { eps ?? 1e-6 }

    /// True when any CLIP variant field is set (they are ViT options).
    var hasViTVariant: Bool { activation != nil || eps != nil || preNorm != nil || patchBias != nil || embed != nil || unitFeatures != nil }

    /// A ViT's MLP hidden width, int(d · mlp_ratio) as timm computes it; nil for another kind or an invalid ratio.
    public var vitHidden: Int? {
        guard kind == .vit, let d = width, let r = mlpRatio, r.isFinite, r > 0, r <= 64, d > 0, d <= 1 << 20 else { return nil }
        return Int(Double(d) * r)
    }

    /// A ViT's patch grid (rows, columns), or nil when the image is not a whole number of patches.
    public var vitGrid: (h: Int, w: Int)? {
        guard kind == .vit, input.count == 3, let p = patch, p > 0, input[0] % p == 0, input[1] % p == 0, input[0] >= p, input[1] >= p else { return nil }
        return (input[0] / p, input[1] / p)
    }

    /// Most Float elements one input image may have; far above any image this project trains on.
    public static let maxInputElements = 1 << 26
    /// Most attention weights (heads × tokens²) one image may need in a ViT: training keeps them for every image of
    /// a batch (16 MiB per image at this bound; patch 1 on 28×28 with 4 heads fits).
    public static let maxAttentionPerImage = 1 << 22
    /// Most state-dict elements (parameters and BatchNorm statistics) a network may have (1 GiB of Float32).
    public static let maxStateElements = 1 << 28

    /// Elements of one input image, or nil when the product overflows.
    public var inputElements: Int? { Self.checkedProduct(input) }

    /// Product of non-negative sizes, or nil on overflow.
    public static func checkedProduct(_ sizes: [Int]) -> Int? { CheckedSize.product(sizes) }

    /// How many Float elements the network's state dict holds (every parameter and BatchNorm statistic,
    /// not the integer batch counters), computed with overflow checks; nil on overflow or for a
    /// description that `validationErrors` would refuse for its shape fields.
    public var stateElementCount: Int? {
        guard input.count == 3, !input.contains(where: { $0 <= 0 }), classes > 0 else { return nil }
        var total = 0
        // Adds a × b × ... to the running total; false on overflow.
        func add(_ factors: Int...) -> Bool {
            guard let p = Self.checkedProduct(factors) else { return false }
            let (t, o) = total.addingReportingOverflow(p)
            if o { return false }
            total = t
            return true
        }
        var headIn: Int
        switch kind {
        case .mlp:
            guard let h = hidden, !h.contains(where: { $0 <= 0 }), let features = inputElements else { return nil }
            headIn = features
            for out in h {
                guard add(headIn, out), add(out) else { return nil }
                headIn = out
            }
        case .vgg:
            guard let c = config else { return nil }
            headIn = input[2]
            for case .conv(let out) in c {
                guard out > 0, add(9, headIn, out), add(out), !hasBatchNorm || add(4, out) else { return nil }
                headIn = out
            }
        case .resnet20:
            guard let k = width.flatMap({ $0 > 0 ? $0 : nil }), let w0 = Self.checkedProduct([16, k]),
                  let w1 = Self.checkedProduct([32, k]), let w2 = Self.checkedProduct([64, k]) else { return nil }
            guard add(9, input[2], w0), add(4, w0) else { return nil }
            var channels = w0
            for (stage, out) in [w0, w1, w2].enumerated() {
                for b in 0..<3 {
                    guard add(9, channels, out), add(4, out), add(9, out, out), add(4, out) else { return nil }
                    if (stage > 0 && b == 0) || channels != out { guard add(channels, out), add(4, out) else { return nil } }
                    channels = out
                }
            }
            headIn = channels
        case .vit:
            guard let d = width, d > 0, let grid = vitGrid, let hidden = vitHidden, hidden > 0, let depth, depth >= 0, let p = patch,
                  let tokens = Self.checkedProduct([grid.h, grid.w]).map({ $0 + 1 }) else { return nil }
            guard add(d), add(tokens, d), add(d, input[2], p, p), patchBias == false || add(d), preNorm != true || add(2, d) else { return nil }
            for _ in 0..<depth {
                guard add(4, d), add(3, d, d), add(3, d), add(d, d), add(d), add(2, hidden, d), add(hidden), add(d) else { return nil }
            }
            guard add(2, d) else { return nil }
            headIn = d
            if let e = embed { guard e > 0, add(e, d) else { return nil }; headIn = e }
        }
        guard add(headIn, classes), add(classes) else { return nil }
        return total
    }

    /// Problems with the description, each naming the field; empty when it is usable.
    public func validationErrors() -> [String] {
        var e: [String] = []
        if input.count != 3 || input.contains(where: { $0 <= 0 }) { e.append("input must be [height, width, channels] of positive sizes, got \(input)") }
        else if (inputElements ?? .max) > Self.maxInputElements {
            e.append("input \(input) has more than \(Self.maxInputElements) elements per image")
        }
        if classes < 2 { e.append("classes must be at least 2, got \(classes)") }
        switch kind {
        case .mlp:
            if batchNorm != nil { e.append("batch_norm is a vgg option") }
            guard let h = hidden else { e.append("hidden is required for an mlp"); break }
            if h.contains(where: { $0 <= 0 }) { e.append("hidden widths must be positive, got \(h)") }
        case .vgg:
            guard let c = config, c.contains(where: { if case .conv = $0 { return true }; return false }) else {
                e.append("config needs at least one convolution for a vgg"); break
            }
            var side = min(input.first ?? 0, input.dropFirst().first ?? 0)
            for item in c {
                switch item {
                case .conv(let n): if n <= 0 { e.append("config channel counts must be positive, got \(n)") }
                case .pool: side /= 2; if side < 1 { e.append("config pools the image below 1×1") }
                }
            }
        case .resnet20:
            if batchNorm != nil { e.append("batch_norm is a vgg option") }
            if (width ?? 0) <= 0 { e.append("width must be a positive multiplier, got \(width.map(String.init) ?? "nothing")") }
            if input.count == 3 && min(input[0], input[1]) < 4 { e.append("input is too small for resnet20's two stride-2 stages") }
        case .vit:
            if batchNorm != nil { e.append("batch_norm is a vgg option") }
            let d = width ?? 0
            if d <= 0 { e.append("width (the embedding dimension) must be positive, got \(width.map(String.init) ?? "nothing")") }
            if (depth ?? -1) < 1 { e.append("depth must be at least 1, got \(depth.map(String.init) ?? "nothing")") }
            if let h = heads, h > 0 { if d > 0 && d % h != 0 { e.append("width \(d) is not divisible by heads \(h)") } }
            else { e.append("heads must be positive, got \(heads.map(String.init) ?? "nothing")") }
            if (patch ?? 0) <= 0 { e.append("patch must be positive, got \(patch.map(String.init) ?? "nothing")") }
            else if input.count == 3, vitGrid == nil { e.append("input \(input[0])×\(input[1]) is not a whole number of \(patch!)×\(patch!) patches") }
            if let g = vitGrid, let h = heads, h > 0, let maps = Self.checkedProduct([g.h * g.w + 1, g.h * g.w + 1, h]), maps > Self.maxAttentionPerImage {
                e.append("\(h) heads over \(g.h * g.w + 1) tokens make \(maps) attention weights per image, more than \(Self.maxAttentionPerImage) (use larger patches or fewer heads)")
            }
            if let eps, !(eps > 0 && eps <= 1) { e.append("eps must be in (0, 1], got \(eps)") }
            if let embed, embed < 1 || embed > 1 << 20 { e.append("embed (the projection's width) must be 1…\(1 << 20), got \(embed)") }
            if unitFeatures == true, embed == nil { e.append("unit_features needs embed (the projection whose output is scaled to unit length)") }
            if d > 0, (vitHidden ?? 0) < 1 { e.append("mlp_ratio must make a hidden width of at least 1 (0 < mlp_ratio ≤ 64), got \(mlpRatio.map { "\($0)" } ?? "nothing")") }
        }
        if kind != .vit, patch != nil || depth != nil || heads != nil || mlpRatio != nil || hasViTVariant {
            e.append("patch, depth, heads, mlp_ratio, activation, eps, pre_norm, patch_bias, embed and unit_features are vit options")
        }
        if let normalize, input.count == 3 { e += normalize.validationErrors(channels: input[2]) }
        // Only a description whose fields are otherwise valid is sized; sizes are checked before anything is allocated.
        if e.isEmpty, (stateElementCount ?? .max) > Self.maxStateElements {
            e.append("the network would hold more than \(Self.maxStateElements) parameters (sizes \(hidden.map { "hidden \($0)" } ?? width.map { "width \($0)" + (depth.map { " depth \($0)" } ?? "") } ?? "config"), classes \(classes))")
        }
        return e
    }

    public var json: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }

    public static func decode(json: String) throws -> Architecture {
        try JSONDecoder().decode(Architecture.self, from: Data(json.utf8))
    }

    public var description: String { baseDescription + (normalize.map { " on " + $0.formula } ?? "") }

    private var baseDescription: String {
        switch kind {
        case .mlp: return "mlp \(([inputElements.map(String.init) ?? input.map(String.init).joined(separator: "×")] + (hidden ?? []).map(String.init) + [String(classes)]).joined(separator: "-"))"
        case .vgg: return "vgg [" + (config ?? []).map { if case .conv(let n) = $0 { return "\(n)" }; return "M" }.joined(separator: ",") + "]" + (hasBatchNorm ? " bn" : "") + " → \(classes)"
        case .resnet20: return "resnet20 width \(width ?? 1) → \(classes)"
        case .vit:
            var v = "vit patch \(patch ?? 0) width \(width ?? 0) depth \(depth ?? 0) heads \(heads ?? 0) mlp \(vitHidden ?? 0)"
            if activation == .quickGELU { v += " quick_gelu" }
            if let eps { v += " eps \(eps)" }
            if preNorm == true { v += " pre_norm" }
            if patchBias == false { v += " no patch bias" }
            if let embed { v += " → proj \(embed)" + (unitFeatures == true ? " unit" : "") }
            return v + " → \(classes)"
        }
    }
}
