import XCTest
import LigandNumerics
@testable import LigandNN

/// The input contract a model file carries (`Architecture.normalize`): applied by the network itself, before its first layer.
final class NormalizationTests: XCTestCase {
    let norm = Architecture.Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    func testANormalisedNetworkIsThePlainNetworkOnNormalisedPixels() throws {
        for base in [Architecture.mlp(hidden: [12], input: [6, 6, 3]), .vgg([.conv(4), .pool, .conv(6)], input: [8, 8, 3]),
                     .vit(patch: 4, width: 8, depth: 1, heads: 2, mlpRatio: 2, input: [8, 8, 3])] {
            var arch = base
            arch.normalize = norm
            let plain = try Network<Double>(base, seed: 5), normed = try Network<Double>.loaded(arch, Dictionary(uniqueKeysWithValues: plain.stateDict().map { ($0.name, $0.value) }))
            var rng = SeededRNG(seed: 2)
            let x = TensorOf<Double>.randomUniform([3] + base.input, lo: 0, hi: 1, rng: &rng)
            var xn = x
            for i in 0..<xn.count { let c = i % 3; xn.storage[i] = (x.storage[i] - norm.mean[c]) / norm.std[c] }
            let (a, b) = (normed.forward(x, training: true), plain.forward(xn, training: true))
            for (u, v) in zip(a.storage, b.storage) { XCTAssertEqual(u, v, accuracy: 1e-12, "\(base)") }
            // The input gradient carries the chain rule's 1/std.
            let dx = normed.backward(a), dxn = plain.backward(b)
            for i in 0..<dx.count { XCTAssertEqual(dx.storage[i], dxn.storage[i] / norm.std[i % 3], accuracy: 1e-12) }
        }
    }

    /// A model trained on raw 0…255 BGR pixels: the stored RGB image's channels are read reversed and scaled first.
    func testScaleAndChannelOrder() throws {
        let bgr = Architecture.Normalization(mean: [100, 110, 120], std: [50, 60, 70], scale: 255, channels: [2, 1, 0])
        let base = Architecture.mlp(hidden: [5], input: [2, 3, 3])
        var arch = base
        arch.normalize = bgr
        XCTAssertEqual(try Architecture.decode(json: arch.json), arch)
        XCTAssertTrue(arch.json.contains("\"channels\":[2,1,0]") && arch.json.contains("\"scale\":255"), arch.json)
        let plain = try Network<Double>(base, seed: 3), normed = try Network<Double>.loaded(arch, Dictionary(uniqueKeysWithValues: plain.stateDict().map { ($0.name, $0.value) }))
        var rng = SeededRNG(seed: 4)
        let x = TensorOf<Double>.randomUniform([2] + base.input, lo: 0, hi: 1, rng: &rng)
        var xn = x
        for i in 0..<xn.count {
            let c = i % 3, pixel = i - c
            xn.storage[i] = (x.storage[pixel + bgr.channels![c]] * 255 - bgr.mean[c]) / bgr.std[c]
        }
        let (a, b) = (normed.forward(x, training: true), plain.forward(xn, training: true))
        for (u, v) in zip(a.storage, b.storage) { XCTAssertEqual(u, v, accuracy: 1e-10) }
        // dL/dx of stored channel j comes from the input channel that reads it: × 255 / std of that channel.
        let dx = normed.backward(a), dxn = plain.backward(b)
        for i in 0..<dx.count {
            let stored = i % 3, pixel = i - stored, k = bgr.channels!.firstIndex(of: stored)!
            XCTAssertEqual(dx.storage[i], dxn.storage[pixel + k] * 255 / bgr.std[k], accuracy: 1e-10)
        }
        // Defaults spelled out read as absent; a non-permutation or a bad scale is refused by field.
        XCTAssertEqual(Architecture.Normalization(mean: [0], std: [1], scale: 1, channels: [0]), .init(mean: [0], std: [1]))
        arch.normalize = .init(mean: [0, 0, 0], std: [1, 1, 1], channels: [0, 0, 1])
        XCTAssertTrue(arch.validationErrors().contains { $0.contains("normalize.channels must order the 3 input channels") })
        arch.normalize = .init(mean: [0, 0, 0], std: [1, 1, 1], scale: -1)
        XCTAssertTrue(arch.validationErrors().contains { $0.contains("normalize.scale") })
    }

    func testTheContractIsPartOfTheArchitectureAndAbsentByDefault() throws {
        var arch = Architecture.mlp(hidden: [4], input: [2, 2, 3])
        XCTAssertFalse(arch.json.contains("normalize"), "a plain architecture's JSON (and every cache key) is unchanged")
        arch.normalize = norm
        XCTAssertEqual(try Architecture.decode(json: arch.json), arch)
        XCTAssertNotEqual(arch, .mlp(hidden: [4], input: [2, 2, 3]), "models with different input contracts do not merge")
        arch.normalize = .init(mean: [0.5], std: [0.2])
        XCTAssertTrue(arch.validationErrors().contains { $0.contains("one mean and one std per input channel (3)") })
        arch.normalize = .init(mean: [0, 0, 0], std: [1, 0, 1])
        XCTAssertTrue(arch.validationErrors().contains { $0.contains("normalize.std must be positive") })
    }
}
