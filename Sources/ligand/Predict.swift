import ArgumentParser
import Foundation
import LigandFormats
import LigandModels
import LigandNN
import LigandNumerics

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a freshly initialised model (the architecture in its metadata) without training it.")
    @OptionGroup var architecture: ArchitectureOptions
    @Option(help: ArgumentHelp("Input image shape.", valueName: "H,W,C"))
    var input: ImageShape = ImageShape(argument: "28,28,1")!
    @Option(help: "Number of classes.")
    var classes: Int = 10
    @Option(help: "Initialisation seed.")
    var seed: UInt64 = 0
    @Option(help: "Output model file. Required, no default.")
    var out: String

    func run() throws {
        let net = try Network<Float>(try architecture.architecture(input: input.values, classes: classes), seed: seed)
        try ModelFile.save(net, to: URL(fileURLWithPath: out))
        print("\(net.architecture) (\(net.parameterCount) parameters) → \(out)")
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute a model's logits (and optionally features) for inputs stored in a safetensors file.",
        discussion: "The input tensor is [N, H, W, C] (NHWC) Float32/Float64; the output file holds `logits` [N, classes] and, with --features, `features` [N, width].")
    @Option(help: "Model file (safetensors with ligand.architecture metadata). Required, no default.")
    var model: String
    @Option(help: "Safetensors file holding the input batch. Required, no default.")
    var input: String
    @Option(help: "Name of the input tensor in --input.")
    var tensor: String = "input"
    @Option(help: "Output safetensors file. Required, no default.")
    var out: String
    @Flag(help: "Also write the features (the classification head's input; default: off).")
    var features = false
    @Option(help: ArgumentHelp("The fused file of a tasks merge holds one head per task: the task whose head to use (required there; default: the model's one head).", valueName: "task"))
    var head: String?
    @OptionGroup var verification: VerifyOption

    func run() throws {
        verification.apply()
        let (modelURL, inputURL, outURL) = (URL(fileURLWithPath: model), URL(fileURLWithPath: input), URL(fileURLWithPath: out))
        // The output is checked before any work: it must not be a device, FIFO, directory, the model or the input.
        _ = try FileChecks.resolveOutput(out, inputs: [model, input])
        let (net, _) = try ModelFile.load(modelURL, head: head)
        let file = try SafeTensorsFile(url: inputURL)
        guard file.contains(tensor) else { throw ValidationError("\(input): no tensor named '\(tensor)' (it has \(file.names.joined(separator: ", ")))") }
        let shape = try file.entry(tensor).shape
        guard shape.count == 4, Array(shape.dropFirst()) == net.architecture.input else {
            throw InputError.imageShape(path: input, tensor: tensor, found: shape, expected: net.architecture.input, model: model)
        }
        guard shape[0] > 0 else { throw InputError.emptyBatch(path: input, tensor: tensor) }
        let x = try file.floats(tensor)
        let f = net.features(x)
        let logits = net.head.forward(f, training: false)
        // Finite inputs and finite weights can still overflow; that is the model's doing, not the output file's.
        if let i = logits.firstNonFinite {
            throw InputError.nonFiniteLogits(model: model, sample: i / max(1, net.classes), input: input)
        }
        var outTensors: [(name: String, value: TensorPayload)] = [("logits", .float32(logits))]
        if features {
            if let i = f.firstNonFinite { throw InputError.nonFiniteLogits(model: model, sample: i / max(1, f.shape.last ?? 1), input: input) }
            outTensors.append(("features", .float32(f)))
        }
        try SafeTensors.write(outTensors, metadata: ["ligand.model": model], to: outURL, inputs: [modelURL, inputURL])
    }
}

/// `--no-verify`, shared by the commands that load model files.
struct VerifyOption: ParsableArguments {
    @Flag(name: .customLong("no-verify"), help: "Do not check model files against the SHA-256 recorded in their metadata (default: check when recorded).")
    var noVerify = false

    func apply() { if noVerify { ModelFile.verifyDigests = false } }
}

/// Inputs a command cannot use, each naming the file (and tensor) at fault.
enum InputError: Error, CustomStringConvertible, LocalizedError {
    case imageShape(path: String, tensor: String, found: [Int], expected: [Int], model: String)
    case emptyBatch(path: String, tensor: String)
    case nonFiniteLogits(model: String, sample: Int, input: String)
    case noImages(path: String)
    case dataShape(path: String, found: [Int], expected: [Int], model: String)

    var description: String {
        switch self {
        case let .imageShape(path, tensor, found, expected, model):
            return "\(path): tensor '\(tensor)' has shape \(found), but \(model) takes images [N] + \(expected) (NHWC)"
        case let .emptyBatch(path, tensor):
            return "\(path): tensor '\(tensor)' holds no images (N = 0); nothing to predict"
        case let .nonFiniteLogits(model, sample, input):
            return "\(model): the model's weights produce non-finite logits (NaN or infinity) for sample \(sample) of \(input); no output written"
        case let .noImages(path):
            return "\(path): the test set holds no images; an accuracy over zero images is undefined"
        case let .dataShape(path, found, expected, model):
            return "\(path): images are \(found) (height, width, channels), but \(model) takes \(expected)"
        }
    }
    var errorDescription: String? { description }
}
