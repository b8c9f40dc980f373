import Foundation
import LigandFormats
import LigandNN
import LigandNumerics

/// Where a weight matrix keeps its input axis: PyTorch's Linear.weight is [out, in] (Conv2d [out, in, kh, kw]),
/// flax/JAX's Dense.kernel is [in, out] (Conv kernel [kh, kw, in, out]).
public enum WeightLayout: String, Codable, Sendable, CaseIterable {
    case torch, flax
}

/// How an imported file's tensors map back to the user's own: stored as `__metadata__["ligand.import"]` so that
/// `ligand export` writes a fused model in the layout and under the names it came with.
public struct ImportRecord: Codable, Equatable, Sendable {
    public static let metadataKey = "ligand.import"
    public var layout: WeightLayout
    /// Ligand's tensor name → the original name.
    public var names: [String: String]
    /// Ligand's names of matrices the file holds transposed beyond `layout` (open_clip's `visual.proj`, [d, e]).
    public var transposed: [String]?
    /// Ligand's names of tensors the file holds in another shape of the same elements (open_clip's
    /// `class_embedding` [d] for `cls_token` [1, 1, d]), with that shape.
    public var shapes: [String: [Int]]?

    public init(layout: WeightLayout, names: [String: String], transposed: [String]? = nil, shapes: [String: [Int]]? = nil) {
        self.layout = layout; self.names = names
        self.transposed = transposed?.isEmpty == false ? transposed!.sorted() : nil
        self.shapes = shapes?.isEmpty == false ? shapes : nil
    }

    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try! e.encode(self), as: UTF8.self)
    }

    /// The record text every file in `urls` carries, nil when one has none or they differ: a fusion of imported
    /// models passes it on, so `ligand export` writes it in their layout.
    public static func shared(by urls: [URL]) -> String? {
        let records = urls.map { (try? SafeTensorsFile(url: $0))?.metadata[metadataKey] }
        guard let first = records.first, let r = first, records.allSatisfy({ $0 == r }) else { return nil }
        return r
    }

    /// The record in a file's metadata, nil when it has none; a damaged record is an error naming the file.
    public static func read(_ metadata: [String: String], path: String) throws -> ImportRecord? {
        guard let text = metadata[metadataKey] else { return nil }
        do { return try JSONDecoder().decode(ImportRecord.self, from: Data(text.utf8)) } catch {
            throw ModelFileError.tensor(path: path, reason: "__metadata__['\(metadataKey)'] is not a valid import record (\(error))")
        }
    }
}

/// Why an import was refused: every case names the file and the tensor or flag concerned.
public struct ImportError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ path: String, _ message: String) { self.message = "\(path): \(message)" }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Turns a state_dict in a common layout into a Ligand network (docs/model-files.md "Importing"):
/// PyTorch `nn.Sequential` MLPs (any module path, numbered in order, the last Linear the head), flax/JAX
/// MLPs (`kernel`/`bias`, [in, out]), timm's VisionTransformer, CIFAR-style ResNet-20 (`conv1`, `layerS.B.*`,
/// `fc` or `linear`) and torchvision-style VGG (`features.i`, `classifier`). What cannot be read from the
/// shapes (a square weight's orientation, a ViT's head count, a convolutional net's image size) is asked for.
public enum ModelImport {
    public struct Options: Sendable {
        /// The weight layout; nil: read from the shapes when they allow only one, else refused.
        public var layout: WeightLayout?
        /// The whole architecture, for what the tensors do not say (VGG's pooling); overrides inference.
        public var architecture: Architecture?
        /// Input image [H, W, C]; nil: 28×28×1 where the weights fit it, else asked for.
        public var input: [Int]?
        public var heads: Int?
        public var normalize: Architecture.Normalization?
        /// A prefix every tensor name carries (`module.`, `model.`), removed before mapping.
        public var stripPrefix: String?
        /// A CLIP tower's MLP activation (nil: QuickGELU, OpenAI's CLIP; open_clip's own trainings use GELU).
        public var activation: Architecture.Activation?

