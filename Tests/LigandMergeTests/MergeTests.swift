import XCTest
import LigandCollective
import LigandNN
import LigandNumerics
@testable import LigandMerge

final class MergeTests: XCTestCase {
    static let mlp = Architecture.mlp(hidden: [32, 16], input: [6, 6, 1], classes: 5)
    static let vgg = Architecture.vgg([.conv(4), .pool, .conv(8)], input: [6, 6, 1], classes: 5)
    static let vggBN = Architecture.vgg([.conv(4), .pool, .conv(8)], input: [6, 6, 1], classes: 5, batchNorm: true)
    static let resnet = Architecture.resnet20(width: 1, input: [8, 8, 1], classes: 5)
    static let vit = Architecture.vit(patch: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, input: [6, 6, 1], classes: 5)
    /// CLIP's tower: norm_pre, QuickGELU, a bias-free patch projection and proj before the head.
    static let clip = Architecture.clip(patch: 3, width: 8, depth: 2, heads: 2, embed: 6, input: [6, 6, 1], classes: 5)
    static let all = [mlp, vgg, vggBN, resnet, vit, clip]

    /// A network with non-trivial biases and BatchNorm scale, shift and running statistics.
    func makeNetwork(_ arch: Architecture, seed: UInt64) throws -> Network<Float> {
        let net = try Network<Float>(arch, seed: seed)
        var rng = SeededRNG(seed: seed, stream: "test-randomise")
        var state = net.stateDictionary()
        // In name order: a dictionary's order differs from process to process, and so would the network.
        for (name, t) in state.sorted(by: { $0.key < $1.key }) where t.rank == 1 {
            let v: [Float]
            switch name {
            case _ where name.hasSuffix("running_var"): v = (0..<t.count).map { _ in Float(0.5 + 1.5 * rng.uniform()) }
            case _ where name.hasSuffix("running_mean"): v = (0..<t.count).map { _ in Float(0.2 * rng.normal()) }
            case _ where graphRoleIsBNWeight(name, state): v = (0..<t.count).map { _ in Float(0.5 + rng.uniform()) }
            default: v = (0..<t.count).map { _ in Float(0.1 * rng.normal()) }
            }
            state[name] = Tensor(shape: t.shape, storage: v)
        }
        try net.load(state)
        return net
    }

    func graphRoleIsBNWeight(_ name: String, _ state: StateDict) -> Bool {
        name.hasSuffix(".weight") && state[String(name.dropLast(".weight".count)) + ".running_mean"] != nil
    }

    func input(_ arch: Architecture, _ n: Int, seed: UInt64) -> Tensor {
        var rng = SeededRNG(seed: seed, stream: "test-input")
        return Tensor.randomNormal([n] + arch.input, rng: &rng)
    }

    /// A random permutation per point; a ViT's attention: a random head permutation shared by Q/K and V, with random
    /// permutations within each head (`heads: false`: the attention points keep the identity).
    func randomPermutations(_ graph: MergeGraph, seed: UInt64, heads: Bool = true) -> [String: [Int]] {
        var rng = SeededRNG(seed: seed, stream: "test-permutation")
        var perms = Dictionary(uniqueKeysWithValues: graph.points.map { ($0.name, rng.permutation($0.channels)) })
        for a in graph.attention {
            let sigma = heads ? rng.permutation(a.heads) : Array(0..<a.heads), dh = a.headWidth
            for point in [a.qk, a.v] {
                perms[point] = (0..<a.heads).flatMap { h in (heads ? rng.permutation(dh) : Array(0..<dh)).map { sigma[h] * dh + $0 } }
            }
        }
        return perms
    }

    func inverse(_ p: [Int]) -> [Int] {
        var q = [Int](repeating: 0, count: p.count)
        for (i, j) in p.enumerated() { q[j] = i }
        return q
    }

    func network(_ arch: Architecture, _ state: StateDict) throws -> Network<Float> {
        let n = try Network<Float>(arch, seed: 99)
        try n.load(state)
        return n
    }

