import ArgumentParser
import Foundation
import LigandData
import LigandFormats
import LigandModels
import LigandNN

/// A comma-separated list of numbers (`--mean 0.485,0.456,0.406`).
struct DoubleList: ExpressibleByArgument {
    let values: [Double]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }
}

/// An image shape H,W,C.
struct ImageShape: ExpressibleByArgument {
    let values: [Int]
    var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) > 0 && $0! <= 1 << 16 }) else { return nil }
        values = parts.map { $0! }
    }
}

/// `ligand import`: a state_dict saved by PyTorch, timm or flax → a Ligand model file (docs/model-files.md "Importing").
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn a safetensors state_dict in PyTorch, timm or flax layout into a Ligand model file.",
        discussion: """
        Reads nn.Sequential / flax MLPs (numbered Linear or Dense modules, the last one the head), timm ViTs, \
        open_clip's CLIP image tower (visual.*, with its classification head), CIFAR-style ResNet-20 and \
        torchvision-style VGG. What the shapes cannot tell is asked for: a square \
        weight's layout (--layout), a ViT's heads (--heads), a convolutional net's image size (--input), a VGG's \
        pooling (--architecture). The original names are kept, so `ligand export` writes a fused model back.
        """)

    @Argument(help: "The safetensors file to import.")
    var file: String
    @Option(help: "Output Ligand model file. Required, no default.")
    var out: String
    @Option(help: ArgumentHelp("Weight layout: torch ([out, in], PyTorch's Linear) or flax ([in, out], JAX/flax's Dense); default: read from the shapes where they allow only one.", valueName: "torch|flax"))
    var layout: WeightLayout?
    @Option(help: ArgumentHelp("Input image shape (default: 28,28,1 where the weights fit it).", valueName: "H,W,C"))
    var input: ImageShape?
    @Option(help: "A ViT's number of attention heads (not readable from its tensors; no default, required for a ViT).")
    var heads: Int?
    @Option(help: ArgumentHelp("A ViT's MLP activation: gelu (exact, timm's) or quick_gelu (x·σ(1.702x), OpenAI's CLIP) (default: quick_gelu for open_clip's tower, gelu for timm's ViT).", valueName: "gelu|quick_gelu"))
    var activation: Architecture.Activation?
    @Option(help: ArgumentHelp("The whole architecture as Ligand's JSON (docs/model-files.md), for what the tensors do not say (default: inferred; required for a VGG).", valueName: "json"))
    var architecture: String?
    @Option(help: ArgumentHelp("Per-channel mean the model's inputs are normalised with, after pixels / 255 (torchvision's Normalize); needs --std (default: none, pixels / 255 as they are).", valueName: "m[,m,…]"))
    var mean: DoubleList?
    @Option(help: ArgumentHelp("Per-channel standard deviation of that normalisation; needs --mean (default: none).", valueName: "s[,s,…]"))
    var std: DoubleList?
    @Option(help: ArgumentHelp("The model reads pixels / 255 times this before --mean/--std, e.g. 255 for a model trained on raw 0…255 pixels (default: 1).", valueName: "x"))
    var scale: Double?
    @Option(help: ArgumentHelp("Which stored channel each of the model's input channels reads, e.g. 2,1,0 for a model trained on BGR images of an RGB data set (default: as stored).", valueName: "c,c,…"))
    var channelOrder: String?
    @Option(help: ArgumentHelp("A prefix every tensor name carries (e.g. 'module.'), removed before reading (default: none).", valueName: "prefix"))
    var stripPrefix: String?

    var channelOrderValues: [Int]? {
        channelOrder.flatMap { text in
            let v = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            return v.allSatisfy({ ($0 ?? -1) >= 0 && $0! < 4096 }) && !v.isEmpty ? v.map { $0! } : nil
        }
    }

    func validate() throws {
        if let heads, heads < 1 || heads > 4096 { throw ValidationError("--heads must be in 1...4096, got \(heads)") }
        if (mean == nil) != (std == nil) { throw ValidationError("--mean and --std go together (the normalisation (x − mean) / std)") }
        if let channelOrder, channelOrderValues == nil { throw ValidationError("--channel-order must be channel indices separated by commas, e.g. 2,1,0; got '\(channelOrder)'") }
    }

    func run() throws {
        _ = try FileChecks.resolveOutput(out, inputs: [file])
        let source = try SafeTensorsFile(url: URL(fileURLWithPath: file))
        var o = ModelImport.Options()
        o.layout = layout
        o.input = input?.values
        o.heads = heads
        o.activation = activation
        o.stripPrefix = stripPrefix
        if let architecture {
            do { o.architecture = try Architecture.decode(json: architecture) } catch {
                throw ValidationError("--architecture is not a valid architecture description: \(error)")
            }
        }
        if mean != nil || scale != nil || channelOrder != nil {
            // One mean and std (here 0 and 1 when only a scale or an order is given) stand for every channel.
            o.normalize = .init(mean: mean?.values ?? [0], std: std?.values ?? [1], scale: scale, channels: channelOrderValues)
        }
        let result = try ModelImport.convert(source, o)
        var meta = [ImportRecord.metadataKey: result.record.json, "ligand.imported_from": URL(fileURLWithPath: file).lastPathComponent]
        for (k, v) in source.metadata where k != SafeTensors.digestKey && k != ModelFile.architectureKey && meta[k] == nil { meta["source.\(k)"] = v }
        try ModelFile.save(result.network, to: URL(fileURLWithPath: out), metadata: meta, inputs: [URL(fileURLWithPath: file)])
        for n in result.notes { print("inferred \(n)") }
        print("\(result.network.architecture) (\(result.network.parameterCount) parameters, \(result.record.layout.rawValue) layout) → \(out)")
    }
}

