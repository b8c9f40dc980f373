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
    @Option(help: "Input image shape as H,W,C.")
    var input: String = "28,28,1"
    @Option(help: "Number of classes.")
    var classes: Int = 10
    @Option(help: "Initialisation seed.")
    var seed: UInt64 = 0
    @Option(help: "Output model file. Required, no default.")
    var out: String

    func run() throws {
        let shape = input.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard shape.count == 3 else { throw ValidationError("--input must be H,W,C, got '\(input)'") }
        let net = try Network<Float>(try architecture.architecture(input: shape, classes: classes), seed: seed)
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

    func run() throws {
        let (net, _) = try ModelFile.load(URL(fileURLWithPath: model))
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: input))
        guard file.contains(tensor) else { throw ValidationError("\(input): no tensor named '\(tensor)' (it has \(file.names.joined(separator: ", ")))") }
        let x = try file.floats(tensor)
        do { try net.validateInput(x) } catch { throw ValidationError("\(input): tensor '\(tensor)': \(error)") }
        let f = net.features(x)
        let logits = net.head.forward(f, training: false)
        var outTensors: [(name: String, value: TensorPayload)] = [("logits", .float32(logits))]
        if features { outTensors.append(("features", .float32(f))) }
        try SafeTensors.write(outTensors, metadata: ["ligand.model": model], to: URL(fileURLWithPath: out))
    }
}
