import Foundation
import LigandData
import LigandFormats
import LigandModels
import LigandNN
import LigandNumerics
import LigandPipeline
import LigandZoo

/// One fuzz target: a reader fed arbitrary bytes. Every error it throws is the expected outcome
/// for bad input; only a trap, a hang or a runaway allocation is a finding.
struct FuzzTarget {
    let name: String
    let run: ([UInt8]) -> Void
    /// Small valid inputs, so the fuzzer starts from files the reader accepts.
    let seeds: () throws -> [(name: String, bytes: [UInt8])]
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [safetensors, model, importer, idx, arrays, png, recipe]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    // The readers take a file (SafeTensorsFile memory-maps it): each input goes through one
    // per-process scratch file, in /dev/shm when there is one so no disk is touched.
    nonisolated(unsafe) static var scratch: URL = {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return URL(fileURLWithPath: dir).appendingPathComponent("ligand-fuzz-\(getpid())")
    }()

    static func withScratchFile(_ bytes: [UInt8], suffix: String, _ body: (URL) -> Void) {
        let url = scratch.appendingPathExtension(suffix)
        guard FileManager.default.createFile(atPath: url.path, contents: Data(bytes)) else {
            fatalError("ligand-fuzz: cannot write the scratch file \(url.path)")
        }
        defer { try? FileManager.default.removeItem(at: url) }
        body(url)
    }

    /// Reads every tensor of an open file the way its dtype allows (this is where offsets are used).
    static func readAll(_ file: SafeTensorsFile) {
        for entry in file.entries {
            _ = try? file.bytes(entry.name)
            switch entry.dtype {
            case .f64: _ = try? file.doubles(entry.name)
            case .i64: _ = try? file.int64s(entry.name)
            default: _ = try? file.floats(entry.name)
            }
        }
    }

    static let safetensors = FuzzTarget(name: "safetensors", run: { bytes in
        withScratchFile(bytes, suffix: "safetensors") { url in
            guard let file = try? SafeTensorsFile(url: url) else { return }
            readAll(file)
        }
    }, seeds: {
        let t = Tensor(shape: [2, 3], storage: [1, -2, 3.5, 0, 1e-3, 7])
        return [
            ("f32", try SafeTensors.serialize([("w", .float32(t))], metadata: ["format": "pt"])),
            ("mixed", try SafeTensors.serialize([("a", .float32(t, storedAs: .f16)), ("b", .float32(t, storedAs: .bf16)),
                                                 ("c", .float64([1, 2], shape: [2])), ("n", .int64([5], shape: [])),
                                                 ("r", .raw(dtype: .i8, shape: [3], bytes: [1, 2, 255]))])),
            ("empty", try SafeTensors.serialize([], metadata: ["k": "v"])),
        ]
    })

    static let model = FuzzTarget(name: "model", run: { bytes in
        withScratchFile(bytes, suffix: "safetensors") { url in
            _ = try? ModelFile.load(url)
        }
    }, seeds: {
        var out: [(String, [UInt8])] = []
        for (name, arch) in [("mlp", Architecture.mlp(hidden: [4], input: [2, 2, 1], classes: 3)),
                             ("vgg-bn", Architecture.vgg([.conv(2), .pool], input: [4, 4, 1], classes: 2, batchNorm: true))] {
            let net = try Network<Float>(arch, seed: 1)
            let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ligand-fuzz-seed-\(getpid())-\(name).safetensors")
            try ModelFile.save(net, to: dir, metadata: ["accuracy": "0.5"])
            out.append((name, Array(try Data(contentsOf: dir))))
            try? FileManager.default.removeItem(at: dir)
        }
        return out
    })

