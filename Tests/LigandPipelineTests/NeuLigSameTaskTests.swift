import XCTest
import LigandCollective
import LigandData
import LigandFormats
import LigandMerge
import LigandModels
import LigandNeuLig
import LigandNN
import LigandNumerics
@testable import LigandPipeline

/// NeuLig on same-task models (seeds suites), alone and after an alignment, and the TIES baseline row.
final class NeuLigSameTaskTests: XCTestCase {
    static let mlp = Architecture.mlp(hidden: [12, 8], input: [4, 4, 1], classes: 3)

    func images(_ n: Int, seed: UInt64) -> LabeledImages {
        var rng = SeededRNG(seed: seed, stream: "neulig-same-task-images")
        let arch = Self.mlp
        let size = arch.input.reduce(1, *)
        let pixels = (0..<(n * size)).map { _ in Float(rng.normal()) }
        let labels = (0..<n).map { _ in rng.int(below: arch.classes) }
        return LabeledImages(height: arch.input[0], width: arch.input[1], channels: arch.input[2], pixels: pixels, labels: labels, classCount: arch.classes)
    }

    func model(seed: UInt64) throws -> Network<Float> {
        let net = try Network<Float>(Self.mlp, seed: seed)
        var rng = SeededRNG(seed: seed, stream: "neulig-same-task-model")
        var s = net.stateDictionary()
        for key in s.keys.sorted() where s[key]!.rank == 1 {
            s[key] = Tensor(shape: s[key]!.shape, storage: (0..<s[key]!.count).map { _ in Float(0.1 + 0.1 * rng.normal()) })
        }
        try net.load(s)
        return net
    }

    func input(_ models: [Network<Float>]) -> SameTaskInputs {
        SameTaskInputs(suite: "synthetic", names: models.indices.map { "m\($0)" }, architectures: models.map(\.architecture),
                       load: { models[$0] }, calibration: images(120, seed: 1), test: images(90, seed: 2), train: images(200, seed: 3))
    }

