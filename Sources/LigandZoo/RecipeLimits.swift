import Foundation
import LigandNN
import Yams

/// Upper bounds on what a recipe (or a command-line count) may ask for, checked when it is parsed.
public enum RecipeLimits {
    /// A recipe is a few kilobytes; a bigger file is a mistake, and parsing 50 MB of YAML takes a minute.
    public static let maxFileBytes = 1 << 20
    /// Runs a `ligand run` recipe may plan (experiment × method × K × subset × seed).
    public static let maxPlannedRuns = 10_000
    /// Models a zoo suite may train (every architecture, model and expert together).
    public static let maxModels = 1_000
    /// Seeds per run of a `ligand run` recipe.
    public static let maxSeeds = 1_000
    /// Training epochs (and similar per-model repetition counts).
    public static let maxEpochs = 10_000
    /// Every MNIST-family data set ships 60,000 training images, so no image count can exceed it.
    public static let trainingImages = 60_000
    /// Mini-batch size (the defaults are 64 to 128; 4,096 ResNet-20 activations already take gigabytes).
    public static let maxBatchSize = 4_096
    /// MLP hidden widths and VGG channel counts.
    public static let maxWidth = 16_384
    /// Hidden layers of an MLP, items of a VGG configuration.
    public static let maxLayers = 64
    /// ResNet-20 width multiplier (64 → 1,024/2,048/4,096 channels).
    public static let maxResNetWidth = 64
    /// Weights of one network (about 400 MB of Float32); memory is allocated per model and per rank.
    public static let maxWeights = 100_000_000
    /// Pixels of random shift (an MNIST image is 28 pixels wide).
    public static let maxShift = 27
    /// Nodes of a recipe's YAML tree: a real recipe has hundreds.
    public static let maxYAMLNodes = 100_000

