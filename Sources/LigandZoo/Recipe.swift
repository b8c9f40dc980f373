import Foundation
import LigandFormats
import LigandNN

/// A recipe that cannot be used, naming the file and the key path at fault.
public struct RecipeError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let file: String
    public let path: String
    public let message: String

    public init(file: String, path: String, message: String) {
        self.file = file; self.path = path; self.message = message
    }

    public var description: String { path.isEmpty ? "\(file): \(message)" : "\(file): \(path): \(message)" }
    public var errorDescription: String? { description }
}

/// How the models of a suite relate to one another (design.md, "Benchmark suites").
public enum SuiteKind: String, Codable, Sendable, CaseIterable {
    /// Diverse origin: N models per architecture from different seeds on the whole training split.
    case seeds
    /// Diverse origin on different data: models trained on disjoint class subsets or Dirichlet shards.
    case splits
    /// Shared origin, multi-task: a pretrained backbone and one expert per task under a frozen head.
    case tasks
}

/// One architecture of a suite, with optional per-architecture training overrides.
public struct ArchitectureSpec: Codable, Equatable, Sendable {
    public var kind: Architecture.Kind
    public var hidden: [Int]?
    /// VGG layers: channel counts, 0 standing for a 2×2 max-pool (kept numeric so the canonical JSON is simple).
    public var config: [Int]?
    public var width: Int?
    /// VGG only: BatchNorm after every convolution (nil: none, and the recipe's hash is unchanged).
    public var batchNorm: Bool?
    /// ViT only (nil: `Architecture.vit`'s defaults); `width` is then the embedding width.
    public var patch: Int?, depth: Int?, heads: Int?, mlpRatio: Double?
    public var epochs: Int?
    public var lr: Double?

    /// The network for `classes` outputs on `input` images.
    public func architecture(input: [Int], classes: Int) -> Architecture {
        switch kind {
        case .mlp: return .mlp(hidden: hidden ?? [512, 512], input: input, classes: classes)
        case .vgg: return .vgg((config ?? [32, 32, 0, 64, 64, 0, 128, 128, 0]).map { $0 == 0 ? .pool : .conv($0) },
                               input: input, classes: classes, batchNorm: batchNorm == true)
        case .resnet20: return .resnet20(width: width ?? 1, input: input, classes: classes)
        case .vit:
            let d = Architecture.vit()
            return .vit(patch: patch ?? d.patch!, width: width ?? d.width!, depth: depth ?? d.depth!, heads: heads ?? d.heads!,
                        mlpRatio: mlpRatio ?? d.mlpRatio!, input: input, classes: classes)
        }
    }

    /// A short file-name-safe label: "mlp", "vgg", "resnet20".
    public var label: String { kind.rawValue }
}

/// One way of cutting the training split into shards for a `splits` suite.
public struct PartitionSpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case classes, dirichlet }
    public var type: Kind
    public var parts: Int
    /// Dirichlet concentration (dirichlet only).
    public var alpha: Double?
}

/// The pretraining of a `tasks` suite's shared backbone.
public struct PretrainSpec: Codable, Equatable, Sendable {
    /// Training images (original labels) reserved for pretraining; no expert sees them.
    public var images: Int
    public var epochs: Int
    public var lr: Double
    /// Fine-label task transforms whose inputs the backbone also pretrains on: the pretraining images are dealt
    /// round-robin over the original view and these; nil → the original images only.
    public var views: [String]?
    /// The backbone's own optimiser and weight decay; nil → the suite's (which the experts fine-tune with), so a
    /// backbone pretrained with AdamW can be fine-tuned with SGD.
    public var optimizer: OptimizerKind?
    public var weightDecay: Double?
}

/// A tasks suite's linear probe: each expert's head trained on the frozen pretrained backbone before fine-tuning.
public struct ProbeSpec: Codable, Equatable, Sendable {
    public var epochs: Int
    public var lr: Double
}

/// A tasks suite's feature anchor: each expert's features on `images` of the backbone's own pretraining images (in its
/// pretraining views) pulled towards the pretrained backbone's, with this loss weight (`FeatureAnchor`).
public struct AnchorSpec: Codable, Equatable, Sendable {
    public var images: Int
    public var weight: Double
}

