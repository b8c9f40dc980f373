import XCTest
import LigandNumerics
@testable import LigandNN

/// `Network.layerMap` (LayerMap.swift): the weight layers read off the node list, which the merge graph and the
/// fusion plan are built from.
final class LayerMapTests: XCTestCase {
    func testResNetBlocksReadTheirStreamAndInnerTaps() throws {
        let map = try Network<Float>(.resnet20(), seed: 0).layerMap
        // The stem, two convolutions per block, and the two 1×1 shortcuts where the width changes.
        XCTAssertEqual(map.body.count, 1 + 9 * 2 + 2)
        let stem = map.body[0]
        XCTAssertEqual([stem.name, stem.batchNorm, stem.outPoint], ["conv1", "bn1", "stream1"])
        XCTAssertEqual(stem.source, .image); XCTAssertNil(stem.inPoint)
        // Taps in call order: stream1 = 0, then each block's inner and stream; layer2.0 reads tap 6 (layer1.2's stream).
        let conv1 = try XCTUnwrap(map.body.first { $0.name == "layer2.0.conv1" })
        XCTAssertEqual(conv1.source, .tap(6)); XCTAssertEqual(conv1.sourceShape, [28, 28, 16]); XCTAssertEqual(conv1.stride, 2)
        XCTAssertEqual([conv1.inPoint, conv1.outPoint, conv1.batchNorm], ["stream1", "layer2.0.inner", "layer2.0.bn1"])
        let conv2 = try XCTUnwrap(map.body.first { $0.name == "layer2.0.conv2" })
        XCTAssertEqual(conv2.source, .tap(7)); XCTAssertEqual(conv2.sourceShape, [14, 14, 32])
        XCTAssertEqual([conv2.inPoint, conv2.outPoint], ["layer2.0.inner", "stream2"])
        let shortcut = try XCTUnwrap(map.body.first { $0.name == "layer2.0.shortcut.0" })
        XCTAssertEqual(shortcut.source, .tap(6)); XCTAssertEqual(shortcut.kernel, 1)
        XCTAssertEqual([shortcut.inPoint, shortcut.outPoint, shortcut.batchNorm], ["stream1", "stream2", "layer2.0.shortcut.1"])
        XCTAssertNil(map.body.first { $0.name == "layer2.1.shortcut.0" }, "no shortcut where the width stays")
        XCTAssertEqual(map.head.name, "fc"); XCTAssertEqual(map.head.source, .tap(18)); XCTAssertEqual(map.head.sourceShape, [7, 7, 64])
        XCTAssertTrue(map.head.globalPool); XCTAssertEqual(map.head.inPoint, "stream3"); XCTAssertNil(map.head.outPoint)
    }

    func testVGGCountsThePoolsBetweenATapAndTheNextLayer() throws {
        let arch = Architecture.vgg([.conv(8), .pool, .conv(16), .pool, .pool, .conv(4)], batchNorm: true)
        let map = try Network<Float>(arch, seed: 0).layerMap
        XCTAssertEqual(map.body.map(\.name), ["features.0", "features.4", "features.9"])
        XCTAssertEqual(map.body.map(\.batchNorm), ["features.1", "features.5", "features.10"])
        XCTAssertEqual(map.body.map(\.outPoint), ["features.2", "features.6", "features.11"])
        XCTAssertEqual(map.body.map(\.inPoint), [nil, "features.2", "features.6"])
        XCTAssertEqual(map.body.map(\.pools), [0, 1, 2])
        XCTAssertEqual(map.body[2].sourceShape, [14, 14, 16]); XCTAssertEqual(map.body[2].inputShape, [3, 3, 16])
        XCTAssertEqual(map.head.pools, 0); XCTAssertTrue(map.head.globalPool); XCTAssertEqual(map.head.sourceShape, [3, 3, 4])
    }

    func testMLPLayersReadTheImageThenEachReLU() throws {
        let map = try Network<Float>(.mlp(hidden: [6, 5], input: [3, 3, 2], classes: 4), seed: 0).layerMap
        XCTAssertEqual(map.body.map(\.name), ["layers.0", "layers.2"])
        XCTAssertEqual(map.body.map(\.source), [.image, .tap(0)])
        XCTAssertEqual(map.body.map(\.sourceShape), [[3, 3, 2], [6]])
        XCTAssertEqual(map.body.map(\.inputShape), [[18], [6]])
        XCTAssertEqual(map.body.map(\.outPoint), ["layers.1", "layers.3"])
        XCTAssertEqual([map.head.name, map.head.inPoint], ["head", "layers.3"]); XCTAssertEqual(map.head.source, .tap(1))
    }

    func testViTLinearLayersReadTheirOwnTapsOverTokens() throws {
        let net = try Network<Float>(.vit(patch: 7, width: 8, depth: 2, heads: 2, mlpRatio: 2), rng: .drawless)
        let map = net.layerMap
        XCTAssertEqual(map.body.count, 1 + 2 * 4)
        let embed = map.body[0]
        XCTAssertEqual([embed.name, "\(embed.kernel)", "\(embed.stride)", "\(embed.rowsPerSample)"], ["patch_embed.proj", "7", "7", "16"])
        XCTAssertEqual(embed.source, .image)
        let fc1 = map.body[7], fc2 = map.body[8]
        XCTAssertEqual(fc1.name, "blocks.1.mlp.fc1")
        XCTAssertEqual(fc1.source, .tap(7))
        XCTAssertEqual(fc1.sourceShape, [17, 8])
        XCTAssertEqual(fc1.rowsPerSample, 17)
        XCTAssertEqual(fc1.outPoint, "blocks.1.mlp.act")
        XCTAssertEqual(fc2.inPoint, "blocks.1.mlp.act")
        XCTAssertEqual(fc2.columns, 16)
        // The residual stream is one merge point: block 1's qkv reads it, its output projection writes it and reads the
        // value units; fc2 writes it; the head reads it.
        XCTAssertEqual(map.body[5].name, "blocks.1.attn.qkv")
        XCTAssertEqual(map.body[5].inPoint, "stream")
        XCTAssertNil(map.body[5].outPoint)
        XCTAssertEqual(map.body[6].outPoint, "stream")
        XCTAssertEqual(map.body[6].inPoint, "blocks.1.attn.v")
        XCTAssertEqual(fc2.outPoint, "stream")
        XCTAssertEqual(embed.outPoint, "stream")
        XCTAssertEqual(map.head.source, .tap(10))
        XCTAssertEqual(map.head.sourceShape, [8])
        XCTAssertEqual(map.head.inPoint, "stream")
        // 2·(tokens·in·out) per layer plus 4·T²·d of attention per block.
        let layers = 2.0 * Double(16 * 49 * 8 + 2 * (17 * 8 * 24 + 17 * 8 * 8 + 17 * 8 * 16 + 17 * 16 * 8) + 8 * 10)
        XCTAssertEqual(net.forwardFLOPs, layers + 2 * 4 * 17 * 17 * 8)
    }
}