    func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.storage, b.storage).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// The original model and a copy whose hidden units are permuted at every merge point.
    func permutedPair(_ arch: Architecture, seed: UInt64, calibrateBatchNorm: Bool = false, heads: Bool = true) throws -> (MergeGraph, Network<Float>, Network<Float>, [String: [Int]]) {
        let graph = try MergeGraph(arch)
        let original = try makeNetwork(arch, seed: seed)
        if calibrateBatchNorm { try reestimateBatchNorm(original, batches: [input(arch, 32, seed: 77)]) }
        let perms = randomPermutations(graph, seed: seed, heads: heads)
        let maps = try perms.mapValues { try PointMap.permutation($0) }
        let permuted = try network(arch, try applyMaps(original.stateDictionary(), maps: maps, graph: graph))
        return (graph, original, permuted, perms)
    }

    // MARK: graph

    func testMergeGraphRoles() throws {
        let g = try MergeGraph(Self.resnet)
        XCTAssertEqual(g.points.count, 12)
        func io(_ n: String) -> [String?] { let r = g.role(named: n)!; return [r.outPoint, r.inPoint] }
        XCTAssertEqual(io("conv1.weight"), ["stream1", nil])
        XCTAssertEqual(io("bn1.running_var"), ["stream1", nil])
        XCTAssertEqual(io("layer1.0.conv1.weight"), ["layer1.0.inner", "stream1"])
        XCTAssertEqual(io("layer2.0.conv1.weight"), ["layer2.0.inner", "stream1"])
        XCTAssertEqual(io("layer2.1.conv1.weight"), ["layer2.1.inner", "stream2"])
        XCTAssertEqual(io("layer2.0.conv2.weight"), ["stream2", "layer2.0.inner"])
        XCTAssertEqual(io("layer3.0.shortcut.0.weight"), ["stream3", "stream2"])
        XCTAssertEqual(io("layer3.0.shortcut.1.bias"), ["stream3", nil])
        XCTAssertEqual(io("fc.weight"), [nil, "stream3"])
        XCTAssertEqual(io("fc.bias"), [nil, nil])
        XCTAssertTrue(g.role(named: "fc.weight")!.isHead)
        XCTAssertEqual(g.role(named: "layer1.2.bn2.running_mean")!.kind, .runningMean)
        let m = try MergeGraph(Self.mlp)
        XCTAssertEqual(m.role(named: "layers.0.weight")!.inPoint, nil)
        XCTAssertEqual(m.role(named: "layers.2.weight")!.inPoint, "layers.1")
        XCTAssertEqual(m.role(named: "head.weight")!.inPoint, "layers.3")
        let v = try MergeGraph(Self.vgg)
        XCTAssertEqual(v.points.map(\.name), ["features.1", "features.4"])
        XCTAssertEqual(v.role(named: "features.3.weight")!.inPoint, "features.1")
        XCTAssertEqual(v.role(named: "classifier.weight")!.inPoint, "features.4")
        let b = try MergeGraph(Self.vggBN)
        XCTAssertEqual(b.points.map(\.name), ["features.2", "features.6"])
        XCTAssertEqual(b.role(named: "features.1.weight")!.kind, .bnWeight)
        XCTAssertEqual(b.role(named: "features.1.running_var")!.outPoint, "features.2")
        XCTAssertEqual(b.role(named: "features.4.weight")!.inPoint, "features.2")
        XCTAssertEqual(b.role(named: "classifier.weight")!.inPoint, "features.6")
    }

    func testViTMergeGraphHasOneResidualStream() throws {
        let arch = Architecture.vit(patch: 7, width: 8, depth: 2, heads: 2, mlpRatio: 2)
        let g = try MergeGraph(arch)
        XCTAssertEqual(g.points.map(\.name), ["stream", "blocks.0.attn.qk", "blocks.0.attn.v", "blocks.0.mlp.act",
                                               "blocks.1.attn.qk", "blocks.1.attn.v", "blocks.1.mlp.act"])
        XCTAssertEqual(g.role(named: "blocks.1.attn.qkv.weight")!.outSegments, ["blocks.1.attn.qk", "blocks.1.attn.qk", "blocks.1.attn.v"])
        XCTAssertEqual(g.role(named: "blocks.1.attn.qkv.bias")!.outSegments, ["blocks.1.attn.qk", "blocks.1.attn.qk", "blocks.1.attn.v"])
        XCTAssertEqual(g.role(named: "blocks.1.attn.proj.weight")!.inPoint, "blocks.1.attn.v")
        XCTAssertEqual(g.point(ofTap: "blocks.1.attn.heads"), "blocks.1.attn.v")
        XCTAssertEqual(g.role(named: "cls_token")!.kind, .embedding)
        XCTAssertEqual(g.role(named: "blocks.0.norm2.bias")!.kind, .normBias)
        XCTAssertEqual(g.role(named: "blocks.1.mlp.fc1.bias")!.outPoint, "blocks.1.mlp.act")
        XCTAssertEqual(g.role(named: "blocks.1.mlp.fc2.weight")!.inPoint, "blocks.1.mlp.act")
        // Everything that writes or reads the residual stream, on one point.
        for (name, out, inp) in [("patch_embed.proj.weight", "stream", nil), ("patch_embed.proj.bias", "stream", nil), ("cls_token", "stream", nil),
                                 ("pos_embed", "stream", nil), ("blocks.0.norm1.weight", "stream", nil), ("blocks.1.norm2.bias", "stream", nil),
                                 ("blocks.0.attn.qkv.weight", nil, "stream"), ("blocks.0.attn.proj.weight", "stream", "blocks.0.attn.v"),
                                 ("blocks.0.attn.proj.bias", "stream", nil), ("blocks.1.mlp.fc1.weight", "blocks.1.mlp.act", "stream"),
                                 ("blocks.1.mlp.fc2.weight", "stream", "blocks.1.mlp.act"), ("blocks.1.mlp.fc2.bias", "stream", nil),
                                 ("norm.weight", "stream", nil), ("head.weight", nil, "stream"), ("head.bias", nil, nil)] as [(String, String?, String?)] {
            XCTAssertEqual(g.role(named: name)!.outPoint, out, name)
            XCTAssertEqual(g.role(named: name)!.inPoint, inp, name)
        }
        XCTAssertEqual(g.role(named: "pos_embed")!.unitAxis, 2)
        XCTAssertEqual(g.point(ofTap: "blocks.1"), "stream")
        XCTAssertNil(g.point(ofTap: "blocks.1.attn.qkv"))
        XCTAssertNotNil(g.permutationOnly["stream"])
        XCTAssertTrue(try MergeGraph(Self.resnet).permutationOnly.isEmpty)
        // A dense map on the stream is refused (a LayerNorm does not commute with it); a permutation is not.
        let state = try Network<Float>(arch, seed: 1).stateDictionary()
        var rng = SeededRNG(seed: 4, stream: "dense")
        let dense = Matrix(rows: 8, cols: 8, data: (0..<64).map { _ in rng.normal() })
        XCTAssertThrowsError(try applyMaps(state, maps: ["stream": PointMap(forward: dense, inverse: dense)], graph: g)) {
            XCTAssertTrue("\($0)".contains("'stream' takes permutations only"), "\($0)")
        }
        XCTAssertNoThrow(try applyMaps(state, maps: ["stream": try PointMap.permutation(rng.permutation(8))], graph: g))
        // Heads move as wholes, Q/K and V alike: 2 heads of 4 units.
        let swapHeads = try PointMap.permutation([4, 5, 7, 6, 1, 0, 2, 3])
        XCTAssertNoThrow(try applyMaps(state, maps: ["blocks.0.attn.qk": swapHeads, "blocks.0.attn.v": try PointMap.permutation([6, 4, 5, 7, 0, 1, 2, 3])], graph: g))
        for (maps, why) in [(["blocks.0.attn.qk": try PointMap.permutation([0, 4, 2, 3, 1, 5, 6, 7]), "blocks.0.attn.v": .identity(8)], "moves units between heads"),
                            (["blocks.0.attn.qk": swapHeads, "blocks.0.attn.v": .identity(8)], "match the heads differently"),
                            (["blocks.0.attn.qk": swapHeads], "one moves the heads")] {
            XCTAssertThrowsError(try applyMaps(state, maps: maps, graph: g)) { XCTAssertTrue("\($0)".contains(why), "\($0)") }
        }
        XCTAssertThrowsError(try requireSameArchitecture([arch, Self.mlp])) { XCTAssertTrue("\($0)".contains("vit")) }
        // CLIP's tower: norm_pre a LayerNorm, proj a weight of the backbone, the class embedding an embedding.
        let clip = try MergeGraph(.clip(patch: 7, width: 8, depth: 1, heads: 2, embed: 6, input: [28, 28, 1], classes: 10))
        XCTAssertEqual(clip.role(named: "norm_pre.weight")!.kind, .normWeight)
        XCTAssertEqual(clip.role(named: "proj.weight")!.kind, .linearWeight)
        XCTAssertFalse(clip.role(named: "proj.weight")!.isHead)
        XCTAssertEqual(clip.role(named: "proj.weight")!.inPoint, "stream")
        XCTAssertNil(clip.role(named: "head.weight")!.inPoint)
        XCTAssertEqual(clip.role(named: "norm_pre.bias")!.outPoint, "stream")
        XCTAssertNil(clip.role(named: "patch_embed.proj.bias"))
        XCTAssertThrowsError(try requireSameArchitecture([arch, clip.architecture]))
    }

    // MARK: exactness of permutations

    func testPermutedModelComputesSameLogits() throws {
        for arch in Self.all {
            let (_, original, permuted, _) = try permutedPair(arch, seed: 11)
            let x = input(arch, 16, seed: 1)
            let a = original.forward(x), b = permuted.forward(x)
            let scale = max(1, a.maxAbs())
            XCTAssertLessThan(maxAbsDiff(a, b), 1e-5 * scale, "\(arch)")
            XCTAssertGreaterThan(a.maxAbs(), 0.01, "\(arch): logits should not be trivial")   // CLIP: unit features, a std-0.02 head
            // The permutation really changed the weights.
            XCTAssertNotEqual(original.stateDictionary(), permuted.stateDictionary(), "\(arch)")
        }
    }

    func testPermuteRecoversExactPermutation() throws {
        for arch in Self.all {
            let (graph, original, permuted, perms) = try permutedPair(arch, seed: 12, calibrateBatchNorm: true)
            var stats = ModelPairStatistics(graph: graph)
            for b in 0..<4 { try stats.accumulate(reference: original, model: permuted, batch: input(arch, 16, seed: UInt64(100 + b))) }
            // Dead or nearly dead units make activation matching ambiguous; calibrated BN keeps every unit alive.
            // (Relative to the point's mean variance: a ViT's small initial weights give small but live activations.)
            for p in stats.points {
                let v = p.covarianceXX, mean = (0..<p.c1).reduce(0) { $0 + v[$1, $1] } / Double(p.c1)
                XCTAssertTrue((0..<p.c1).allSatisfy { v[$0, $0] > 1e-5 * mean }, "\(arch) \(p.point) has a dead unit")
            }
            let maps = try permutationMaps(stats)
            for p in graph.points { XCTAssertEqual(maps[p.name]!.permutation, inverse(perms[p.name]!), "\(arch) \(p.name)") }
            let aligned = try applyMaps(permuted.stateDictionary(), maps: maps, graph: graph)
            for (name, t) in original.stateDictionary() { XCTAssertEqual(aligned[name], t, "\(arch) \(name)") }
        }
    }

    func testFoldedBatchNormComputesSameLogitsAndAlignsExactly() throws {
        for arch in [Self.vggBN, Self.resnet] {
            let (graph, original, permuted, perms) = try permutedPair(arch, seed: 14)
            let folded = try foldBatchNorm(original.stateDictionary(), graph: graph)
            let x = input(arch, 16, seed: 2)
            let a = original.forward(x), b = try network(arch, folded).forward(x)
            XCTAssertLessThan(maxAbsDiff(a, b), 1e-4 * max(1, a.maxAbs()), "\(arch)")
            XCTAssertNotEqual(folded, original.stateDictionary(), "\(arch): folding changed nothing")
            for role in graph.tensors where role.kind == .bnWeight { XCTAssertTrue(folded[role.name]!.storage.allSatisfy { $0 == 1 }) }
            // On the folded model the permutation acts on convolutions with a bias only; the BN identity stays put.
            let maps = try Dictionary(uniqueKeysWithValues: perms.map { ($0.key, try PointMap.permutation(inverse($0.value))) })
            let permutedFolded = try foldBatchNorm(permuted.stateDictionary(), graph: graph)
            let aligned = try applyMaps(permutedFolded, maps: maps, graph: graph, frozen: BatchNormHandling.fold.frozenKinds)
            for (name, t) in folded { XCTAssertEqual(aligned[name], t, "\(arch) \(name)") }
        }
        XCTAssertThrowsError(try foldBatchNorm([:], graph: try MergeGraph(Self.resnet)))
    }

    func testWeightMatchingRecoversExactPermutation() throws {
        for arch in Self.all {
            // Weight matching keeps a ViT's attention points as they are, so only the stream and MLP units are permuted here.
            let (graph, original, permuted, perms) = try permutedPair(arch, seed: 13, heads: false)
            let result = try weightMatching(reference: original.stateDictionary(), model: permuted.stateDictionary(), graph: graph, seed: 5)
            XCTAssertTrue(result.converged, "\(arch)")
            for p in graph.points { XCTAssertEqual(result.permutations[p.name], inverse(perms[p.name]!), "\(arch) \(p.name)") }
            let aligned = try applyMaps(permuted.stateDictionary(), maps: result.maps, graph: graph)
            for (name, t) in original.stateDictionary() { XCTAssertEqual(aligned[name], t, "\(arch) \(name)") }
        }
    }

    func testCCAOnViTMapsTheMLPDenselyAndPermutesTheStreamAndHeads() throws {
        for arch in [Self.vit, Self.clip] {
            let (graph, original, permuted, perms) = try permutedPair(arch, seed: 15)
            var stats = ModelPairStatistics(graph: graph)
            for b in 0..<6 { try stats.accumulate(reference: original, model: permuted, batch: input(arch, 16, seed: UInt64(200 + b))) }
            let maps = try CCAMapper(stats).maps(gamma: 1e-4)
            for p in graph.points {
                if graph.permutationOnly[p.name] != nil {
                    XCTAssertEqual(maps[p.name]!.permutation, inverse(perms[p.name]!), "\(arch) \(p.name)")
                } else {
                    XCTAssertNil(maps[p.name]!.permutation, "\(arch) \(p.name): CCA's map is dense")
                }
            }
            // The dense maps undo the MLP permutation up to the ridge: the aligned model computes (nearly) the same logits.
            let aligned = try network(arch, try applyMaps(permuted.stateDictionary(), maps: maps, graph: graph))
            let x = input(arch, 16, seed: 3)
            let a = original.forward(x), b = aligned.forward(x)
            XCTAssertLessThan(maxAbsDiff(a, b), 1e-3 * max(1, a.maxAbs()), "\(arch)")
        }
    }

    func testFoldingLayerNormsKeepsAViTsLogitsAndIsRefusedWhereANormFeedsNoLayer() throws {
        let graph = try MergeGraph(Self.vit)
        XCTAssertEqual(graph.layerNormReaders, ["blocks.0.norm1": "blocks.0.attn.qkv", "blocks.0.norm2": "blocks.0.mlp.fc1",
                                                "blocks.1.norm1": "blocks.1.attn.qkv", "blocks.1.norm2": "blocks.1.mlp.fc1", "norm": "head"])
        let net = try makeNetwork(Self.vit, seed: 21)
        let folded = try foldLayerNorms(net.stateDictionary(), graph: graph)
        XCTAssertEqual(folded["norm.weight"]!.storage, [Float](repeating: 1, count: 8))
        XCTAssertEqual(folded["blocks.1.norm2.bias"]!.storage, [Float](repeating: 0, count: 8))
        XCTAssertNotEqual(folded["blocks.0.attn.qkv.weight"], net.stateDictionary()["blocks.0.attn.qkv.weight"])
        let x = input(Self.vit, 8, seed: 4)
        let a = net.forward(x), b = try network(Self.vit, folded).forward(x)
        XCTAssertLessThan(maxAbsDiff(a, b), 1e-5 * max(1, a.maxAbs()))
        // CLIP's norm_pre normalises the stream itself: nothing to fold it into.
        let clip = try MergeGraph(Self.clip)
        XCTAssertNil(clip.layerNormReaders["norm_pre"])
        XCTAssertEqual(clip.layerNormReaders["norm"], "proj")
        XCTAssertThrowsError(try foldLayerNorms(makeNetwork(Self.clip, seed: 2).stateDictionary(), graph: clip, model: "c.safetensors")) {
            XCTAssertTrue("\($0)".contains("c.safetensors: LayerNorm 'norm_pre'"), "\($0)")
        }
    }

    func testADenseStreamMapNeedsFoldedLayerNormsAndAScaledStreamKeepsTheLogits() throws {
        let graph = try MergeGraph(Self.vit)
        let net = try makeNetwork(Self.vit, seed: 22)
        // A Householder reflection H = I − 2vvᵀ/‖v‖² with Σv = 0: dense, orthogonal and H·1 = 1, so n(H·x) = H·n(x) exactly.
        var rng = SeededRNG(seed: 9, stream: "householder")
        var v = (0..<8).map { _ in rng.normal() }
        let mean = v.reduce(0, +) / 8
        v = v.map { $0 - mean }
        let vv = v.reduce(0) { $0 + $1 * $1 }
        var h = Matrix.identity(8)
        for i in 0..<8 { for j in 0..<8 { h[i, j] -= 2 * v[i] * v[j] / vv } }
        let scale = PointMap(forward: h, inverse: h)
        let stream = Network<Float>.vitStream
        // Without the fold (or without asking for it) a dense stream map is refused.
        XCTAssertThrowsError(try applyMaps(net.stateDictionary(), maps: [stream: scale], graph: graph)) {
            XCTAssertTrue("\($0)".contains("permutations only"), "\($0)")
        }
        XCTAssertThrowsError(try applyMaps(net.stateDictionary(), maps: [stream: scale], graph: graph, model: "m", denseStream: true)) {
            XCTAssertTrue("\($0)".contains("m: a dense map of the residual stream needs its LayerNorms folded first"), "\($0)")
        }
        // The reflected stream of the folded model keeps its logits.
        let folded = try foldLayerNorms(net.stateDictionary(), graph: graph)
        let mapped = try applyMaps(folded, maps: [stream: scale], graph: graph, denseStream: true)
        XCTAssertEqual(mapped["blocks.0.norm1.weight"], folded["blocks.0.norm1.weight"])
        XCTAssertNotEqual(mapped["cls_token"], folded["cls_token"])
        let x = input(Self.vit, 8, seed: 5)
        let a = net.forward(x), b = try network(Self.vit, mapped).forward(x)
        XCTAssertLessThan(maxAbsDiff(a, b), 1e-4 * max(1, a.maxAbs()))
        // A dense CCA map of the stream (stream: dense) on a permuted copy: dense where the ablation asks, heads still permuted.
        let (g, original, permuted, _) = try permutedPair(Self.vit, seed: 16)
        var stats = ModelPairStatistics(graph: g)
        for bi in 0..<6 { try stats.accumulate(reference: original, model: permuted, batch: input(Self.vit, 16, seed: UInt64(300 + bi))) }
        let maps = try CCAMapper(stats, denseStream: true).maps(gamma: 1e-4)
        XCTAssertNil(maps[stream]!.permutation)
        XCTAssertNotNil(maps["blocks.0.attn.qk"]!.permutation)
    }

    func testWeightMatchingIsDeterministicAndAligningAModelToItselfIsIdentity() throws {
        let graph = try MergeGraph(Self.resnet)
        let a = try makeNetwork(Self.resnet, seed: 1).stateDictionary(), b = try makeNetwork(Self.resnet, seed: 2).stateDictionary()
        let r1 = try weightMatching(reference: a, model: b, graph: graph, seed: 3)
        let r2 = try weightMatching(reference: a, model: b, graph: graph, seed: 3)
        XCTAssertEqual(r1.permutations, r2.permutations)
        let self_ = try weightMatching(reference: a, model: a, graph: graph, seed: 3)
        for p in graph.points { XCTAssertEqual(self_.permutations[p.name], Array(0..<p.channels)) }
        XCTAssertEqual(self_.sweeps, 1)
    }

    // MARK: CCA

    /// X with correlated, unequally scaled columns and Y = X·Aᵀ (y = A·x per sample), A random and invertible.
    func syntheticPair(c: Int, n: Int, seed: UInt64) -> (x: Tensor, y: Tensor, a: Matrix) {
        var rng = SeededRNG(seed: seed, stream: "cca")
        let z = Tensor.randomNormal([n, c], rng: &rng)
        var mix = Matrix(zeros: c, c)
        for i in 0..<c { for j in 0..<c { mix[i, j] = (i == j ? Double(i + 1) : 0) + 0.3 * rng.normal() } }
        var a = Matrix(zeros: c, c)
        for i in 0..<c { for j in 0..<c { a[i, j] = (i == j ? 2 : 0) + rng.normal() } }
        let x = (Matrix(z).multiplied(by: mix, transOther: true))
        var xs = x
        for r in 0..<n { for j in 0..<c { xs[r, j] += 0.5 + Double(j) } }  // a non-zero mean
        let y = xs.multiplied(by: a, transOther: true)
        return (xs.tensor, y.tensor, a)
    }

    func testCCAMapSendsYBackToX() throws {
        let c = 8, n = 4000
        let (x, y, _) = syntheticPair(c: c, n: n, seed: 3)
        var s = PairStatistics(point: "p", c1: c, ck: c)
        try s.accumulate(x: x, y: y)
        let m = try CCASolver(s).map(gamma: 1e-8)
        let mapped = Matrix(y).multiplied(by: m.forward, transOther: true)
        let err = (mapped - Matrix(x)).norm / Matrix(x).norm
        XCTAssertLessThan(err, 1e-3)
        // The inverse maps X to Y, and forward·inverse = I.
        let back = Matrix(x).multiplied(by: m.inverse, transOther: true)
        XCTAssertLessThan((back - Matrix(y)).norm / Matrix(y).norm, 1e-3)
        XCTAssertLessThan((m.forward * m.inverse).maxAbsDifference(.identity(c)), 1e-8)
        // A large ridge no longer inverts A.
        let far = try CCASolver(s).map(gamma: 1e3)
        let farErr = (Matrix(y).multiplied(by: far.forward, transOther: true) - Matrix(x)).norm / Matrix(x).norm
        XCTAssertGreaterThan(farErr, 1e-2)
    }

    func testCCAGridReusesStatisticsAndMatchesSingleGamma() throws {
        let arch = Self.mlp
        let graph = try MergeGraph(arch)
        let a = try makeNetwork(arch, seed: 1), b = try makeNetwork(arch, seed: 2)
        var stats = ModelPairStatistics(graph: graph)
        try stats.accumulate(reference: a, model: b, batch: input(arch, 256, seed: 4))
        let grid = [1e-4, 1e-1, 10]
        let all = try CCAMapper(stats).maps(gammas: grid)
        for (g, maps) in zip(grid, all) {
            let single = try ccaMaps(stats, gamma: g)
            for p in graph.points {
                XCTAssertLessThan(maps[p.name]!.forward.maxAbsDifference(single[p.name]!.forward), 1e-12)
                XCTAssertLessThan((maps[p.name]!.forward * maps[p.name]!.inverse).maxAbsDifference(.identity(p.channels)), 1e-8)
            }
        }
        // Applying dense maps gives a loadable model; the aligned pair averages to a finite model.
        let fused = try alignAndAverage([a.stateDictionary(), b.stateDictionary()], maps: [nil, all[1]], graph: graph)
        XCTAssertNoThrow(try network(arch, fused))
    }

    // MARK: statistics are sums

    func testStatisticsFromHalvesEqualTheWhole() throws {
        let arch = Self.resnet
        let graph = try MergeGraph(arch)
        let a = try makeNetwork(arch, seed: 1), b = try makeNetwork(arch, seed: 2)
        let x1 = input(arch, 8, seed: 1), x2 = input(arch, 8, seed: 2)
        let whole = Tensor(shape: [16] + arch.input, storage: x1.storage + x2.storage)
        var all = ModelPairStatistics(graph: graph), h1 = all, h2 = all
        try all.accumulate(reference: a, model: b, batch: whole)
        try h1.accumulate(reference: a, model: b, batch: x1)
        try h2.accumulate(reference: a, model: b, batch: x2)
        let merged = try h1.merged(with: h2)
        XCTAssertEqual(merged.packed.count, all.packedCount)
        // Stream taps are accumulated once per block: stream1 sees the stem and 3 blocks.
        XCTAssertEqual(all["stream1"]!.count, 4 * 16 * 64)
        XCTAssertEqual(all["layer3.0.inner"]!.count, 16 * 4)
        // The activations are Float32 GEMM outputs whose rounding depends on the batch's row count (the BLAS kernel
        // path; seen to reach 1.1e-4 relative in the centred sums on a loaded machine), so halves and whole agree to
        // Float32 precision, not Float64; a lost or doubled half would be off by tens of percent.
        for (u, v) in zip(merged.packed, all.packed) { XCTAssertEqual(u, v, accuracy: 1e-3 * max(1, abs(v))) }
        XCTAssertEqual(try all.unpacked(all.packed), all)
        // Two ranks each holding one half all-reduce to the halves' merge, which sums the same Float64 values.
        let reduced = try InProcessCommunicator.run(size: 2) { comm in try (comm.rank == 0 ? h1 : h2).allreduced(comm) }
        for r in reduced { for (u, v) in zip(r.packed, merged.packed) { XCTAssertEqual(u, v, accuracy: 1e-12 * max(1, abs(v))) } }
    }

    func testCovarianceMatchesTwoPassEstimate() throws {
        let (x, y, _) = syntheticPair(c: 3, n: 500, seed: 9)
        var s = PairStatistics(point: "p", c1: 3, ck: 3)
        try s.accumulate(x: x, y: y)
        let xm = Matrix(x), ym = Matrix(y), n = 500.0
        for i in 0..<3 { for j in 0..<3 {
            let mx = (0..<500).reduce(0.0) { $0 + xm[$1, i] } / n, my = (0..<500).reduce(0.0) { $0 + ym[$1, j] } / n
            let c = (0..<500).reduce(0.0) { $0 + (xm[$1, i] - mx) * (ym[$1, j] - my) } / n
            XCTAssertEqual(s.covarianceXY[i, j], c, accuracy: 1e-9 * max(1, abs(c)))
        } }
    }

    // MARK: BatchNorm re-estimation

    func testReestimateBatchNormIsExactAndCombinesLikeSums() throws {
        let arch = Self.resnet
        let net = try makeNetwork(arch, seed: 4)
        let x1 = input(arch, 8, seed: 1), x2 = input(arch, 8, seed: 2)
        let whole = Tensor(shape: [16] + arch.input, storage: x1.storage + x2.storage)
        // bn1's input (the stem convolution) does not depend on any batch statistics: check it directly.
        let state = net.stateDictionary()
        var rng = SeededRNG(seed: 0)
        let stem = Conv2d<Float>(name: "conv1", inChannels: 1, outChannels: 16, kernel: 3, padding: 1, bias: false, rng: &rng)
        stem.weight.value = state["conv1.weight"]!
        let pre = Matrix(stem.forward(whole, training: false).reshaped([-1, 16]))
        try reestimateBatchNorm(net, batches: [x1, x2])
        let bn1 = net.batchNorms[0]
        XCTAssertEqual(bn1.name, "bn1")
        XCTAssertEqual(bn1.numBatchesTracked, 2)
        let rows = Double(pre.rows)
        for j in 0..<16 {
            let m = (0..<pre.rows).reduce(0.0) { $0 + pre[$1, j] } / rows
            let v = (0..<pre.rows).reduce(0.0) { $0 + (pre[$1, j] - m) * (pre[$1, j] - m) } / (rows - 1)
            XCTAssertEqual(Double(bn1.runningMean.value[j]), m, accuracy: 1e-6 * max(1, abs(m)))
            XCTAssertEqual(Double(bn1.runningVar.value[j]), v, accuracy: 1e-6 * max(1, v))
        }
        XCTAssertNotEqual(state["layer3.2.bn2.running_var"], net.stateDictionary()["layer3.2.bn2.running_var"])
        // Statistics of two halves merged (or all-reduced) equal one accumulation over both batches.
        var s = BatchNormStatistics(net), h1 = s, h2 = s
        try s.accumulate(net, batch: x1); try s.accumulate(net, batch: x2)
        try h1.accumulate(net, batch: x1); try h2.accumulate(net, batch: x2)
        XCTAssertEqual(try h1.merged(with: h2).packed, s.packed)
        let reduced = try InProcessCommunicator.run(size: 2) { comm in try (comm.rank == 0 ? h1 : h2).allreduced(comm) }
        XCTAssertEqual(reduced[0].packed, s.packed)
        // No observer is left behind.
        XCTAssertTrue(net.batchNorms.allSatisfy { $0.statisticsObserver == nil })
    }

    // MARK: baselines

    func testAverageIdentities() throws {
        let a = try makeNetwork(Self.resnet, seed: 1).stateDictionary()
        XCTAssertEqual(try averageStateDicts([a, a, a]), a)
        // Average of two is halfway.
        let b = try makeNetwork(Self.resnet, seed: 3).stateDictionary()
        let avg = try averageStateDicts([a, b])
        XCTAssertEqual(avg["fc.bias"]![0], (a["fc.bias"]![0] + b["fc.bias"]![0]) / 2, accuracy: 1e-7)
    }

    // MARK: bad input

    func testBadInputGivesClearErrors() throws {
        let mlp = try makeNetwork(Self.mlp, seed: 1)
        let other = try makeNetwork(.mlp(hidden: [32, 8], input: [6, 6, 1], classes: 5), seed: 1)
        let graph = try MergeGraph(Self.mlp)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        // Different architectures.
        var stats = ModelPairStatistics(graph: graph)
        XCTAssertTrue(message { try stats.accumulate(reference: mlp, model: other, batch: self.input(Self.mlp, 4, seed: 1)) }.contains("different architectures"))
        XCTAssertTrue(message { _ = try weightMatching(reference: mlp.stateDictionary(), model: other.stateDictionary(), graph: graph, seed: 1) }
            .contains("layers.2.weight"))
        XCTAssertTrue(message { _ = try averageStateDicts([mlp.stateDictionary(), other.stateDictionary()]) }.contains("model 1"))
        XCTAssertThrowsError(try requireSameArchitecture([Self.mlp, Self.vgg]))
        // γ must be positive and finite.
        try stats.accumulate(reference: mlp, model: mlp, batch: input(Self.mlp, 64, seed: 2))
        for g in [0, -1e-3, .nan, .infinity] {
            XCTAssertTrue(message { _ = try ccaMaps(stats, gamma: g) }.contains("γ"), "\(g)")
        }
        XCTAssertThrowsError(try CCAMapper(stats).maps(gammas: [1e-3, 0]))
        // A NaN in the statistics names the merge point and the block.
        var packed = stats.packed
        packed[stats.points[0].packedCount + 5] = .nan
        let poisoned = try stats.unpacked(packed)
        let nanMessage = message { _ = try ccaMaps(poisoned, gamma: 1e-3) }
        XCTAssertTrue(nanMessage.contains("layers.3") && nanMessage.contains("NaN"), nanMessage)
        XCTAssertTrue(message { _ = try permutationMaps(poisoned) }.contains("layers.3"))
        // A dead layer (every unit constant) is refused by name; one dead unit is handled by the ridge.
        var dead = PairStatistics(point: "layers.1", c1: 3, ck: 3)
        try dead.accumulate(x: Tensor(shape: [10, 3], repeating: 0), y: Tensor(shape: [10, 3], repeating: 1))
        let deadMessage = message { _ = try CCASolver(dead) }
        XCTAssertTrue(deadMessage.contains("layers.1") && deadMessage.contains("dead"), deadMessage)
        var oneDead = PairStatistics(point: "q", c1: 4, ck: 4)
        let (x, y, _) = syntheticPair(c: 4, n: 200, seed: 1)
        let kill = { (t: Tensor) in Tensor(shape: t.shape, storage: t.storage.enumerated().map { $0.offset % 4 == 2 ? 0 : $0.element }) }
        try oneDead.accumulate(x: kill(x), y: kill(y))
        let m = try CCASolver(oneDead).map(gamma: 1e-4)
        XCTAssertNil(m.forward.firstNonFinite)
        let corr = try correlation(oneDead)
        XCTAssertNil(corr.firstNonFinite)
        XCTAssertEqual((0..<4).map { corr[2, $0] }, [0, 0, 0, 0])
        // Too few samples, bad maps, bad state dicts.
        XCTAssertTrue(message { _ = try CCASolver(PairStatistics(point: "z", c1: 2, ck: 2)) }.contains("at least 2 samples"))
        XCTAssertTrue(message { _ = try applyMaps(mlp.stateDictionary(), maps: ["layers.1": .identity(3)], graph: graph) }.contains("layers.1"))
        XCTAssertTrue(message { _ = try applyMaps(mlp.stateDictionary(), maps: ["nope": .identity(3)], graph: graph) }.contains("nope"))
        var broken = mlp.stateDictionary(); broken["head.bias"] = nil
        XCTAssertTrue(message { _ = try applyMaps(broken, maps: [:], graph: graph) }.contains("head.bias"))
        XCTAssertThrowsError(try PointMap.permutation([0, 0, 1]))
    }
}