/// A suite with every default resolved: its canonical JSON is what the cache key hashes.
public struct SuiteSpec: Codable, Equatable, Sendable {
    public var name: String
    public var kind: SuiteKind
    public var seed: UInt64
    public var calibration: Int
    public var architectures: [ArchitectureSpec]
    public var epochs: Int
    public var lr: Double
    public var batchSize: Int
    public var momentum: Double
    public var weightDecay: Double
    /// nil → SGD; kept optional so the cache key of a suite that does not name one is unchanged.
    public var optimizer: OptimizerKind?
    /// Augmentation (random flips; shifts of up to `shift` pixels); nil → the architecture's default.
    public var flip: Bool?
    public var shift: Int?
    /// Label smoothing ε of the cross-entropy; nil → none (and the cache key of a suite without it unchanged).
    public var labelSmoothing: Double?
    /// Use only this many images of the training split (a seeded subset); nil → all of it.
    public var trainImages: Int?
    /// seeds: models per architecture.
    public var models: Int?
    /// splits: the partitions, each giving `parts` models per architecture.
    public var partitions: [PartitionSpec]?
    /// tasks: task names (TaskTransform raw values), pretraining, few-shot head settings.
    public var tasks: [String]?
    public var pretrain: PretrainSpec?
    public var shots: Int?
    public var logitScale: Double?
    /// tasks: images each expert trains on (a seeded subset of the expert pool); nil → the whole pool.
    public var expertImages: Int?
    /// tasks: the backbone parameters each expert fine-tunes, as substrings of their timm names (e.g. ".attn." for
    /// attention only); nil → all of them. The head is frozen either way.
    public var fineTune: [String]?
    /// tasks: LP-FT (Kumar et al., ICLR 2022): the prototype head first trained alone on the frozen backbone, then
    /// frozen while the backbone fine-tunes; nil → the prototype head as it is (and the cache key unchanged).
    public var probe: ProbeSpec?
    /// tasks: feature distillation on the backbone's pretraining images while each expert fine-tunes (ZSCL); nil → none
    /// (and the cache key unchanged).
    public var anchor: AnchorSpec?

    /// The canonical definition: sorted-key JSON of every resolved setting.
    public var canonicalJSON: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }

    /// The training configuration of one model of this suite.
    public func trainingConfig(for arch: ArchitectureSpec, seed: UInt64) -> TrainingConfig {
        var c = TrainingConfig()
        c.epochs = arch.epochs ?? epochs
        c.learningRate = arch.lr ?? lr
        c.batchSize = batchSize
        c.momentum = momentum
        c.weightDecay = weightDecay
        c.optimizer = optimizer ?? .sgd
        c.flip = flip ?? false
        c.shift = shift ?? (arch.kind == .mlp ? 0 : 2)
        c.labelSmoothing = labelSmoothing
        c.seed = seed
        return c
    }

    /// The training configuration of a tasks suite's backbone: the suite's, with `pretrain`'s epochs, learning
    /// rate and (when given) optimiser and weight decay.
    public func pretrainingConfig(for arch: ArchitectureSpec, seed: UInt64) -> TrainingConfig {
        var c = trainingConfig(for: arch, seed: seed)
        guard let pre = pretrain else { return c }
        c.epochs = pre.epochs; c.learningRate = pre.lr
        c.optimizer = pre.optimizer ?? c.optimizer; c.weightDecay = pre.weightDecay ?? c.weightDecay
        return c
    }
}

/// The limits every count of a recipe is checked against.
fileprivate typealias L = RecipeLimits

/// A recipe file: named suites.
public struct Recipe: Sendable {
    public let path: String
    public let suites: [SuiteSpec]

    public func suite(named name: String) throws -> SuiteSpec {
        guard let s = suites.first(where: { $0.name == name }) else {
            throw RecipeError(file: path, path: "suites", message: "no suite named '\(name)' (the recipe has \(suites.map(\.name).joined(separator: ", ")))")
        }
        return s
    }

    public static func load(path: String) throws -> Recipe {
        try parse(try RecipeYAML.readText(path: path), path: path)
    }

    public static func parse(_ text: String, path: String) throws -> Recipe {
        let top = try Fields(try RecipeYAML.load(text, file: path), file: path, path: "")
        let suitesNode = try top.map("suites", required: true)!
        try top.finish()
        guard !suitesNode.keys.isEmpty else { throw RecipeError(file: path, path: "suites", message: "names no suite") }
        var suites: [SuiteSpec] = []
        for name in suitesNode.keys {
            guard name.range(of: "^[A-Za-z0-9][A-Za-z0-9_-]*$", options: .regularExpression) != nil else {
                throw RecipeError(file: path, path: "suites.\(name)", message: "a suite name may hold only letters, digits, '-' and '_'")
            }
            suites.append(try parseSuite(name: name, try suitesNode.map(name, required: true)!))
        }
        try suitesNode.finish()
        return Recipe(path: path, suites: suites)
    }

