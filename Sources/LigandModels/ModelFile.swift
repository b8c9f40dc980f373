import Foundation
import LigandFormats
import LigandNN
import LigandNumerics

public enum ModelFileError: Error, CustomStringConvertible, LocalizedError {
    case missingArchitecture(path: String)
    case badArchitecture(path: String, reason: String)
    case tensor(path: String, reason: String)
    case mismatch(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingArchitecture(let p):
            return "\(p): __metadata__ has no '\(ModelFile.architectureKey)' entry, so the file does not say which network it holds"
        case .badArchitecture(let p, let r): return "\(p): __metadata__['\(ModelFile.architectureKey)']: \(r)"
        case .tensor(let p, let r): return "\(p): \(r)"
        case .mismatch(let p, let r): return "\(p): \(r)"
        }
    }
    public var errorDescription: String? { description }
}

/// A network as a self-describing safetensors file: PyTorch state_dict names and layouts
/// (NHWC is only our activation layout), the architecture as JSON in `__metadata__`.
public enum ModelFile {
    public static let architectureKey = "ligand.architecture"

    /// Whether `load` checks a file's recorded SHA-256 by default; `--no-verify` turns it off for the whole process.
    nonisolated(unsafe) public static var verifyDigests = true

    /// Writes the network atomically with the SHA-256 of its data in `__metadata__`; `metadata` adds entries
    /// (training config, accuracy, provenance); `inputs` are files the output must not replace.
    public static func save(_ net: Network<Float>, to url: URL, metadata: [String: String] = [:], inputs: [URL] = []) throws {
        var tensors: [(name: String, value: TensorPayload)] = net.stateDict().map { ($0.name, .float32($0.value)) }
        tensors += net.batchCounters().map { ($0.name, .int64([$0.value], shape: [])) }
        var meta = metadata
        meta[architectureKey] = net.architecture.json
        meta["format"] = "pt"
        try SafeTensors.write(tensors, metadata: meta, to: url, inputs: inputs, contentDigest: true)
    }

    /// Float elements a model file may make us allocate beyond the values its tensors hold (4 MiB).
    public static let allocationSlack = 1 << 20

    /// The architecture a file declares, without reading its tensors; refused when building it would
    /// allocate more than the file's tensors hold plus `allocationSlack`.
    public static func architecture(of file: SafeTensorsFile) throws -> Architecture {
        guard let json = file.metadata[architectureKey] else { throw ModelFileError.missingArchitecture(path: file.url.path) }
        let arch: Architecture
        do { arch = try Architecture.decode(json: json) } catch {
            throw ModelFileError.badArchitecture(path: file.url.path, reason: "not a valid architecture description (\(error))")
        }
        let problems = arch.validationErrors()
        guard problems.isEmpty else { throw ModelFileError.badArchitecture(path: file.url.path, reason: problems.joined(separator: "; ")) }
        // A file may only make us allocate what its own tensors hold (the header sized them against the file) plus
        // a small slack, so a slightly wrong file still reaches the per-tensor checks that name the tensor at fault.
        guard fits(arch, in: file) else {
            throw ModelFileError.badArchitecture(path: file.url.path, reason: "describes a \(arch) of \(arch.stateElementCount.map(String.init) ?? "too many") values, but the file's tensors hold only \(heldElements(file))")
        }
        return arch
    }

    /// Whether building `arch` allocates no more than `file`'s tensors hold plus `allocationSlack` (every model
    /// file reader and `ligand import` ask this before building a network).
    public static func fits(_ arch: Architecture, in file: SafeTensorsFile) -> Bool {
        guard let needed = arch.stateElementCount else { return false }
        return needed <= heldElements(file) + allocationSlack
    }

    static func heldElements(_ file: SafeTensorsFile) -> Int { file.entries.reduce(0) { $0 + $1.elementCount } }

    /// The metadata key of a tasks merge's fused file: its tasks, whose heads it holds as `heads.TASK.weight`/`.bias`.
    public static let headsKey = "ligand.heads"

    /// Loads a network, refusing missing, extra, mis-shaped and non-finite tensors by name.
    /// With `verify`, a recorded SHA-256 of the data must match (files without one load unverified).
    /// A tasks merge's fused file (one head per task) loads with the head of task `head`, which it then requires.
    public static func load(_ url: URL, expecting expected: Architecture? = nil, head: String? = nil,
                            verify: Bool = ModelFile.verifyDigests) throws -> (network: Network<Float>, metadata: [String: String]) {
        let file = try SafeTensorsFile(url: url)
        if verify { try file.verifyDigest() }
        var arch = try architecture(of: file)
        // Task heads: the chosen one under the network's head names, the others left unread.
        var tasks: [String] = []
        if let list = file.metadata[headsKey] {
            tasks = list.split(separator: ",").map(String.init)
            guard let head else { throw ModelFileError.tensor(path: url.path, reason: "holds one head per task (\(tasks.joined(separator: ", "))): choose one with --head") }
            guard tasks.contains(head) else { throw ModelFileError.tensor(path: url.path, reason: "has no head for task '\(head)' (it has \(tasks.joined(separator: ", ")))") }
            guard let w = file.entries.first(where: { $0.name == "heads.\(head).weight" }), w.shape.count == 2 else {
                throw ModelFileError.tensor(path: url.path, reason: "tensor 'heads.\(head).weight' is missing or not a matrix")
            }
            arch.classes = w.shape[0]
            let problems = arch.validationErrors()
            guard problems.isEmpty else { throw ModelFileError.badArchitecture(path: url.path, reason: problems.joined(separator: "; ")) }
        } else if let head {
            throw ModelFileError.tensor(path: url.path, reason: "holds one head, not one per task: --head \(head) applies to the fused file of a tasks merge")
        }
        if let expected, expected != arch {
            throw ModelFileError.mismatch(path: url.path, reason: "holds a \(arch), expected a \(expected)")
        }
        let net = try Network<Float>(arch, rng: .drawless)
        var rename: [String: String] = [:]
        if let head, !tasks.isEmpty {
            rename["heads.\(head).weight"] = net.head.weight.name
            if let b = net.head.bias { rename["heads.\(head).bias"] = b.name }
        }
        let skip = Set(tasks.flatMap { ["heads.\($0).weight", "heads.\($0).bias"] }).subtracting(rename.keys)
        var tensors: [String: Tensor] = [:]
        var counters: [String: Int64] = [:]
        let counterNames = Set(net.batchCounters().map(\.name))
        for entry in file.entries where !skip.contains(entry.name) {
            if let to = rename[entry.name] {
                tensors[to] = try file.floats(entry.name)
            } else if counterNames.contains(entry.name) {
                let v = try file.int64s(entry.name)
                guard v.values.count == 1 else { throw ModelFileError.tensor(path: url.path, reason: "tensor '\(entry.name)' must hold one value, has shape \(v.shape)") }
                counters[entry.name] = v.values[0]
            } else {
                tensors[entry.name] = try file.floats(entry.name)
            }
        }
        do { try net.load(tensors, counters: counters) } catch let e as NetworkError {
            throw ModelFileError.tensor(path: url.path, reason: e.description)
        }
        return (net, file.metadata)
    }
}
