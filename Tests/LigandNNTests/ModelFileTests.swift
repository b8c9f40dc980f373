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
        for arch in [Architecture.mlp(hidden: [16, 8]), .vgg([.conv(4), .pool, .conv(8)]), .vgg([.conv(4), .pool, .conv(8)], batchNorm: true), .resnet20(width: 1)] {
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
}