    /// `a * b`, or nil when it overflows.
    public static func product(_ a: Int, _ b: Int) -> Int? {
        let (p, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : p
    }

    /// `a + b`, or nil when it overflows.
    public static func sum(_ a: Int, _ b: Int) -> Int? {
        let (s, o) = a.addingReportingOverflow(b)
        return o ? nil : s
    }

    /// C(n, k) exactly, or nil once it exceeds `cap` or Int (k steps, never a trap, whatever n and k).
    public static func binomial(_ n: Int, _ k: Int, cap: Int) -> Int? {
        guard k >= 0, n >= k else { return 0 }
        let k = min(k, n - k)
        var c = 1
        for i in 0..<k {
            // c · (n − i) / (i + 1) is C(n, i + 1), an integer; the product is formed before dividing to stay exact.
            guard let p = product(c, n - i) else { return nil }
            c = p / (i + 1)
            if c > cap { return nil }
        }
        return c
    }

    /// A count with thousands separators, as limit messages show it.
    public static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// The weights of the convolutions and linear layers of `arch` (biases and BatchNorm left out), nil past Int.max.
    public static func weightCount(_ arch: Architecture) -> Int? {
        let inChannels = arch.input.count == 3 ? arch.input[2] : 1
        var total = 0
        func add(_ a: Int, _ b: Int, _ c: Int = 1) -> Bool {
            guard let ab = product(a, b), let abc = product(ab, c), let t = sum(total, abc) else { return false }
            total = t
            return true
        }
        switch arch.kind {
        case .mlp:
            var width = arch.input.reduce(1) { product($0, $1) ?? Int.max }
            for h in arch.hidden ?? [] { guard add(width, h) else { return nil }; width = h }
            guard add(width, arch.classes) else { return nil }
        case .vgg:
            var channels = inChannels
            for case .conv(let out) in arch.config ?? [] { guard add(9, channels, out) else { return nil }; channels = out }
            guard add(channels, arch.classes) else { return nil }
        case .resnet20:
            guard let w = product(arch.width ?? 1, 16) else { return nil }
            var channels = inChannels
            guard add(9, channels, w) else { return nil }
            channels = w
            for stage in 0..<3 {
                guard let width = product(w, 1 << stage) else { return nil }
                for _ in 0..<3 {
                    guard add(9, channels, width), add(9, width, width) else { return nil }
                    if channels != width { guard add(channels, width) else { return nil } }
                    channels = width
                }
            }
            guard add(channels, arch.classes) else { return nil }
        case .vit:
            // Every tensor of the state dict: the embeddings and LayerNorms are small beside the blocks' matrices.
            return arch.stateElementCount
        }
        return total
    }
}

/// Reading and parsing recipe YAML with the limits above: file size, and tree size with aliases expanded.
public enum RecipeYAML {
    /// The text of a recipe file: refused when missing, a directory, over `RecipeLimits.maxFileBytes` or not UTF-8.
    public static func readText(path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw RecipeError(file: path, path: "", message: "file not found")
        }
        guard !isDirectory.boolValue else { throw RecipeError(file: path, path: "", message: "is a directory, not a recipe file") }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw RecipeError(file: path, path: "", message: "cannot be opened for reading") }
        defer { try? handle.close() }
        // One byte past the limit is enough to know the file is too big, whatever its size (or a FIFO's).
        let data: Data
        do { data = try handle.read(upToCount: RecipeLimits.maxFileBytes + 1) ?? Data() } catch {
            throw RecipeError(file: path, path: "", message: "cannot be read: \(error.localizedDescription)")
        }
        guard data.count <= RecipeLimits.maxFileBytes else { throw tooBig(path) }
        guard let text = String(data: data, encoding: .utf8) else { throw RecipeError(file: path, path: "", message: "cannot be read as UTF-8 text") }
        return text
    }

    static func tooBig(_ file: String) -> RecipeError {
        RecipeError(file: file, path: "", message: "is larger than the \(RecipeLimits.grouped(RecipeLimits.maxFileBytes))-byte limit for a recipe")
    }

    /// The YAML value of `text` (maps, lists, scalars); aliases are counted at their expanded size before anything is expanded.
    public static func load(_ text: String, file: String) throws -> Any? {
        guard text.utf8.count <= RecipeLimits.maxFileBytes else { throw tooBig(file) }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw RecipeError(file: file, path: "", message: "not valid YAML: \(clipped(error))") }
        guard let node else { return nil }
        var budget = RecipeLimits.maxYAMLNodes
        try count(node, file: file, budget: &budget)
        return node.any
    }

    /// A parser message quotes the offending source line: a 1 MB line must not become a 1 MB message.
    static func clipped(_ error: Error) -> String {
        "\(error)".split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.count > 160 ? $0.prefix(160) + "…" : $0 }.joined(separator: "\n")
    }

    /// Walks the composed tree, where an alias shares its anchor's node: the walk costs at most the budget, not the expansion.
    private static func count(_ node: Node, file: String, budget: inout Int) throws {
        budget -= 1
        guard budget >= 0 else {
            throw RecipeError(file: file, path: "", message: "expands to more than \(RecipeLimits.grouped(RecipeLimits.maxYAMLNodes)) YAML values (aliases counted at their full size): is it an alias bomb?")
        }
        switch node {
        case .scalar(let s):
            // Yams multiplies a YAML 1.1 base-60 integer (1:30) out in Int and traps on overflow; no recipe field is base 60.
            if s.string.contains(":"), node.tag == Tag(.int) {
                throw RecipeError(file: file, path: "", message: "line \(s.mark?.line ?? 0): '\(s.string.prefix(40))' is a YAML base-60 number (like 1:30); write a plain number, or quote it if it is a name")
            }
        case .alias: break
        case .sequence(let s): for n in s { try count(n, file: file, budget: &budget) }
        case .mapping(let m):
            for (k, v) in m {
                // Yams builds a dictionary only from plain keys; a list or map as a key would trap there.
                guard case .scalar = k else {
                    throw RecipeError(file: file, path: "", message: "a mapping key must be a plain name, not a list, a map or an alias (line \(k.mark?.line ?? 0))")
                }
                try count(k, file: file, budget: &budget); try count(v, file: file, budget: &budget)
            }
        }
    }
}