    static func parseSuite(name: String, _ f: Fields) throws -> SuiteSpec {
        let kind: SuiteKind = try f.choice("kind", required: true)!
        var archs: [ArchitectureSpec] = []
        let archItems = try f.list("architectures", required: true)!
        guard !archItems.isEmpty else { throw f.error("architectures", "must name at least one architecture") }
        for (i, item) in archItems.enumerated() {
            archs.append(try parseArchitecture(item, file: f.file, path: f.sub("architectures[\(i)]")))
        }
        let labels = archs.map(\.label)
        if Set(labels).count != labels.count {
            throw f.error("architectures", "names an architecture kind twice (\(labels.joined(separator: ", "))); model names use the kind")
        }
        var s = SuiteSpec(
            name: name, kind: kind,
            seed: UInt64(try f.int("seed", min: 0) ?? 0),
            calibration: try f.int("calibration", min: 0, max: L.trainingImages - 1) ?? 5000,
            architectures: archs,
            epochs: try f.int("epochs", min: 1, max: L.maxEpochs) ?? 3,
            lr: try f.double("lr", positive: true) ?? 0.05,
            batchSize: try f.int("batch_size", min: 1, max: L.maxBatchSize) ?? 128,
            momentum: try f.double("momentum", min: 0, below: 1) ?? 0.9,
            weightDecay: try f.double("weight_decay", min: 0) ?? 5e-4,
            flip: try f.bool("flip"), shift: try f.int("shift", min: 0, max: L.maxShift),
            trainImages: try f.int("train_images", min: 1, max: L.trainingImages))
        if let v: OptimizerKind = try f.choice("optimizer") {
            s.optimizer = v == .sgd ? nil : v   // the default, written out, keeps the cache key
        }
        if let e = try f.double("label_smoothing", min: 0, below: 1) { s.labelSmoothing = e == 0 ? nil : e }
        switch kind {
        case .seeds:
            s.models = try f.int("models", min: 1, max: L.maxModels, required: true)
        case .splits:
            let items = try f.list("partitions", required: true)!
            guard !items.isEmpty else { throw f.error("partitions", "must list at least one partition") }
            s.partitions = try items.enumerated().map { i, item in
                let p = try Fields(item, file: f.file, path: f.sub("partitions[\(i)]"))
                let t = try p.string("type", required: true)!
                guard let type = PartitionSpec.Kind(rawValue: t) else { throw p.error("type", "must be 'classes' or 'dirichlet', got '\(t)'") }
                let parts = try p.int("parts", min: 2, max: L.maxModels, required: true)!
                var alpha: Double?
                if type == .dirichlet { alpha = try p.double("alpha", positive: true) ?? 0.5 }
                else if type == .classes && parts > 10 { throw p.error("parts", "must be at most the number of classes (10), got \(parts)") }
                try p.finish()
                return PartitionSpec(type: type, parts: parts, alpha: alpha)
            }
        case .tasks:
            let names: [Any] = try f.list("tasks", required: false) ?? TaskTransform.standard.map(\.rawValue)
            s.tasks = try transformNames(names, f, "tasks", allowed: TaskTransform.allCases, noun: ("task", "task")) { "one of \($0)" }
            let p = try f.map("pretrain", required: true)!
            s.pretrain = PretrainSpec(images: try p.int("images", min: 1, max: L.trainingImages - 1, required: true)!,
                                      epochs: try p.int("epochs", min: 1, max: L.maxEpochs) ?? 3,
                                      lr: try p.double("lr", positive: true) ?? 0.05)
            s.pretrain!.optimizer = try p.choice("optimizer")
            s.pretrain!.weightDecay = try p.double("weight_decay", min: 0)
            if let items = try p.list("views", required: false) {
                s.pretrain!.views = try transformNames(items, p, "views", allowed: TaskTransform.allCases.filter { $0.classes == 10 },
                                                       noun: ("task transform", "view")) { "a fine-label task transform (\($0))" }
            }
            // The pretraining images come out of what calibration leaves, and the experts need some left over.
            if s.pretrain!.images + s.calibration >= L.trainingImages {
                throw p.error("images", "\(s.pretrain!.images) pretraining images and the \(s.calibration) calibration images leave none of the \(L.grouped(L.trainingImages)) training images for the experts")
            }
            try p.finish()
            s.shots = try f.int("shots", min: 1, max: L.trainingImages) ?? 10
            s.logitScale = try f.double("logit_scale", positive: true) ?? 10
            s.expertImages = try f.int("expert_images", min: 1, max: L.trainingImages)
            if let q = try f.map("probe") {
                s.probe = ProbeSpec(epochs: try q.int("epochs", min: 1, max: L.maxEpochs, required: true)!,
                                    lr: try q.double("lr", positive: true) ?? 1e-3)
                try q.finish()
            }
            if let a = try f.map("anchor") {
                let images = try a.int("images", min: 1, max: L.trainingImages, required: true)!
                if images > s.pretrain!.images {
                    throw a.error("images", "must be at most the \(s.pretrain!.images) pretraining images it is drawn from, got \(images)")
                }
                s.anchor = AnchorSpec(images: images, weight: try a.double("weight", positive: true, below: 1e6) ?? 1)
                try a.finish()
            }
            if let items = try f.list("fine_tune", required: false) {
                guard !items.isEmpty, items.count <= L.maxLayers else {
                    throw f.error("fine_tune", "must list 1...\(L.maxLayers) parameter-name substrings, got \(items.count)")
                }
                s.fineTune = try items.enumerated().map { i, item in
                    guard let str = item as? String, !str.isEmpty, str.utf8.count <= 256 else {
                        throw RecipeError(file: f.file, path: f.sub("fine_tune[\(i)]"),
                                          message: "must be a non-empty parameter-name substring such as '.attn.', got \(describe(item))")
                    }
                    return str
                }
            }
            if archs.contains(where: { $0.kind == .resnet20 }) {
                throw f.error("architectures", "resnet20 is not supported in a tasks suite (its BatchNorm statistics do not merge plainly); use mlp or vgg")
            }
        }
        try f.finish()
        try checkModelCount(s, f)
        return s
    }