        /// The given architecture as the import uses it: the whole of it wins over what the tensors say, and
        /// `input` over its input.
        var given: Architecture? {
            guard var a = architecture else { return nil }
            if let i = input { a.input = i }
            return a
        }
        public init() {}
    }

    public struct Result {
        public let network: Network<Float>
        public let record: ImportRecord
        /// What was inferred rather than given, one line each, for the user to check.
        public let notes: [String]
    }

    public static func convert(_ file: SafeTensorsFile, _ o: Options) throws -> Result {
        let path = file.url.path
        func fail(_ m: String) -> ImportError { ImportError(path, m) }
        var original: [String: String] = [:]   // stripped name → name in the file
        var shapes: [String: [Int]] = [:]
        for e in file.entries {
            var name = e.name
            if let p = o.stripPrefix, !p.isEmpty {
                guard name.hasPrefix(p) else { throw fail("tensor '\(e.name)' does not start with --strip-prefix '\(p)'") }
                name = String(name.dropFirst(p.count))
            }
            guard original.updateValue(e.name, forKey: name) == nil else { throw fail("two tensors are named '\(name)' once the prefix is removed") }
            shapes[name] = e.shape
        }
        guard !original.isEmpty else { throw fail("holds no tensors") }
        if o.activation != nil, o.architecture != nil { throw fail("--activation and --architecture: give the activation in the architecture's JSON (\"activation\": \"quick_gelu\")") }
        var notes: [String] = []
        let towers = o.architecture.map { $0.kind == .vit ? clipTowers(Set(shapes.keys)) : [] } ?? clipTowers(Set(shapes.keys))
        guard towers.count <= 1 else { throw fail("holds \(towers.count) CLIP image towers (\(towers.map { "'\($0)'" }.joined(separator: ", "))); import one file per model") }
        let kind = towers.isEmpty ? o.architecture?.kind ?? detectKind(Set(shapes.keys)) : .vit
        var mlpMapping: [String: String]?   // Ligand name → stripped name; named layouts: the names themselves but for aliases
        var aliases: [String: String] = [:]
        var clipForm = ClipForm()
        var arch: Architecture
        let layout: WeightLayout
        switch kind {
        case .vit where !towers.isEmpty:
            if o.layout == .flax { throw fail("--layout flax is only read for MLPs; open_clip's tower is read in PyTorch's layout") }
            layout = .torch
            (arch, clipForm) = try clip(tower: towers[0], shapes, o, path: path, notes: &notes)
            mlpMapping = clipForm.mapping
        case .mlp:
            let m: [String: String]
            var mo = o
            if mo.input == nil { mo.input = o.architecture?.input }
            (arch, m, layout) = try mlp(shapes, mo, path: path, notes: &notes)
            mlpMapping = m
            // A given architecture is the whole of it: the tensors are then checked against it, by name and shape.
            if let given = o.given { arch = given }
        case .vit, .resnet20, .vgg:
            if o.layout == .flax { throw fail("--layout flax is only read for MLPs; save a \(kind.rawValue) with PyTorch's layout (timm/torchvision names)") }
            layout = .torch
            (arch, aliases) = try named(kind, shapes, o, path: path, notes: &notes)
        }
        if let a = o.activation {
            guard arch.kind == .vit else { throw fail("--activation applies to a ViT; this file holds a \(arch.kind.rawValue)") }
            if towers.isEmpty, o.architecture == nil { arch.activation = a == .gelu ? nil : a }
        }
        if var n = o.normalize {
            // One mean and std stand for every channel.
            if n.mean.count == 1, n.std.count == 1, arch.input.count == 3, arch.input[2] > 1 {
                n = .init(mean: Array(repeating: n.mean[0], count: arch.input[2]), std: Array(repeating: n.std[0], count: arch.input[2]),
                          scale: n.scale, channels: n.channels)
            }
            arch.normalize = n
        }
        let problems = arch.validationErrors()
        guard problems.isEmpty else { throw fail("the inferred architecture is invalid: " + problems.joined(separator: "; ")) }
        guard ModelFile.fits(arch, in: file) else { throw fail("describes a \(arch) larger than the tensors the file holds") }
        let net = try Network<Float>(arch, rng: .drawless)
        let mapping = mlpMapping ?? Dictionary(uniqueKeysWithValues: net.stateDict().map { ($0.name, aliases[$0.name] ?? $0.name) })
        let counterNames = Set(net.batchCounters().map(\.name))
        var tensors: [String: Tensor] = [:], counters: [String: Int64] = [:]
        var names: [String: String] = [:]
        let used = Set(mapping.values).union(clipForm.ignored)
        if let extra = shapes.keys.sorted().first(where: { !used.contains($0) && !counterNames.contains($0) }) {
            throw fail("tensor '\(original[extra]!)' has no place in a \(arch) (the names Ligand reads are in docs/model-files.md)")
        }
        let expected = Dictionary(uniqueKeysWithValues: net.stateDict().map { ($0.name, $0.value.shape) })
        var reshaped: [String: [Int]] = [:]
        for (ligand, source) in mapping.sorted(by: { $0.key < $1.key }) {
            guard let fileName = original[source] else {
                throw fail("tensor '\((o.stripPrefix ?? "") + source)' is missing (a \(arch) needs it; the names Ligand reads are in docs/model-files.md)")
            }
            names[ligand] = fileName
            var t = try file.floats(fileName)
            if (layout == .flax && t.rank == 2) || clipForm.transposed.contains(ligand) {
                guard t.rank == 2 else { throw fail("tensor '\(fileName)' has shape \(t.shape), not a matrix") }
                t = t.transposed2D()
            }
            if let want = expected[ligand], t.shape != want, clipForm.reshaped.contains(ligand), t.count == Architecture.checkedProduct(want) {
                reshaped[ligand] = t.shape
                t = t.reshaped(want)
            }
            tensors[ligand] = t
        }
        for c in counterNames {
            if let fileName = original[c] {
                let v = try file.int64s(fileName)
                guard v.values.count == 1 else { throw fail("tensor '\(fileName)' must hold one value, has shape \(v.shape)") }
                counters[c] = v.values[0]
                names[c] = fileName
            }
        }
        do { try net.load(tensors, counters: counters) } catch let e as NetworkError {
            throw fail(e.description + mappingHint(e, names))
        }
        return Result(network: net, record: ImportRecord(layout: layout, names: names, transposed: Array(clipForm.transposed), shapes: reshaped), notes: notes)
    }

