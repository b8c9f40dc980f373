import XCTest
import Foundation
import LigandFormats
import LigandModels
import LigandNumerics
@testable import LigandNN

final class ModelFileTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-modelfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testRoundTripEveryArchitectureGivesIdenticalLogits() throws {
        for arch in [Architecture.mlp(hidden: [16, 8]), .vgg([.conv(4), .pool, .conv(8)]), .vgg([.conv(4), .pool, .conv(8)], batchNorm: true), .resnet20(width: 1),
                     .vit(patch: 7, width: 12, depth: 2, heads: 3, mlpRatio: 1.5)] {
            let net = try Network<Float>(arch, seed: 3)
            var rng = SeededRNG(seed: 1)
            // One training step so BN running statistics and counters are not at their initial values.
            let x = Tensor.randomUniform([4] + arch.input, lo: 0, hi: 1, rng: &rng)
            _ = net.forward(x, training: true)
            let url = dir.appendingPathComponent("\(arch.kind).safetensors")
            try ModelFile.save(net, to: url, metadata: ["note": "test"])
            let (back, meta) = try ModelFile.load(url)
            XCTAssertEqual(back.architecture, arch)
            XCTAssertEqual(meta["note"], "test")
            XCTAssertEqual(back.forward(x).storage, net.forward(x).storage, "\(arch)")
            XCTAssertEqual(back.batchCounters().map(\.value), net.batchCounters().map(\.value))
            // Saving the loaded model again gives the same bytes.
            let url2 = dir.appendingPathComponent("\(arch.kind)-2.safetensors")
            try ModelFile.save(back, to: url2, metadata: ["note": "test"])
            XCTAssertEqual(try Data(contentsOf: url), try Data(contentsOf: url2))
        }
    }

    func testStateDictNamesFollowPyTorch() throws {
        let names = try Network<Float>(.resnet20(width: 1), seed: 0).stateDict().map(\.name)
        XCTAssertEqual(names.first, "conv1.weight")
        XCTAssertTrue(names.contains("layer2.0.shortcut.0.weight"))
        XCTAssertTrue(names.contains("layer3.2.bn2.running_var"))
        XCTAssertEqual(names.last, "fc.bias")
        let vgg = try Network<Float>(.vgg([.conv(4), .conv(4), .pool, .conv(8)]), seed: 0).stateDict().map(\.name)
        XCTAssertEqual(vgg, ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                             "features.5.weight", "features.5.bias", "classifier.weight", "classifier.bias"])
        // torchvision's vgg*_bn: Conv2d, BatchNorm2d, ReLU per convolution.
        let vggBN = try Network<Float>(.vgg([.conv(4), .pool, .conv(8)], batchNorm: true), seed: 0).stateDict().map(\.name)
        XCTAssertEqual(vggBN, ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                               "features.1.running_mean", "features.1.running_var", "features.4.weight", "features.4.bias",
                               "features.5.weight", "features.5.bias", "features.5.running_mean", "features.5.running_var",
                               "classifier.weight", "classifier.bias"])
        XCTAssertThrowsError(try Network<Float>(Architecture(kind: .mlp, input: [28, 28, 1], classes: 10, hidden: [4], batchNorm: true), seed: 0))
        let shapes = try Network<Float>(.mlp(hidden: [5]), seed: 0).stateDict().map(\.value.shape)
        XCTAssertEqual(shapes, [[5, 784], [5], [10, 5], [10]])
    }

    func testRefusesNaNWeightsWrongArchitectureAndMissingMetadata() throws {
        let net = try Network<Float>(.mlp(hidden: [4]), seed: 0)
        var tensors = net.stateDict().map { (name: $0.name, value: TensorPayload.float32($0.value)) }
        let url = dir.appendingPathComponent("m.safetensors")
        try ModelFile.save(net, to: url)
        XCTAssertThrowsError(try ModelFile.load(url, expecting: .mlp(hidden: [5]))) { e in
            XCTAssertTrue("\(e)".contains("expected a"), "\(e)")
        }
        var bad = net.stateDict()[0].value
        bad.storage[3] = .nan
        // The writer refuses NaN, so the poisoned tensor goes in as raw little-endian bytes.
        let raw = bad.storage.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        tensors[0] = (name: tensors[0].name, value: .raw(dtype: .f32, shape: bad.shape, bytes: raw))
        let nanURL = dir.appendingPathComponent("nan.safetensors")
        try SafeTensors.write(tensors, metadata: [ModelFile.architectureKey: net.architecture.json], to: nanURL)
        XCTAssertThrowsError(try ModelFile.load(nanURL)) { e in XCTAssertTrue("\(e)".contains("layers.0.weight"), "\(e)") }
        let bare = dir.appendingPathComponent("bare.safetensors")
        try SafeTensors.write(Array(tensors.dropFirst()), metadata: [:], to: bare)
        XCTAssertThrowsError(try ModelFile.load(bare)) { e in XCTAssertTrue("\(e)".contains(ModelFile.architectureKey), "\(e)") }
        let missing = dir.appendingPathComponent("missing.safetensors")
        try SafeTensors.write(Array(tensors.dropFirst()), metadata: [ModelFile.architectureKey: net.architecture.json], to: missing)
        XCTAssertThrowsError(try ModelFile.load(missing)) { e in XCTAssertTrue("\(e)".contains("'layers.0.weight' is missing"), "\(e)") }
    }

    // MARK: hardening (issue 16)

    /// A model file whose header is replaced by `json` (data kept), for claims the tensors do not back.
    private func rewrite(_ url: URL, metadata: [String: String], to out: URL) throws {
        let f = try SafeTensorsFile(url: url)
        let tensors = try f.entries.map { (name: $0.name, value: TensorPayload.raw(dtype: $0.dtype, shape: $0.shape, bytes: try f.bytes($0.name))) }
        try SafeTensors.write(tensors, metadata: metadata, to: out)
    }

    func testStateElementCountMatchesTheBuiltNetwork() throws {
        for arch in [Architecture.mlp(hidden: [16, 8]), .vgg([.conv(4), .pool, .conv(8)]), .vgg([.conv(4), .pool, .conv(8)], batchNorm: true),
                     .resnet20(width: 1), .resnet20(width: 2, input: [8, 8, 3], classes: 7), .vit(), .vit(patch: 2, width: 6, depth: 3, heads: 2, mlpRatio: 0.5, input: [8, 6, 3], classes: 4)] {
            let net = try Network<Float>(arch, seed: 0)
            XCTAssertEqual(arch.stateElementCount, net.stateDict().reduce(0) { $0 + $1.value.count }, "\(arch)")
        }
    }

    func testViTNamesAndShapesFollowTimm() throws {
        let net = try Network<Float>(.vit(patch: 4, width: 8, depth: 2, heads: 2, mlpRatio: 4), seed: 0)
        let state = net.stateDict()
        XCTAssertEqual(Array(state.prefix(4).map(\.name)), ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"])
        let shapes = Dictionary(uniqueKeysWithValues: state.map { ($0.name, $0.value.shape) })
        XCTAssertEqual(shapes["cls_token"], [1, 1, 8])
        XCTAssertEqual(shapes["pos_embed"], [1, 50, 8])
        XCTAssertEqual(shapes["patch_embed.proj.weight"], [8, 1, 4, 4])
        XCTAssertEqual(shapes["blocks.1.attn.qkv.weight"], [24, 8])
        XCTAssertEqual(shapes["blocks.1.mlp.fc1.weight"], [32, 8])
        XCTAssertEqual(shapes["blocks.1.mlp.fc2.weight"], [8, 32])
        XCTAssertEqual(Array(state.suffix(4).map(\.name)), ["norm.weight", "norm.bias", "head.weight", "head.bias"])
        XCTAssertEqual(state.count, 4 + 2 * 12 + 4)
        XCTAssertEqual(net.mergePoints.map(\.name), ["stream", "blocks.0.attn.qk", "blocks.0.attn.v", "blocks.0.mlp.act",
                                                     "blocks.1.attn.qk", "blocks.1.attn.v", "blocks.1.mlp.act"])
        XCTAssertEqual(net.features(Tensor(zeros: [3, 28, 28, 1])).shape, [3, 8])
    }

    func testViTDescriptionsThatCannotBeBuiltAreRefusedByField() {
        func problems(_ a: Architecture) -> String { a.validationErrors().joined(separator: "; ") }
        XCTAssertTrue(problems(.vit(width: 10, heads: 4)).contains("not divisible by heads 4"))
        XCTAssertTrue(problems(.vit(patch: 5)).contains("5×5 patches"))
        XCTAssertTrue(problems(.vit(depth: 0)).contains("depth"))
        XCTAssertTrue(problems(.vit(mlpRatio: 0.01)).contains("mlp_ratio"))
        XCTAssertTrue(problems(.vit(patch: 1, heads: 8)).contains("attention weights per image"))
        XCTAssertEqual(problems(.vit(patch: 1, heads: 4)), "")
        var mixed = Architecture.mlp(); mixed.heads = 2
        XCTAssertTrue(problems(mixed).contains("vit options"))
        XCTAssertThrowsError(try Network<Float>(.vit(width: 10, heads: 4), seed: 0))
    }

    func testMetadataClaimingAHugeNetworkIsRefusedBeforeAllocating() throws {
        let net = try Network<Float>(.mlp(hidden: [8], input: [4, 4, 1]), seed: 0)
        let url = dir.appendingPathComponent("small.safetensors")
        try ModelFile.save(net, to: url)
        let claims: [(String, String)] = [
            (#"{"classes":10,"hidden":[8000,8000],"input":[28,28,1],"kind":"mlp"}"#, "only"),
            (#"{"classes":10,"hidden":[60000,60000],"input":[28,28,1],"kind":"mlp"}"#, "parameters"),
            (#"{"classes":10,"input":[28,28,1],"kind":"resnet20","width":1152921504606846976}"#, "parameters"),
            (#"{"classes":10,"hidden":[8],"input":[4294967296,4294967296,1],"kind":"mlp"}"#, "elements per image"),
            (#"{"classes":9223372036854775807,"hidden":[8],"input":[4,4,1],"kind":"mlp"}"#, "parameters"),
            (#"{"classes":10,"config":[9223372036854775807],"input":[4,4,1],"kind":"vgg"}"#, "parameters"),
        ]
        for (i, (json, words)) in claims.enumerated() {
            let bad = dir.appendingPathComponent("claim\(i).safetensors")
            try rewrite(url, metadata: [ModelFile.architectureKey: json], to: bad)
            XCTAssertThrowsError(try ModelFile.load(bad)) { e in
                guard case .badArchitecture(let p, let reason)? = e as? ModelFileError else { return XCTFail("\(e)") }
                XCTAssertEqual(p, bad.path)
                XCTAssertTrue(reason.contains(words), reason)
            }
        }
        // The same sizes given directly (as flags do) are refused by validation instead of trapping or allocating.
        XCTAssertThrowsError(try Network<Float>(.resnet20(width: Int.max / 8), seed: 0))
        XCTAssertThrowsError(try Network<Float>(.mlp(hidden: [60000, 60000]), seed: 0))
    }

    func testFlippedWeightBytesAreDetectedUnlessVerificationIsOff() throws {
        let net = try Network<Float>(.mlp(hidden: [8], input: [4, 4, 1]), seed: 0)
        let url = dir.appendingPathComponent("d.safetensors")
        try ModelFile.save(net, to: url)
        XCTAssertNotNil(try SafeTensorsFile(url: url).metadata[SafeTensors.digestKey])
        var bytes = [UInt8](try Data(contentsOf: url))
        bytes[bytes.count - 40] ^= 0x01   // a low mantissa bit of a head weight: still finite
        let bad = dir.appendingPathComponent("flipped.safetensors")
        try Data(bytes).write(to: bad)
        XCTAssertThrowsError(try ModelFile.load(bad)) { e in
            guard case .digestMismatch(let p, _, _)? = e as? SafeTensorsError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, bad.path)
        }
        XCTAssertNoThrow(try ModelFile.load(bad, verify: false))
        // A file without the key (written before digests existed) loads unverified.
        let old = dir.appendingPathComponent("old.safetensors")
        try rewrite(url, metadata: [ModelFile.architectureKey: net.architecture.json, "format": "pt"], to: old)
        XCTAssertNoThrow(try ModelFile.load(old))
    }

    /// A few hundred seeded mutations of a valid file's header: each load must return or throw, never trap.
    func testMutatedHeadersOnlyEverThrow() throws {
        let net = try Network<Float>(.vgg([.conv(2), .pool, .conv(3)], input: [4, 4, 1], batchNorm: true), seed: 0)
        let url = dir.appendingPathComponent("valid.safetensors")
        try ModelFile.save(net, to: url)
        let original = [UInt8](try Data(contentsOf: url))
        let headerEnd = 8 + (Int(original[0]) | Int(original[1]) << 8)
        let json = String(decoding: original[8..<headerEnd], as: UTF8.self)
        var rng = SeededRNG(seed: 16)
        let numbers = ["0", "-1", "1", "3", "60000", "4294967296", "9223372036854775807", "9223372036854775808", "1e400", "2.5", "null", "\"M\"", "[]"]
        let digits = Array(json.indices.filter { json[$0].isNumber })
        var thrown = 0
        let rounds = 400
        for round in 0..<rounds {
            var bytes = original
            switch round % 4 {
            case 0:   // flip random header bytes
                for _ in 0...rng.int(below: 3) { bytes[8 + rng.int(below: headerEnd - 8)] ^= UInt8(1 << rng.int(below: 8)) }
            case 1:   // replace one digit run of the header (shapes, offsets, architecture sizes) by a hostile value
                var text = json
                let at = digits[rng.int(below: digits.count)]
                var end = at
                while end < text.endIndex, text[end].isNumber { end = text.index(after: end) }
                text.replaceSubrange(at..<end, with: numbers[rng.int(below: numbers.count)])
                bytes = Self.file(header: text, data: original[headerEnd...])
            case 2:   // a random length prefix
                let n = rng.next() >> UInt64(rng.int(below: 64))
                for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
            default:  // truncate or extend the file
                bytes = rng.int(below: 2) == 0 ? Array(bytes.prefix(rng.int(below: bytes.count))) : bytes + [UInt8](repeating: 0, count: 1 + rng.int(below: 64))
            }
            let u = dir.appendingPathComponent("m\(round).safetensors")
            try Data(bytes).write(to: u)
            do { _ = try ModelFile.load(u) } catch { thrown += 1 }
            try FileManager.default.removeItem(at: u)
        }
        XCTAssertGreaterThan(thrown, rounds / 2, "most mutations must be refused")
    }

    /// A safetensors file from header text and data bytes (the header padded to a multiple of 8).
    private static func file(header: String, data: ArraySlice<UInt8>) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        return withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + data
    }
}