    // `ligand import`: any safetensors file read as each layout the importer knows.
    static let importer = FuzzTarget(name: "import", run: { bytes in
        withScratchFile(bytes, suffix: "safetensors") { url in
            guard let file = try? SafeTensorsFile(url: url) else { return }
            var o = ModelImport.Options()
            o.heads = 2
            _ = try? ModelImport.convert(file, o)
            o.layout = .flax
            o.input = [4, 4, 1]
            _ = try? ModelImport.convert(file, o)
        }
    }, seeds: {
        func t(_ shape: [Int]) -> TensorPayload { .float32(Tensor(shape: shape, repeating: 0.5)) }
        let vit: [(String, [Int])] = [("cls_token", [1, 1, 4]), ("pos_embed", [1, 5, 4]), ("patch_embed.proj.weight", [4, 1, 2, 2]), ("patch_embed.proj.bias", [4]),
            ("blocks.0.norm1.weight", [4]), ("blocks.0.norm1.bias", [4]), ("blocks.0.attn.qkv.weight", [12, 4]), ("blocks.0.attn.qkv.bias", [12]),
            ("blocks.0.attn.proj.weight", [4, 4]), ("blocks.0.attn.proj.bias", [4]), ("blocks.0.norm2.weight", [4]), ("blocks.0.norm2.bias", [4]),
            ("blocks.0.mlp.fc1.weight", [8, 4]), ("blocks.0.mlp.fc1.bias", [8]), ("blocks.0.mlp.fc2.weight", [4, 8]), ("blocks.0.mlp.fc2.bias", [4]),
            ("norm.weight", [4]), ("norm.bias", [4]), ("head.weight", [3, 4]), ("head.bias", [3])]
        // open_clip's tower under `visual.` with a task head and a text-tower tensor left behind.
        let clip: [(String, [Int])] = [("visual.class_embedding", [4]), ("visual.positional_embedding", [5, 4]), ("visual.conv1.weight", [4, 1, 2, 2]),
            ("visual.ln_pre.weight", [4]), ("visual.ln_pre.bias", [4]), ("visual.proj", [4, 3]), ("visual.ln_post.weight", [4]), ("visual.ln_post.bias", [4]),
            ("visual.transformer.resblocks.0.ln_1.weight", [4]), ("visual.transformer.resblocks.0.ln_1.bias", [4]),
            ("visual.transformer.resblocks.0.attn.in_proj_weight", [12, 4]), ("visual.transformer.resblocks.0.attn.in_proj_bias", [12]),
            ("visual.transformer.resblocks.0.attn.out_proj.weight", [4, 4]), ("visual.transformer.resblocks.0.attn.out_proj.bias", [4]),
            ("visual.transformer.resblocks.0.ln_2.weight", [4]), ("visual.transformer.resblocks.0.ln_2.bias", [4]),
            ("visual.transformer.resblocks.0.mlp.c_fc.weight", [8, 4]), ("visual.transformer.resblocks.0.mlp.c_fc.bias", [8]),
            ("visual.transformer.resblocks.0.mlp.c_proj.weight", [4, 8]), ("visual.transformer.resblocks.0.mlp.c_proj.bias", [4]),
            ("classification_head.weight", [2, 3]), ("classification_head.bias", [2]), ("logit_scale", [])]
        return [("sequential", try SafeTensors.serialize([("1.weight", t([5, 16])), ("1.bias", t([5])), ("3.weight", t([3, 5])), ("3.bias", t([3]))])),
                ("flax", try SafeTensors.serialize([("params/Dense_0/kernel", t([16, 5])), ("params/Dense_0/bias", t([5])),
                                                    ("params/Dense_1/kernel", t([5, 3])), ("params/Dense_1/bias", t([3]))])),
                ("timm-vit", try SafeTensors.serialize(vit.map { ($0.0, t($0.1)) })),
                ("open-clip", try SafeTensors.serialize(clip.map { ($0.0, t($0.1)) }))]
    })

    static let idx = FuzzTarget(name: "idx", run: { bytes in
        // Through the file reader, so gzip input (detected by its magic bytes) is inflated too.
        withScratchFile(bytes, suffix: "idx") { url in
            _ = try? IDX.read(url: url)
        }
    }, seeds: {
        [("images", [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2] + (0..<8).map { UInt8($0 * 30) }),
         ("labels", [0, 0, 8, 1, 0, 0, 0, 4, 3, 1, 4, 1])]
    })

    // Data-set arrays: the same bytes as an .npz archive and as a bare .npy (Tests/fuzz/corpus/arrays holds archives).
    static let arrays = FuzzTarget(name: "arrays", run: { bytes in
        withScratchFile(bytes, suffix: "npz") { url in
            _ = try? DataFileReaders.npz(url)
            _ = try? DataFileReaders.npy(url)
        }
    }, seeds: {
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }"
        let npy: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8) + [0, 50, 100, 150, 200, 250, 1, 2]
        return [("npy", npy)]
    })

    // PNG images of image-folder data sets (Tests/fuzz/corpus/png holds grey, RGB, palette and 16-bit images).
    static let png = FuzzTarget(name: "png", run: { bytes in
        withScratchFile(bytes, suffix: "png") { url in _ = try? DataFileReaders.png(url) }
    }, seeds: { [] })

    // Run recipes name their zoo recipe by path: fuzz.sh runs from the repository root, where the
    // seeds' recipes/*.yaml exist. A recipe is planned too, as `ligand run` does right after parsing.
    static let recipe = FuzzTarget(name: "recipe", run: { bytes in
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        _ = try? Recipe.parse(text, path: "fuzz.yaml")
        if let run = try? RunRecipe.parse(text, path: "fuzz.yaml") { _ = run.plan() }
    }, seeds: {
        [("zoo", Array("""
            suites:
              s:
                kind: seeds
                seed: 3
                calibration: 50
                train_images: 300
                architectures: [{kind: mlp, hidden: [16]}, {kind: vgg, config: [8, M], batch_norm: true}]
                models: 3
                epochs: 1

            """.utf8)),
         ("run", Array("""
            zoo: recipes/seeds-short.yaml
            seeds: 2
            experiments:
              - suite: seeds-mlp
                k: [2, 3]
                subsets: 2
                methods: [average, {method: cca, gammas: [1]}]

            """.utf8))]
    })
}

/// Writes the target's seed files into DIR (created if needed); false, with the reason, on failure.
func writeSeeds(of target: FuzzTarget, to dir: String) -> Bool {
    let url = URL(fileURLWithPath: dir)
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for seed in try target.seeds() {
            try Data(seed.bytes).write(to: url.appendingPathComponent("seed-\(seed.name)"))
        }
        return true
    } catch {
        FileHandle.standardError.write(Data("ligand-fuzz: cannot write seeds for \(target.name): \(error)\n".utf8))
        return false
    }
}