    /// For an error about a Ligand name, the file's own name of that tensor.
    static func mappingHint(_ e: NetworkError, _ names: [String: String]) -> String {
        switch e {
        case .shapeMismatch(let n, _, _), .nonFinite(let n, _), .missingTensor(let n):
            return names[n].map { $0 == n ? "" : " (the file's '\($0)')" } ?? ""
        default: return ""
        }
    }

    static func detectKind(_ names: Set<String>) -> Architecture.Kind {
        if names.contains("cls_token") || names.contains("patch_embed.proj.weight") { return .vit }
        if names.contains("conv1.weight") && names.contains(where: { $0.hasPrefix("layer1.") }) { return .resnet20 }
        if names.contains(where: { $0.hasPrefix("features.") }) { return .vgg }
        return .mlp
    }

    // MARK: - MLP

    /// The module path of a parameter ("net.0" of "net.0.weight", "Dense_1" of "params/Dense_1/kernel") and its role.
    static func splitName(_ n: String) -> (module: String, leaf: String) {
        guard let cut = n.lastIndex(where: { $0 == "." || $0 == "/" }) else { return ("", n) }
        return (String(n[..<cut]), String(n[n.index(after: cut)...]))
    }

    /// Orders module paths as a person would: numbers by value ("layers.10" after "layers.9", "Dense_2" after "Dense_1").
    static func naturalLess(_ a: String, _ b: String) -> Bool {
        func parts(_ s: String) -> [Either] {
            var out: [Either] = [], digits = "", text = ""
            for ch in s {
                if ch.isNumber { if !text.isEmpty { out.append(.text(text)); text = "" }; digits.append(ch) }
                else { if !digits.isEmpty { out.append(.number(Int(digits) ?? .max)); digits = "" }; text.append(ch) }
            }
            if !digits.isEmpty { out.append(.number(Int(digits) ?? .max)) }
            if !text.isEmpty { out.append(.text(text)) }
            return out
        }
        let (pa, pb) = (parts(a), parts(b))
        for (x, y) in zip(pa, pb) where x != y { return x < y }
        return pa.count < pb.count
    }