    /// A list of task-transform names at `key`: not empty, each one of `allowed` (`expected` words the list for the
    /// message), none twice; `noun` names an item in the empty and the twice messages.
    static func transformNames(_ items: [Any], _ f: Fields, _ key: String, allowed: [TaskTransform], noun: (one: String, twice: String),
                               expected: (String) -> String) throws -> [String] {
        guard !items.isEmpty else { throw f.error(key, "must list at least one \(noun.one)") }
        let names = try items.enumerated().map { i, n -> String in
            guard let str = n as? String, let t = TaskTransform(rawValue: str), allowed.contains(t) else {
                throw RecipeError(file: f.file, path: f.sub("\(key)[\(i)]"),
                                  message: "must be \(expected(allowed.map(\.rawValue).joined(separator: ", "))), got \(describe(n))")
            }
            return str
        }
        if Set(names).count != names.count { throw f.error(key, "lists a \(noun.twice) twice") }
        return names
    }

    /// The suite's models over every architecture, counted without building the job list.
    static func checkModelCount(_ s: SuiteSpec, _ f: Fields) throws {
        let key: String, perArchitecture: Int
        switch s.kind {
        case .seeds: key = "models"; perArchitecture = s.models ?? 0
        case .splits: key = "partitions"; perArchitecture = (s.partitions ?? []).reduce(0) { L.sum($0, $1.parts) ?? Int.max }
        case .tasks: key = "tasks"; perArchitecture = (s.tasks?.count ?? 0) + 1
        }
        let total = L.product(perArchitecture, s.architectures.count) ?? Int.max
        guard total <= L.maxModels else {
            throw f.error(key, "asks for \(L.grouped(total)) models (\(s.architectures.count) architecture(s) × \(L.grouped(perArchitecture))), more than the limit of \(L.grouped(L.maxModels)) per suite")
        }
    }