extension WeightLayout: ExpressibleByArgument {}
extension Architecture.Activation: ExpressibleByArgument {}

/// `ligand export`: a Ligand model file → the layout and names it was imported from.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Ligand model (e.g. a fused one) back in the layout and under the names it was imported with.",
        discussion: "The names come from the model's own import record (a merge of imported files keeps it) or from --like.")

    @Argument(help: "The Ligand model file.")
    var model: String
    @Option(help: "Output safetensors file. Required, no default.")
    var out: String
    @Option(help: ArgumentHelp("An imported model whose names and layout to use (default: the model's own import record).", valueName: "file"))
    var like: String?
    @Option(help: ArgumentHelp("The fused file of a tasks merge holds one head per task: the task whose head to write (required there; default: the model's one head).", valueName: "task"))
    var head: String?
    @OptionGroup var verification: VerifyOption

    func run() throws {
        verification.apply()
        _ = try FileChecks.resolveOutput(out, inputs: [model] + (like.map { [$0] } ?? []))
        let (net, metadata) = try ModelFile.load(URL(fileURLWithPath: model), head: head)
        var record = try ImportRecord.read(metadata, path: model)
        if let like {
            let f = try SafeTensorsFile(url: URL(fileURLWithPath: like))
            guard let r = try ImportRecord.read(f.metadata, path: like) else {
                throw ValidationError("\(like): has no import record (__metadata__['\(ImportRecord.metadataKey)']); give a file written by `ligand import`")
            }
            record = r
        }
        guard let record else {
            throw ValidationError("\(model): has no import record (__metadata__['\(ImportRecord.metadataKey)']): pass --like with the file `ligand import` wrote")
        }
        let tensors = try ModelImport.exported(net, record: record, path: model)
        var meta = ["format": record.layout == .torch ? "pt" : "flax", "ligand.exported_from": URL(fileURLWithPath: model).lastPathComponent]
        if let n = net.architecture.normalize { meta["ligand.normalize"] = n.formula }
        try SafeTensors.write(tensors, metadata: meta, to: URL(fileURLWithPath: out), inputs: [URL(fileURLWithPath: model)])
        print("\(net.architecture) → \(out) (\(tensors.count) tensors, \(record.layout.rawValue) layout)")
    }
}

/// `ligand split`: the calibration hold-out Ligand keeps from a data set's training images, so users can leave it out.
struct Split: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the indices of the training images Ligand holds out for calibration (and, optionally, the rest).",
        discussion: """
        The same stratified, seeded split as `ligand train --calibration N --seed S` and `ligand merge --models … \
        --calibration-holdout N --calibration-seed S`. Written as JSON, or as an int64 .npy array when the file \
        name ends in .npy.
        """)

    @Option(help: DataOption.help)
    var data: String?
    @Option(parsing: .unconditional, help: "Images held out for calibration.")
    var calibration: Int = 5000
    @Option(parsing: .unconditional, help: "Seed of the split.")
    var seed: UInt64 = 0
    @Option(help: "Output file for the calibration indices (.json or .npy). Required, no default.")
    var out: String
    @Option(help: ArgumentHelp("Also write the remaining training indices here (.json or .npy; default: not written).", valueName: "file"))
    var trainIndices: String?

    func run() throws {
        let dir = data.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? MNISTFamily.defaultDirectory
        _ = try FileChecks.resolveOutput(out)
        if let trainIndices { _ = try FileChecks.resolveOutput(trainIndices) }
        let train = try ImageDataset.load(directory: dir, split: .train)
        guard calibration >= 0 && calibration < train.count else {
            throw ValidationError("--calibration must be in 0..<\(train.count) (the training images of \(dir.path)), got \(calibration)")
        }
        let split = try DataSplits.trainCalibration(stratifiedBy: train.labels, calibration: calibration, seed: seed)
        try Self.write(split.calibration, to: out, what: "calibration", dir: dir, seed: seed, total: train.count)
        if let trainIndices { try Self.write(split.train, to: trainIndices, what: "train", dir: dir, seed: seed, total: train.count) }
        print("\(split.calibration.count) calibration indices → \(out)" + (trainIndices.map { "; \(split.train.count) training indices → \($0)" } ?? ""))
    }

    static func write(_ indices: [Int], to path: String, what: String, dir: URL, seed: UInt64, total: Int) throws {
        let url = URL(fileURLWithPath: path)
        if path.hasSuffix(".npy") {
            try AtomicFile.write(NPYWriter.int64(indices), to: url)
        } else {
            struct Doc: Encodable { let data: String; let split: String; let seed: UInt64; let training_images: Int; let indices: [Int] }
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            try AtomicFile.write(try e.encode(Doc(data: dir.path, split: what, seed: seed, training_images: total, indices: indices)), to: url)
        }
    }
}

/// A one-dimensional little-endian int64 `.npy` (format 1.0).
enum NPYWriter {
    static func int64(_ v: [Int]) -> [UInt8] {
        var header = "{'descr': '<i8', 'fortran_order': False, 'shape': (\(v.count),), }"
        // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
        out += Array(header.utf8)
        for x in v { withUnsafeBytes(of: Int64(x).littleEndian) { out += $0 } }
        return out
    }
}