    enum Either: Equatable, Comparable {
        case number(Int), text(String)
        static func < (l: Either, r: Either) -> Bool {
            switch (l, r) {
            case let (.number(a), .number(b)): return a < b
            case let (.text(a), .text(b)): return a < b
            case (.number, .text): return true
            case (.text, .number): return false
            }
        }
    }

    static func mlp(_ shapes: [String: [Int]], _ o: Options, path: String, notes: inout [String]) throws -> (Architecture, [String: String], WeightLayout) {
        func fail(_ m: String) -> ImportError { ImportError(path, m) }
        var modules: [String: (weight: String?, bias: String?)] = [:]
        for (name, shape) in shapes {
            let (module, leaf) = splitName(name)
            switch leaf {
            case "weight", "kernel", "w", "W":
                guard shape.count == 2 else { throw fail("tensor '\(name)' has shape \(shape); an MLP's weights are matrices (for a CNN or ViT, its module names are in docs/model-files.md)") }
                modules[module, default: (nil, nil)].weight = name
            case "bias", "b":
                guard shape.count == 1 else { throw fail("tensor '\(name)' has shape \(shape); a bias is a vector") }
                modules[module, default: (nil, nil)].bias = name
            default:
                throw fail("tensor '\(name)' is neither a weight (weight, kernel) nor a bias; an MLP is read as numbered Linear/Dense modules")
            }
        }
        let order = modules.keys.sorted(by: naturalLess)
        var layers: [(weight: String, bias: String)] = []
        for m in order {
            guard let w = modules[m]!.weight else { throw fail("module '\(m)' has a bias but no weight") }
            guard let b = modules[m]!.bias else { throw fail("module '\(m)' has no bias ('\(w)' alone); Ligand's Linear layers carry one: save it with bias=True or add zeros") }
            layers.append((w, b))
        }
        guard layers.count >= 2 else { throw fail("an MLP needs at least one hidden layer and a head, found \(layers.count) weight matrix") }
        // Sizes (out, in) of each layer under a layout; the chain must connect and every bias fit.
        func sizes(_ l: WeightLayout) -> [(out: Int, in: Int)]? {
            var out: [(Int, Int)] = []
            for (i, layer) in layers.enumerated() {
                let s = shapes[layer.weight]!
                let (o, n) = l == .torch ? (s[0], s[1]) : (s[1], s[0])
                guard shapes[layer.bias]! == [o] else { return nil }
                if i > 0 && out[i - 1].0 != n { return nil }
                out.append((o, n))
            }
            return out
        }
        let layout: WeightLayout
        if let given = o.layout {
            layout = given
            guard sizes(given) != nil else {
                throw fail("under --layout \(given.rawValue) (\(given == .torch ? "[out, in]" : "[in, out]")) the layers' shapes do not connect: " + layers.map { "\(shapes[$0.weight]!)" }.joined(separator: ", "))
            }
        } else if let square = layers.first(where: { shapes[$0.weight]![0] == shapes[$0.weight]![1] }) {
            let s = shapes[square.weight]!
            throw fail("tensor '\(square.weight)' is square (\(s[0])×\(s[1])), so its shape cannot tell [out, in] from [in, out]: pass --layout torch (PyTorch's Linear.weight, [out, in]) or --layout flax (JAX/flax's Dense kernel, [in, out])")
        } else {
            let fits = WeightLayout.allCases.filter { sizes($0) != nil }
            guard fits.count == 1 else {
                throw fail(fits.isEmpty ? "the layers' shapes connect in neither layout: " + layers.map { "\(shapes[$0.weight]!)" }.joined(separator: ", ")
                           : "the layers' shapes connect in both layouts: pass --layout torch ([out, in]) or --layout flax ([in, out])")
            }
            layout = fits[0]
            notes.append("layout: \(layout.rawValue) (\(layout == .torch ? "[out, in]" : "[in, out]")), the only one in which the shapes connect")
        }
        let s = sizes(layout)!
        let input = try imageShape(o.input, features: s[0].in, path: path, notes: &notes)
        guard Architecture.checkedProduct(input) == s[0].in else {
            throw fail("--input \(input.map(String.init).joined(separator: ",")) makes \(Architecture.checkedProduct(input).map(String.init) ?? "too many") values per image, the first layer ('\(layers[0].weight)') takes \(s[0].in)")
        }
        var mapping: [String: String] = [:]
        for (i, l) in layers.enumerated() {
            let name = i == layers.count - 1 ? "head" : "layers.\(2 * i)"
            mapping["\(name).weight"] = l.weight
            mapping["\(name).bias"] = l.bias
        }
        let arch = Architecture.mlp(hidden: s.dropLast().map(\.out), input: input, classes: s.last!.out)
        notes.append("architecture: \(arch) from \(layers.count) layers (\(order.first!) … \(order.last!), the last the head)")
        return (arch, mapping, layout)
    }