    func options(align: String?, out: URL) -> NeuLigOptions {
        var o = NeuLigOptions(suite: "synthetic", outDirectory: out)
        if let align { try! o.parameters.set(CommonParameters.align, text: align) }
        try! o.parameters.set(CCA.gammas, numbers: [1e-3, 1e-1, 10])
        try! o.parameters.set(CommonParameters.bnSamples, integer: 128)
        try! o.parameters.set(NeuLig.checkpointEvery, integer: 0)
        o.quiet = true
        try! o.parameters.set(NeuLig.loss, text: "sup")
        try! o.parameters.set(NeuLig.epochs, integer: 4)
        try! o.parameters.set(NeuLig.batchSize, integer: 32)
        try! o.parameters.set(NeuLig.lr, numbers: [0.05])
        return o
    }

    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("ligand-neulig-same-\(UUID().uuidString)")
    }

    /// Alone and after CCA or permutation: the fused file, β̄ and every accuracy are bitwise the same for 1, 2 and 3 ranks.
    func testBitwiseIdenticalAcrossRankCounts() throws {
        let models = try (0..<4).map { try model(seed: 40 + UInt64($0)) }
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        for align in [nil, "cca", "permute"] as [String?] {
            var files: [Data] = []
            var reports: [NeuLigReport] = []
            for size in 1...3 {
                let out = root.appendingPathComponent("\(align ?? "none")-\(size)")
                let o = options(align: align, out: out)
                let data = input(models)
                let r = try InProcessCommunicator.run(size: size) { comm in
                    try NeuLigRun.runSameTask(data, options: o, comm: CountingCommunicator(comm))
                }
                for x in r { XCTAssertEqual(x.coefficientsGlobal, r[0].coefficientsGlobal) }
                files.append(try Data(contentsOf: out.appendingPathComponent("neulig-global.safetensors")))
                reports.append(r[0])
                if size > 1 { XCTAssertGreaterThan(r[0].bytesCommunicated ?? 0, 0) } else { XCTAssertEqual(r[0].bytesCommunicated, 0) }
            }
            for (f, r) in zip(files, reports) {
                XCTAssertEqual(f, files[0], "fused file, align \(align ?? "none")")
                XCTAssertEqual(r.coefficientsGlobal, reports[0].coefficientsGlobal)
                XCTAssertEqual(r.rows.map(\.mean), reports[0].rows.map(\.mean))
            }
            let names = reports[0].rows.map(\.name)
            XCTAssertTrue(names.contains("ensemble (mean softmax)"), "\(names)")
            XCTAssertTrue(names.contains("Portland ensemble (Σ β(x)·logits)"), "\(names)")
            if let a = align {
                XCTAssertTrue(names.contains("\(a) alone (fused: \(a))"), "\(names)")
                XCTAssertTrue(names.contains("\(a) then NeuLig, fused (mean β)"), "\(names)")
                XCTAssertNotNil(reports[0].alignment)
            } else {
                XCTAssertTrue(names.contains("NeuLig alone, fused (mean β)") && names.contains("weight averaging (no alignment)"), "\(names)")
            }
            XCTAssertEqual(reports[0].coefficientsGlobal.reduce(0, +), 1, accuracy: 1e-9)
        }
    }

    /// Without BatchNorm, the fused file is Σ_k β̄_k θ_k of the models (head included), summed in Float64.
    func testFusedModelIsTheBetaWeightedSum() throws {
        let models = try (0..<3).map { try model(seed: 60 + UInt64($0)) }
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let report = try NeuLigRun.runSameTask(input(models), options: options(align: nil, out: out), comm: CountingCommunicator(InProcessCommunicator.single()))
        let beta = report.coefficientsGlobal
        XCTAssertEqual(beta.count, 3)
        XCTAssertGreaterThan(beta.max()! - beta.min()!, 0, "a trained Portland does not stay exactly uniform")
        let fused = try ModelFile.load(out.appendingPathComponent("neulig-global.safetensors")).network
        let states = models.map { $0.stateDict() }
        for (i, entry) in fused.stateDict().enumerated() {
            for j in [0, entry.value.count - 1] {
                let expected = (0..<3).reduce(0.0) { $0 + beta[$1] * Double(states[$1][i].value.storage[j]) }
                XCTAssertEqual(Double(entry.value.storage[j]), expected, accuracy: 1e-6, entry.name)
            }
        }
    }

    func testBadInput() throws {
        let models = try (0..<3).map { try model(seed: 70 + UInt64($0)) }
        let out = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let comm = CountingCommunicator(InProcessCommunicator.single())
        // The parameters' declarations refuse what cannot work before any run (Methods/NeuLig.swift, MergeMethod.swift).
        var o = options(align: nil, out: out)
        XCTAssertThrowsError(try o.parameters.set(CommonParameters.align, text: "average")) { e in
            XCTAssertTrue("\(e)".contains("--align: must be cca, permute or weight-matching, got 'average'"), "\(e)")
        }
        XCTAssertThrowsError(try o.parameters.set(NeuLig.lr, numbers: [0])) { e in
            XCTAssertTrue("\(e)".contains("--lr: must be positive"), "\(e)")
        }
        XCTAssertThrowsError(try o.parameters.set(NeuLig.epochs, integer: 0)) { e in
            XCTAssertTrue("\(e)".contains("--epochs: must be at least 1"), "\(e)")
        }
        let wide = try Network<Float>(Architecture.mlp(hidden: [12, 9], input: [4, 4, 1], classes: 3), seed: 1)
        XCTAssertThrowsError(try NeuLigRun.runSameTask(input(models + [wide]), options: options(align: nil, out: out), comm: comm)) { e in
            XCTAssertTrue("\(e)".contains("m3"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("neulig-global.safetensors").path), "nothing written")
    }

    /// NeuLig's baselines run the task-vector methods on its experts: TIES picks k and λ by the score and returns
    /// θ_pre + λ·TIES(τ); the average and the context are the same on a rank that holds no expert.
    func testBaselinesContextFeedsTheTaskVectorMethods() throws {
        var rng = SeededRNG(seed: 5)
        let pre: [(name: String, value: Tensor)] = [("a.weight", Tensor.randomNormal([3, 4], rng: &rng)), ("a.bias", Tensor.randomNormal([3], rng: &rng))]
        let experts = (0..<3).map { _ in pre.map { e in (name: e.name, value: Tensor(shape: e.value.shape, storage: e.value.storage.map { $0 + Float(rng.normal()) })) } }
        var o = NeuLigOptions(suite: "synthetic", outDirectory: temporaryDirectory())
        try o.parameters.set(TaskArithmetic.lambdas, numbers: [0.2, 0.6, 1.0])
        try o.parameters.set(TIES.keep, numbers: [0.2, 0.5])
        let preFlat = pre.flatMap { $0.value.storage.map(Double.init) }
        let expertFlats = experts.map { $0.flatMap { $0.value.storage.map(Double.init) } }
        for size in [1, 4] {
            let out = try InProcessCommunicator.run(size: size) { comm -> (TaskVectorOutcome, [Double]) in
                let shard = ModelShard(total: 3, comm: comm)
                let c = try NeuLigRun.taskVectorContext(pre: pre, experts: shard.local.map { experts[$0] }, shard: shard, options: o) { t in
                    // Scores the kept fraction (changed coordinates); every λ ties, so the first λ of the best k wins.
                    let v = t.flatMap { $0.value.storage.map(Double.init) }
                    return Double(zip(v, preFlat).filter { $0 != $1 }.count)
                }
                return (try TIES.search(c, experts: c.experts).outcome, c.average)
            }
            for (ties, average) in out {
                XCTAssertEqual(ties.hyperparameters["k"], "50%")
                XCTAssertEqual(ties.hyperparameters["lambda"], "0.2")
                let delta = try TIES.mergedTaskVector(localExperts: expertFlats, pretrained: preFlat, isParameter: [Bool](repeating: true, count: preFlat.count),
                                                      keepFraction: 0.5, shard: ModelShard(total: 3, comm: InProcessCommunicator.single()))
                XCTAssertEqual(ties.backbone, preFlat.indices.map { preFlat[$0] + 0.2 * delta[$0] }, "\(size) ranks")
                XCTAssertEqual(average, preFlat.indices.map { j in (expertFlats[0][j] + expertFlats[1][j] + expertFlats[2][j]) / 3 }, "\(size) ranks")
            }
        }
    }

    func testCountingCommunicatorCountsPayloadBytes() throws {
        let counts = try InProcessCommunicator.run(size: 2) { comm -> Int in
            let c = CountingCommunicator(comm)
            var x = [Double](repeating: 1, count: 10)
            try c.allreduce(&x, op: .sum)
            _ = try c.allgatherv([Float](repeating: 0, count: 3 + c.rank))
            return c.bytes
        }
        XCTAssertEqual(counts, [80 + 7 * 4, 80 + 7 * 4])
        let single = CountingCommunicator(InProcessCommunicator.single())
        var y = [Double](repeating: 1, count: 10)
        try single.allreduce(&y, op: .sum)
        XCTAssertEqual(single.bytes, 0)
        XCTAssertEqual(single.calls, 1)
    }
}