    static func parseArchitecture(_ node: Any, file: String, path: String) throws -> ArchitectureSpec {
        if let name = node as? String {
            guard let kind = Architecture.Kind(rawValue: name) else {
                throw RecipeError(file: file, path: path, message: "must be \(Architecture.Kind.allCases.map(\.rawValue).joined(separator: ", ")) (or a map with kind:), got '\(name)'")
            }
            return ArchitectureSpec(kind: kind)
        }
        let f = try Fields(node, file: file, path: path)
        let k = try f.string("kind", required: true)!
        guard let kind = Architecture.Kind(rawValue: k) else { throw f.error("kind", "must be \(Architecture.Kind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(k)'") }
        var spec = ArchitectureSpec(kind: kind)
        switch kind {
        case .mlp: spec.hidden = try f.intList("hidden", min: 1, max: L.maxWidth, maxCount: L.maxLayers)
        case .vgg:
            if let items = try f.list("config", required: false) {
                guard items.count <= L.maxLayers else { throw f.error("config", "lists \(items.count) layers, more than the limit of \(L.maxLayers)") }
                spec.config = try items.enumerated().map { i, item in
                    if let s = item as? String, s == "M" { return 0 }
                    if !(item is Bool), let n = item as? Int, n > 0, n <= L.maxWidth { return n }
                    throw RecipeError(file: file, path: f.sub("config[\(i)]"), message: "must be a channel count in 1...\(L.maxWidth) or \"M\", got \(describe(item))")
                }
                guard spec.config!.contains(where: { $0 > 0 }) else { throw f.error("config", "needs at least one convolution") }
            }
            spec.batchNorm = try f.bool("batch_norm") == true ? true : nil
        case .resnet20: spec.width = try f.int("width", min: 1, max: L.maxResNetWidth)
        case .vit:
            spec.width = try f.int("width", min: 1, max: L.maxWidth)
            spec.patch = try f.int("patch", min: 1, max: 28)
            spec.depth = try f.int("depth", min: 1, max: L.maxLayers)
            spec.heads = try f.int("heads", min: 1, max: L.maxWidth)
            spec.mlpRatio = try f.double("mlp_ratio", positive: true, below: 64.000001)
        }
        spec.epochs = try f.int("epochs", min: 1, max: L.maxEpochs)
        spec.lr = try f.double("lr", positive: true)
        try f.finish()
        // The recipe's own weight limit (tighter than the architecture's) speaks first, in weights.
        let arch = spec.architecture(input: [28, 28, 1], classes: 10)
        let weights = L.weightCount(arch)
        guard let weights, weights <= L.maxWeights else {
            throw RecipeError(file: file, path: path, message: "has \(weights.map(L.grouped) ?? "more than \(L.grouped(Int.max))") weights, more than the limit of \(L.grouped(L.maxWeights)) per network")
        }
        let problems = arch.validationErrors()
        guard problems.isEmpty else { throw RecipeError(file: file, path: path, message: problems.joined(separator: "; ")) }
        return spec
    }
}

func describe(_ v: Any?) -> String {
    guard let v else { return "nothing" }
    if let s = v as? String { return "'\(s)'" }
    if v is [Any] { return "a list" }
    if v is [AnyHashable: Any] { return "a map" }
    return "\(v)"
}

/// A YAML mapping being decoded strictly: every key read is remembered, and `finish` rejects the rest.
public final class Fields {
    public let file: String
    public let path: String
    public let values: [String: Any]
    private var used: Set<String> = []

    /// The top-level mapping of a YAML file, errors naming the file.
    public static func load(path: String) throws -> Fields {
        try parse(try RecipeYAML.readText(path: path), file: path)
    }