    /// The input image: as given (checked against the first layer), or 28×28×1 when `features` is 784.
    static func imageShape(_ given: [Int]?, features: Int, channels: Int? = nil, path: String, notes: inout [String]) throws -> [Int] {
        if let given { return given }
        if features == 784 || channels == 1 {
            notes.append("input: 28×28×1 (the MNIST family's images; pass --input H,W,C for another size)")
            return [28, 28, 1]
        }
        throw ImportError(path, "the image size cannot be read from the weights (\(channels.map { "\($0) input channels" } ?? "\(features) input features")): pass --input H,W,C")
    }

    // MARK: - Named layouts (timm ViT, ResNet-20, VGG)

    /// The architecture, and the file's names of the tensors it holds under another name (the head's aliases).
    static func named(_ kind: Architecture.Kind, _ shapes: [String: [Int]], _ o: Options, path: String, notes: inout [String]) throws -> (Architecture, aliases: [String: String]) {
        func fail(_ m: String) -> ImportError { ImportError(path, m) }
        func shape(_ n: String) throws -> [Int] {
            guard let s = shapes[n] else { throw fail("tensor '\(n)' is missing (a \(kind.rawValue) is read by its \(kind == .vit ? "timm" : "torchvision") names)") }
            return s
        }
        // Head aliases: the CIFAR ResNets' `linear`, a one-layer VGG classifier saved as nn.Sequential.
        var aliases: [String: String] = [:]
        let head = kind == .vit ? "head" : kind == .resnet20 ? "fc" : "classifier"
        if shapes["\(head).weight"] == nil {
            let candidates = kind == .resnet20 ? ["linear"] : kind == .vgg ? shapes.keys.filter { $0.hasPrefix("classifier.") && $0.hasSuffix(".weight") }.map { String($0.dropLast(7)) } : []
            if candidates.count == 1, shapes["\(candidates[0]).weight"] != nil {
                aliases["\(head).weight"] = "\(candidates[0]).weight"
                aliases["\(head).bias"] = "\(candidates[0]).bias"
            } else if candidates.count > 1 {
                throw fail("the classifier has \(candidates.count) Linear layers (\(candidates.sorted().joined(separator: ", "))); Ligand's VGG has one, on globally averaged features")
            }
        }
        let headWeight = try shape(aliases["\(head).weight"] ?? "\(head).weight")
        guard headWeight.count == 2 else { throw fail("the head's weight has shape \(headWeight), not [classes, features]") }
        var arch: Architecture
        if let given = o.given {
            arch = given
        } else {
            switch kind {
            case .vit:
                let cls = try shape("cls_token"), pos = try shape("pos_embed"), proj = try shape("patch_embed.proj.weight"), fc1 = try shape("blocks.0.mlp.fc1.weight")
                guard cls.count == 3, pos.count == 3, proj.count == 4, proj[2] == proj[3], fc1.count == 2 else {
                    throw fail("cls_token \(cls), pos_embed \(pos), patch_embed.proj.weight \(proj) are not timm's shapes")
                }
                let d = cls[2], p = proj[2]
                let input = try vitInput(o.input, positions: ("pos_embed", pos, pos[1]), patches: ("patch_embed.proj.weight", proj), path: path, notes: &notes)
                var depth = 0
                while shapes["blocks.\(depth).attn.qkv.weight"] != nil { depth += 1 }
                guard let heads = o.heads else {
                    throw fail("the number of attention heads cannot be read from the tensors (qkv is [3d, d] for any head count): pass --heads N")
                }
                arch = .vit(patch: p, width: d, depth: depth, heads: heads, mlpRatio: Double(fc1[0]) / Double(d), input: input, classes: headWeight[0])
            case .resnet20:
                let conv1 = try shape("conv1.weight")
                guard conv1.count == 4, conv1[0] % 16 == 0 else { throw fail("conv1.weight has shape \(conv1), not [16·k, C, 3, 3]") }
                if shapes["layer1.3.conv1.weight"] != nil || shapes["layer4.0.conv1.weight"] != nil {
                    throw fail("has more blocks than ResNet-20 (three stages of three); only ResNet-20 is supported")
                }
                arch = .resnet20(width: conv1[0] / 16, input: try imageShape(o.input, features: 0, channels: conv1[1], path: path, notes: &notes), classes: headWeight[0])
            case .vgg:
                throw fail("a VGG's pooling layers hold no tensors, so its layout cannot be read from them: pass --architecture '{\"kind\":\"vgg\",\"config\":[32,32,\"M\",…],\"input\":[H,W,C],\"classes\":N}'")
            case .mlp: preconditionFailure()
            }
            notes.append("architecture: \(arch)")
        }
        return (arch, aliases)
    }

    /// A ViT's image: as given, or the square grid of the position embedding's patch tokens (one class token) of the
    /// patch projection's [d, C, p, p] kernels; implausible sizes are refused before anything is allocated.
    static func vitInput(_ given: [Int]?, positions: (name: String, shape: [Int], count: Int), patches: (name: String, shape: [Int]),
                         path: String, notes: inout [String]) throws -> [Int] {
        let tokens = positions.count - 1, p = patches.shape[2], channels = patches.shape[1]
        guard tokens >= 1, tokens <= 1 << 24, p >= 1, p <= 1 << 12 else {
            throw ImportError(path, "\(positions.name) \(positions.shape) and \(patches.name) \(patches.shape) do not describe patch tokens of a plausible image")
        }
        if let given { return given }
        let side = Int(Double(tokens).squareRoot().rounded())
        guard side * side == tokens else { throw ImportError(path, "\(positions.name)'s \(tokens) patch tokens are not a square grid: pass --input H,W,C") }
        notes.append("input: \(side * p)×\(side * p)×\(channels) (a square grid of \(tokens) patches of \(p)×\(p))")
        return [side * p, side * p, channels]
    }

    // MARK: - open_clip's image tower

    /// How an open_clip tower's tensors become Ligand's: the names, which matrices are transposed, which tensors
    /// change shape (same elements), and the tensors outside the tower left behind (the text tower, logit_scale).
    struct ClipForm {
        var mapping: [String: String] = [:]
        var transposed: Set<String> = []
        var reshaped: Set<String> = []
        var ignored: Set<String> = []
    }