    /// The top-level mapping of YAML text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws -> Fields {
        try Fields(try RecipeYAML.load(text, file: file), file: file, path: "")
    }

    public init(_ node: Any?, file: String, path: String) throws {
        self.file = file; self.path = path
        guard let dict = node as? [AnyHashable: Any] else {
            throw RecipeError(file: file, path: path, message: "must be a map of keys to values, got \(describe(node))")
        }
        var v: [String: Any] = [:]
        for (k, value) in dict {
            guard let key = k as? String else { throw RecipeError(file: file, path: path, message: "key \(k) is not a string") }
            v[key] = value
        }
        values = v
    }

    public var keys: [String] { values.keys.sorted() }
    /// A YAML value as an error message shows it ('text', a list, a map, 3).
    public static func describeValue(_ v: Any?) -> String { describe(v) }
    public func sub(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    public func error(_ key: String, _ message: String) -> RecipeError { RecipeError(file: file, path: sub(key), message: message) }

    private func raw(_ key: String, required: Bool) throws -> Any? {
        used.insert(key)
        guard let v = values[key], !(v is NSNull) else {
            if required { throw RecipeError(file: file, path: sub(key), message: "is required") }
            return nil
        }
        return v
    }

    public func finish() throws {
        let unknown = Set(values.keys).subtracting(used).sorted()
        if let first = unknown.first {
            throw RecipeError(file: file, path: sub(first), message: "unknown key (allowed here: \(used.sorted().joined(separator: ", ")))")
        }
    }

    public func map(_ key: String, required: Bool = false) throws -> Fields? {
        guard let v = try raw(key, required: required) else { return nil }
        return try Fields(v, file: file, path: sub(key))
    }

    public func list(_ key: String, required: Bool = false) throws -> [Any]? {
        guard let v = try raw(key, required: required) else { return nil }
        guard let l = v as? [Any] else { throw error(key, "must be a list, got \(describe(v))") }
        return l
    }

    public func string(_ key: String, required: Bool = false) throws -> String? {
        guard let v = try raw(key, required: required) else { return nil }
        guard let s = v as? String else { throw error(key, "must be a string, got \(describe(v))") }
        return s
    }

    /// One of an enumeration's raw values; anything else is refused with the list of choices.
    public func choice<T: RawRepresentable & CaseIterable>(_ key: String, required: Bool = false) throws -> T? where T.RawValue == String {
        guard let s = try string(key, required: required) else { return nil }
        guard let v = T(rawValue: s) else {
            throw error(key, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return v
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = try raw(key, required: false) else { return nil }
        guard let b = v as? Bool else { throw error(key, "must be true or false, got \(describe(v))") }
        return b
    }

    /// How an integer bound reads in a message: "a positive integer", "an integer in 2...60000".
    static func integerBounds(min: Int, max: Int) -> String {
        if max < Int.max { return "an integer in \(min)...\(max)" }
        return min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer ≥ \(min)"
    }

    /// An integer in min...max (max: a sane bound, so a typo cannot ask for a billion of something).
    public func int(_ key: String, min: Int, max: Int = Int.max, required: Bool = false) throws -> Int? {
        guard let v = try raw(key, required: required) else { return nil }
        guard !(v is Bool), let n = v as? Int, n >= min, n <= max else {
            throw error(key, "must be \(Self.integerBounds(min: min, max: max)), got \(describe(v))")
        }
        return n
    }

    public func intList(_ key: String, min: Int, max: Int = Int.max, maxCount: Int = Int.max) throws -> [Int]? {
        guard let items = try list(key) else { return nil }
        guard !items.isEmpty else { throw error(key, "must not be empty") }
        guard items.count <= maxCount else { throw error(key, "lists \(items.count) values, more than the limit of \(maxCount)") }
        return try items.enumerated().map { i, item in
            guard !(item is Bool), let n = item as? Int, n >= min, n <= max else {
                throw RecipeError(file: file, path: sub("\(key)[\(i)]"), message: "must be \(Self.integerBounds(min: min, max: max)), got \(describe(item))")
            }
            return n
        }
    }

    public func double(_ key: String, positive: Bool = false, min: Double? = nil, below: Double? = nil) throws -> Double? {
        guard let v = try raw(key, required: false) else { return nil }
        let d: Double
        if let x = v as? Double { d = x } else if !(v is Bool), let n = v as? Int { d = Double(n) } else {
            throw error(key, "must be a number, got \(describe(v))")
        }
        guard d.isFinite else { throw error(key, "must be finite, got \(d)") }
        if positive && !(d > 0) { throw error(key, "must be positive, got \(v)") }
        if let min, d < min { throw error(key, "must be ≥ \(min), got \(v)") }
        if let below, d >= below { throw error(key, "must be below \(below), got \(v)") }
        return d
    }
}

/// The cache key of a suite: its canonical definition plus the identity of the data files.
public enum SuiteHash {
    /// Bumped when the way models are built changes, so old caches are not trusted.
    public static let builderVersion = "ligand-zoo-1"

    public static func compute(_ suite: SuiteSpec, dataIdentity: String) -> String {
        var h = LigandFormats.SHA256()
        h.update(Array("\(builderVersion)\n\(suite.canonicalJSON)\n\(dataIdentity)".utf8))
        return String(LigandFormats.SHA256.hex(h.finalize()).prefix(16))
    }
}