    /// The prefixes (e.g. `visual.`, `image_encoder.model.visual.`, or none) under which a file holds open_clip's
    /// image tower: where `class_embedding` sits beside `conv1.weight`.
    static func clipTowers(_ names: Set<String>) -> [String] {
        names.filter { $0.hasSuffix("class_embedding") }.map { String($0.dropLast("class_embedding".count)) }
            .filter { ($0.isEmpty || $0.hasSuffix(".")) && names.contains($0 + "conv1.weight") }.sorted()
    }

    /// open_clip's `VisionTransformer` (OpenAI's CLIP layout) as Ligand's ViT with the CLIP variants, and the
    /// classification head as task_vectors' `classification_head` or a plain `head`.
    static func clip(tower p: String, _ shapes: [String: [Int]], _ o: Options, path: String, notes: inout [String]) throws -> (Architecture, ClipForm) {
        func fail(_ m: String) -> ImportError { ImportError(path, m) }
        func shape(_ n: String) throws -> [Int] {
            guard let s = shapes[n] else { throw fail("tensor '\(n)' is missing (open_clip's image tower is read by its names: docs/model-files.md)") }
            return s
        }
        var f = ClipForm()
        let cls = try shape(p + "class_embedding"), pos = try shape(p + "positional_embedding"), conv = try shape(p + "conv1.weight")
        let proj = try shape(p + "proj"), fc = try shape(p + "transformer.resblocks.0.mlp.c_fc.weight")
        guard cls.count == 1, pos.count == 2, pos[1] == cls[0], conv.count == 4, conv[0] == cls[0], conv[2] == conv[3], proj.count == 2,
              proj[0] == cls[0], fc.count == 2 else {
            throw fail("class_embedding \(cls), positional_embedding \(pos), conv1.weight \(conv), proj \(proj) are not open_clip's shapes ([d], [T, d], [d, C, p, p], [d, e])")
        }
        let d = cls[0], patch = conv[2]
        let input = try vitInput(o.input, positions: (p + "positional_embedding", pos, pos[0]), patches: (p + "conv1.weight", conv), path: path, notes: &notes)
        var depth = 0
        while shapes["\(p)transformer.resblocks.\(depth).attn.in_proj_weight"] != nil { depth += 1 }
        guard let heads = o.heads else {
            throw fail("the number of attention heads cannot be read from the tensors (in_proj_weight is [3d, d] for any head count; open_clip's ViTs have d/64): pass --heads N")
        }
        let headNames = ["classification_head", "head"].filter { shapes["\($0).weight"] != nil }
        guard headNames.count == 1 else {
            throw fail(headNames.isEmpty
                       ? "has no classification head: add the task's head as 'classification_head.weight' [classes, \(proj[1])] and '.bias' (task_vectors' layout) or 'head.weight'/'head.bias'"
                       : "has two classification heads ('classification_head' and 'head'); keep one")
        }
        let head = headNames[0], headWeight = try shape(head + ".weight")
        guard headWeight.count == 2, headWeight[1] == proj[1] else { throw fail("'\(head).weight' has shape \(headWeight), not [classes, \(proj[1])] (proj's width)") }
        guard shapes[head + ".bias"] != nil else { throw fail("'\(head).bias' is missing; Ligand's head carries one: save zeros if yours has none") }
        var arch = Architecture.clip(patch: patch, width: d, depth: depth, heads: heads, mlpRatio: Double(fc[0]) / Double(d), embed: proj[1],
                                     input: input, classes: headWeight[0])
        if let given = o.given { arch = given }
        else {
            arch.activation = o.activation == .gelu ? nil : .quickGELU
            if o.activation == nil { notes.append("activation: QuickGELU (OpenAI's CLIP weights; pass --activation gelu for open_clip's own trainings)") }
            notes.append("architecture: \(arch) (open_clip's image tower under '\(p)', LayerNorm ε 1e-5, features scaled to unit length before the head)")
        }
        // Ligand's name → the tower's.
        var m = ["cls_token": "class_embedding", "pos_embed": "positional_embedding", "patch_embed.proj.weight": "conv1.weight",
                 "norm_pre.weight": "ln_pre.weight", "norm_pre.bias": "ln_pre.bias", "norm.weight": "ln_post.weight", "norm.bias": "ln_post.bias",
                 "proj.weight": "proj"]
        let block = ["norm1": "ln_1", "attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias", "attn.proj": "attn.out_proj",
                     "norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"]
        for i in 0..<depth {
            for (ours, theirs) in block {
                if ours.hasSuffix(".weight") || ours.hasSuffix(".bias") { m["blocks.\(i).\(ours)"] = "transformer.resblocks.\(i).\(theirs)"; continue }
                for leaf in ["weight", "bias"] { m["blocks.\(i).\(ours).\(leaf)"] = "transformer.resblocks.\(i).\(theirs).\(leaf)" }
            }
        }
        f.mapping = m.mapValues { p + $0 }
        f.mapping["head.weight"] = head + ".weight"
        f.mapping["head.bias"] = head + ".bias"
        f.transposed = ["proj.weight"]
        f.reshaped = ["cls_token", "pos_embed"]
        // A whole CLIP (or task_vectors' ImageClassifier) also holds the text tower: left behind, and said so.
        if !p.isEmpty {
            let mine = Set(f.mapping.values)
            f.ignored = Set(shapes.keys.filter { !$0.hasPrefix(p) && !mine.contains($0) })
            if let example = f.ignored.sorted().first {
                notes.append("left behind: \(f.ignored.count) tensors outside the image tower '\(p)' (e.g. '\(example)'); `ligand export` writes the tower and the head only")
            }
        }
        return (arch, f)
    }

    // MARK: - Export

    /// The network's tensors under the record's names and in its layout (flax matrices transposed back).
    public static func exported(_ net: Network<Float>, record: ImportRecord, path: String) throws -> [(name: String, value: TensorPayload)] {
        var out: [(name: String, value: TensorPayload)] = []
        let transposed = Set(record.transposed ?? [])
        for (name, t) in net.stateDict() {
            guard let original = record.names[name] else {
                throw ImportError(path, "the import record has no name for tensor '\(name)' (the model is not of the architecture that was imported)")
            }
            var v = (record.layout == .flax && t.rank == 2) || (transposed.contains(name) && t.rank == 2) ? t.transposed2D() : t
            if let shape = record.shapes?[name] {
                guard Architecture.checkedProduct(shape) == v.count else {
                    throw ImportError(path, "the import record's shape \(shape) for tensor '\(name)' does not hold its \(v.count) elements")
                }
                v = v.reshaped(shape)
            }
            out.append((original, .float32(v)))
        }
        for (name, v) in net.batchCounters() { out.append((record.names[name] ?? name, .int64([v], shape: []))) }
        return out
    }
}

extension TensorOf where Scalar == Float {
    /// [a, b] → [b, a]: a flax kernel as PyTorch's weight and back.
    func transposed2D() -> Tensor {
        let (r, c) = (shape[0], shape[1])
        var out = [Float](repeating: 0, count: r * c)
        withUnsafeBufferPointer { p in
            for i in 0..<r { for j in 0..<c { out[j * r + i] = p[i * c + j] } }
        }
        return Tensor(shape: [c, r], storage: out)
    }
}
