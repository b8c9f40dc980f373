import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import LigandModels
import LigandNN
import LigandZoo
import XCTest
@testable import LigandPipeline

final class RunRecipeTests: XCTestCase {
    var zooPath = ""
    /// Model files for models experiments: a0, a1, a2 (mlp 784-8-10) and wide (mlp 784-12-10), and junk.safetensors (not a model).
    var modelDir = ""

    override func setUpWithError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-recipe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        zooPath = dir.appendingPathComponent("zoo.yaml").path
        try """
        suites:
          s4:
            kind: seeds
            architectures: [{kind: mlp, hidden: [8]}]
            models: 4
          t5:
            kind: tasks
            architectures: [mlp]
            tasks: [rotate90, flip_vertical, invert, patch_shuffle, coarse]
            pretrain: {images: 100}
        """.write(toFile: zooPath, atomically: true, encoding: .utf8)
        modelDir = dir.path
        for (name, hidden) in [("a0", 8), ("a1", 8), ("a2", 8), ("wide", 12)] {
            try ModelFile.save(try Network<Float>(.mlp(hidden: [hidden]), seed: 1), to: dir.appendingPathComponent("\(name).safetensors"))
        }
        try Data("not a safetensors file at all".utf8).write(to: dir.appendingPathComponent("junk.safetensors"))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: zooPath).deletingLastPathComponent().path)
    }

    /// A recipe without `zoo:` whose experiments may list model files of `modelDir` by `$D/name`.
    func modelsRecipe(_ experiments: String, top: String = "") throws -> RunRecipe {
        try RunRecipe.parse("\(top)experiments:\n" + experiments.replacingOccurrences(of: "$D", with: modelDir), path: "r.yaml")
    }

    func assertModelsError(_ experiments: String, top: String = "", path: String, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try modelsRecipe(experiments, top: top), file: file, line: line) { e in
            guard let r = e as? RecipeError else { return XCTFail("not a RecipeError: \(e)", file: file, line: line) }
            XCTAssertEqual(r.path, path, "\(r)", file: file, line: line)
            XCTAssertTrue(r.message.contains(text), "\(r)", file: file, line: line)
            XCTAssertTrue("\(r)".hasPrefix("r.yaml: \(path): "), "\(r)", file: file, line: line)
        }
    }

    func recipe(_ experiments: String, top: String = "") throws -> RunRecipe {
        try RunRecipe.parse("zoo: \(zooPath)\n\(top)experiments:\n\(experiments)", path: "r.yaml")
    }

    func assertError(_ experiments: String, top: String = "", path: String, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try recipe(experiments, top: top), file: file, line: line) { e in
            guard let r = e as? RecipeError else { return XCTFail("not a RecipeError: \(e)", file: file, line: line) }
            XCTAssertEqual(r.file, "r.yaml", file: file, line: line)
            XCTAssertEqual(r.path, path, "\(r)", file: file, line: line)
            XCTAssertTrue(r.message.contains(text), "\(r)", file: file, line: line)
            XCTAssertTrue("\(r)".hasPrefix("r.yaml: \(path): "), "\(r)", file: file, line: line)
        }
    }

    func testParsesAGridWithDefaults() throws {
        let r = try recipe("""
          - suite: t5
            k: [3, 2, 3]
            subsets: all
            methods: [average, {method: ties, lambdas: [0.5, 1], ties_k: [20]}, {method: neulig, loss: sup, epochs: 5}]
          - suite: s4
            methods: [cca]
        """, top: "seeds: 2\n")
        XCTAssertEqual(r.out, "out/r")
        XCTAssertEqual(r.experiments[0].k, [2, 3])
        XCTAssertEqual(r.experiments[0].subsets, .all)
        XCTAssertEqual(r.experiments[0].methods[1].parameters.numbers(TIES.keep), [0.2])
        XCTAssertEqual(r.experiments[0].methods[1].settings["lambdas"], "0.5,1")
        XCTAssertEqual(r.experiments[0].methods[2].parameters.text(NeuLig.loss), "sup")
        XCTAssertEqual(r.experiments[1].k, [4], "no k: every model of the suite")
        XCTAssertEqual(r.experiments[1].subsets, .first)
        let plan = r.plan()
        // t5: (C(5,2) + C(5,3)) = 20 subsets; average and ties once, neulig per seed (2); s4: cca once.
        XCTAssertEqual(plan.count, 20 * (1 + 1 + 2) + 1)
        XCTAssertEqual(plan.filter { $0.method.name == "neulig" }.map(\.seed).filter { $0 == 1 }.count, 20)
    }

    func testUnknownKeysAndBadValuesNameTheKeyPath() {
        assertError("  - suite: t5\n    methods: [average, {method: ties, lambdax: [1]}]\n", path: "experiments[0].methods[1].lambdax", contains: "unknown key")
        assertError("  - suite: t5\n    methods: [average, {method: ties, lambdas: [0.5, x]}]\n", path: "experiments[0].methods[1].lambdas[1]", contains: "must be a number")
        assertError("  - suite: t5\n    methods: [{method: ties, ties_k: [120]}]\n", path: "experiments[0].methods[0].ties_k[0]", contains: "percentage")
        assertError("  - suite: t5\n    k: [2, 6]\n    methods: [average]\n", path: "experiments[0].k", contains: "exceeds the 5 tasks")
        assertError("  - suite: t5\n    k: [1]\n    methods: [average]\n", path: "experiments[0].k[0]", contains: "must be an integer ≥ 2, got 1")
        assertError("  - suite: nope\n    methods: [average]\n", path: "experiments[0].suite", contains: "no suite 'nope'")
        assertError("  - suite: t5\n    methods: [cca]\n", path: "experiments[0].methods[0].method", contains: "aligns diverse-origin")
        assertError("  - suite: s4\n    methods: [ties]\n", path: "experiments[0].methods[0].method", contains: "needs a tasks suite")
        // A key the chosen method does not declare is refused with its path (Methods/*.swift declare each method's keys).
        assertError("  - suite: s4\n    methods: [{method: average, gammas: [1]}]\n", path: "experiments[0].methods[0].gammas", contains: "unknown key")
        assertError("  - suite: s4\n    methods: [{method: permute, alphas: [1]}]\n", path: "experiments[0].methods[0].alphas", contains: "unknown key")
        assertError("  - suite: s4\n    methods: [fuse]\n", path: "experiments[0].methods[0].method", contains: "must be one of")
        assertError("  - suite: s4\n    subsets: some\n    methods: [average]\n", path: "experiments[0].subsets", contains: "first, all or an integer in 1...10000")
        assertError("  - suite: s4\n    methods: [{method: neulig, loss: kl}]\n", path: "experiments[0].methods[0].loss", contains: "sup, semi, ensemble")
        assertError("  - suite: s4\n    methods: [average]\n", top: "seeds: 0\n", path: "seeds", contains: "an integer in 1...1000, got 0")
        assertError("  - suite: s4\n    methods: [average]\n", top: "colour: red\n", path: "colour", contains: "unknown key")
        XCTAssertThrowsError(try RunRecipe.parse("zoo: /nowhere.yaml\nexperiments: []\n", path: "r.yaml")) { e in
            XCTAssertEqual((e as? RecipeError)?.path, "zoo")
        }
    }

    func testParsesAModelsExperimentWithoutZoo() throws {
        let r = try modelsRecipe("""
          - name: mine
            models: [$D/a0.safetensors, $D/a1.safetensors, $D/a2.safetensors]
            data: /somewhere/idx
            calibration: 1000
            calibration_seed: 3
            k: [2, 3]
            subsets: all
            methods: [average, {method: cca, calibration_samples: 200}, {method: progressive, align: cca}]
          - name: mine-neulig
            models: [$D/a0.safetensors, $D/a1.safetensors]
            methods: [{method: neulig, epochs: 2}]
        """, top: "seeds: 2\n")
        XCTAssertNil(r.zoo)
        XCTAssertNil(r.zooRecipe)
        let e = r.experiments[0]
        XCTAssertEqual(e.name, "mine")
        XCTAssertNil(e.suite)
        XCTAssertEqual(e.kindLabel, "models")
        XCTAssertEqual(e.available, 3)
        XCTAssertEqual(e.k, [2, 3])
        XCTAssertEqual(e.files?.paths.map { URL(fileURLWithPath: $0).lastPathComponent }, ["a0.safetensors", "a1.safetensors", "a2.safetensors"])
        XCTAssertEqual(e.files?.architecture, .mlp(hidden: [8]))
        XCTAssertEqual(e.files?.data, "/somewhere/idx")
        XCTAssertEqual(e.files?.calibration, 1000)
        XCTAssertEqual(e.files?.calibrationSeed, 3)
        XCTAssertEqual(e.methods.map(\.name), ["average", "cca", "progressive"])
        XCTAssertEqual(e.methods[2].parameters.align?.name, "cca")
        let d = r.experiments[1]
        XCTAssertEqual(d.k, [2], "no k: every file")
        XCTAssertEqual(d.files?.calibration, 5000, "the default hold-out")
        XCTAssertEqual(d.files?.calibrationSeed, 0)
        XCTAssertNil(d.files?.data, "no data: the run's data directory")
        // mine: (C(3,2) + C(3,3)) × 3 methods, once each; mine-neulig: one subset × 2 seeds.
        XCTAssertEqual(r.plan().count, 4 * 3 + 2)
        XCTAssertEqual(ModelFiles.names(e.files!.urls), ["a0", "a1", "a2"])
        // A suite beside models experiments still needs the zoo, and uses it.
        let both = try RunRecipe.parse("zoo: \(zooPath)\nexperiments:\n  - suite: s4\n    methods: [average]\n  - name: mine\n    models: [\(modelDir)/a0.safetensors, \(modelDir)/a1.safetensors]\n    methods: [average]\n", path: "r.yaml")
        XCTAssertEqual(both.experiments.map(\.name), ["s4", "mine"])
        XCTAssertEqual(both.experiments.map(\.kindLabel), ["seeds", "models"])
    }

    func testModelsExperimentErrorsNameTheKeyPathAndTheFile() {
        let two = "[$D/a0.safetensors, $D/a1.safetensors]"
        assertModelsError("  - name: x\n    suite: s4\n    models: \(two)\n    methods: [average]\n", path: "experiments[0]", contains: "give either suite or models")
        assertModelsError("  - name: x\n    methods: [average]\n", path: "experiments[0]", contains: "give either suite")
        assertModelsError("  - models: \(two)\n    methods: [average]\n", path: "experiments[0].name", contains: "is required")
        assertModelsError("  - name: x\n    models: [$D/a0.safetensors, $D/nope.safetensors]\n    methods: [average]\n",
                          path: "experiments[0].models[1]", contains: "nope.safetensors': no such file")
        assertModelsError("  - name: x\n    models: [$D/a0.safetensors, $D/junk.safetensors]\n    methods: [average]\n",
                          path: "experiments[0].models[1]", contains: "junk.safetensors' is not a readable Ligand model file")
        assertModelsError("  - name: x\n    models: [$D/a0.safetensors, $D/a1.safetensors, $D/wide.safetensors]\n    methods: [average]\n",
                          path: "experiments[0].models[2]", contains: "wide.safetensors' holds a mlp 784-12-10, but models[0]")
        assertModelsError("  - name: x\n    models: [$D/a0.safetensors, $D/a0.safetensors]\n    methods: [average]\n",
                          path: "experiments[0].models[1]", contains: "listed twice")
        assertModelsError("  - name: x\n    models: [$D/a0.safetensors]\n    methods: [average]\n", path: "experiments[0].models", contains: "at least 2 model files")
        assertModelsError("  - name: x\n    models: \(two)\n    k: [3]\n    methods: [average]\n", path: "experiments[0].k", contains: "K = 3 exceeds the 2 model files")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [task-arithmetic]\n", path: "experiments[0].methods[0].method", contains: "task-arithmetic combines task vectors")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [ties]\n", path: "experiments[0].methods[0].method", contains: "needs a tasks suite")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [{method: average, lambdas: [1]}]\n", path: "experiments[0].methods[0].lambdas", contains: "unknown key")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [{method: cca, lambdas: [1]}]\n", path: "experiments[0].methods[0].lambdas", contains: "unknown key")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [{method: neulig, baselines: false}]\n", path: "experiments[0].methods[0].baselines", contains: "not to a models experiment")
        assertModelsError("  - name: x\n    models: \(two)\n    subsets: all\n    methods: [neulig]\n", path: "experiments[0].methods[0]", contains: "first K models only")
        assertModelsError("  - name: x\n    models: \(two)\n    arch: mlp\n    methods: [average]\n", path: "experiments[0].arch", contains: "unknown key")
        assertModelsError("  - name: x\n    models: \(two)\n    calibration: 1\n    methods: [average]\n", path: "experiments[0].calibration", contains: "an integer in 2...59999, got 1")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [average]\n  - name: x\n    models: \(two)\n    methods: [cca]\n",
                          path: "experiments[1].name", contains: "already the label of experiments[0]")
        assertModelsError("  - name: x\n    models: \(two)\n    methods: [average]\n  - suite: s4\n    methods: [average]\n", path: "zoo", contains: "is required: experiments[1] names a suite")
    }

    func testSubsetRules() {
        XCTAssertEqual(SubsetRule.first.subsets(of: 5, size: 3, seed: 0), [[0, 1, 2]])
        XCTAssertEqual(SubsetRule.all.subsets(of: 4, size: 2, seed: 0), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
        let a = SubsetRule.random(3).subsets(of: 8, size: 3, seed: 7)
        XCTAssertEqual(a, SubsetRule.random(3).subsets(of: 8, size: 3, seed: 7), "deterministic for a seed")
        XCTAssertNotEqual(a, SubsetRule.random(3).subsets(of: 8, size: 3, seed: 8))
        XCTAssertEqual(Set(a).count, 3)
        XCTAssertTrue(a.allSatisfy { $0.count == 3 && $0 == $0.sorted() && Set($0).count == 3 && $0.allSatisfy { (0..<8).contains($0) } })
        XCTAssertEqual(SubsetRule.random(10).subsets(of: 4, size: 3, seed: 0).count, 4, "no more than C(4,3) subsets")
    }

    static func record(_ suite: String, _ method: String, k: Int, subset: [Int], seed: UInt64 = 0, acc: Double, ens: Double, best: Double, mode: String? = nil) -> RunRecord {
        RunRecord(suite: suite, suiteKind: "seeds", architecture: "mlp", method: method, mode: mode, k: k, subset: subset.map { "m\($0)" },
                  subsetIndices: subset, seed: seed, columns: ["accuracy"], accuracies: [acc], accuracy: acc, ensemble: ens, bestSingle: best,
                  wallSeconds: 2, bytesCommunicated: 10, ranks: 2)
    }

    var sample: RunReport {
        RunReport(recipe: "r.yaml", ranks: 2, records: [
            Self.record("s", "cca", k: 2, subset: [0, 1], acc: 0.80, ens: 0.85, best: 0.84),
            Self.record("s", "cca", k: 2, subset: [2, 3], acc: 0.84, ens: 0.87, best: 0.86),
            Self.record("s", "cca", k: 2, subset: [0, 1], seed: 1, acc: 0.82, ens: 0.85, best: 0.84),
            Self.record("s", "cca", k: 4, subset: [0, 1, 2, 3], acc: 0.83, ens: 0.88, best: 0.86),
            Self.record("s", "neulig", k: 2, subset: [0, 1], acc: 0.86, ens: 0.85, best: 0.84, mode: "task"),
        ])
    }

    func testAggregationIsMeanAndSampleStdOverSubsetsAndSeeds() throws {
        let g = sample.groups
        XCTAssertEqual(g.map(\.series), ["cca", "cca", "neulig (task)"])
        XCTAssertEqual(g[0].k, 2); XCTAssertEqual(g[0].runs, 3)
        XCTAssertEqual(g[0].merged.mean, 0.82, accuracy: 1e-12)
        XCTAssertEqual(g[0].merged.std, 0.02, accuracy: 1e-12)
        XCTAssertEqual(g[0].ensemble!.mean, (0.85 + 0.87 + 0.85) / 3, accuracy: 1e-12)
        XCTAssertEqual(g[0].gapPoints!, 100 * (0.82 - (0.85 + 0.87 + 0.85) / 3), accuracy: 1e-9)
        XCTAssertEqual(g[1].merged.std, 0, "one run: no spread")
        XCTAssertEqual(g[0].wallSeconds, 6)
        let md = sample.markdown()
        XCTAssertTrue(md.contains("| cca | 2 | 3 | 82.00 ± 2.00 | 85.67 ± 1.15 | 84.67 ± 1.15 | -3.67 |"), md)
        XCTAssertTrue(md.contains("| neulig (task) | 2 | 1 | 86.00 | 85.00 | 84.00 | +1.00 |"), md)
        // The JSON round-trips every figure.
        let back = try JSONDecoder().decode(RunReport.self, from: try JSONEncoder().encode(sample))
        XCTAssertEqual(back.records, sample.records)
    }

    func testATaggedParameterNamesTheSeries() throws {
        var m = RunMethod(method: Progressive.self)
        XCTAssertEqual(m.label, "progressive")
        try m.parameters.set(Progressive.start, text: "average")
        try m.parameters.set(Progressive.ridges, numbers: [1])
        XCTAssertEqual(m.label, "progressive (start average)", "an untagged parameter does not make a variant")
        try m.parameters.set(Progressive.perLayerRidge, flag: true)
        try m.parameters.set(CommonParameters.batchNorm, text: "fold")
        XCTAssertEqual(m.label, "progressive (bn fold, per-layer ridge, start average)", "in the order the method declares them")
        var c = RunMethod(method: CCA.self)
        try c.parameters.set(CommonParameters.batchNorm, text: "map")
        XCTAssertEqual(c.label, "cca", "the default, even when written, is the plain method")
    }

    func testTasksTableMeasuresAgainstTheExpertsAndThePortlandEnsemble() {
        func tasks(_ method: String, _ subset: [Int], acc: Double, portland: Double? = nil, mode: String? = nil) -> RunRecord {
            RunRecord(suite: "t", suiteKind: "tasks", architecture: "mlp", method: method, mode: mode, k: 2, subset: subset.map { "t\($0)" },
                      subsetIndices: subset, seed: 0, columns: ["a", "b"], accuracies: [acc, acc], accuracy: acc, ensemble: 0.70,
                      bestSingle: 0.80, portlandEnsemble: portland, wallSeconds: 1, bytesCommunicated: nil, ranks: 1)
        }
        var progressive = tasks("progressive", [0, 1], acc: 0.79)
        progressive.ensemble = nil
        let report = RunReport(recipe: "r.yaml", ranks: 1, records: [
            tasks("neulig", [0, 1], acc: 0.76, portland: 0.74, mode: "global"), tasks("neulig", [2, 3], acc: 0.72, portland: 0.78, mode: "global"),
            tasks("tsv-m", [0, 1], acc: 0.78), tasks("tsv-m", [2, 3], acc: 0.74), tasks("tsv-m", [4, 5], acc: 0.70), progressive])
        let g = report.groups
        XCTAssertEqual(g[1].normalised!.mean, 0.74 / 0.80, accuracy: 1e-12)
        // A method without a Portland takes NeuLig's of the same subsets: two of its three runs have one.
        XCTAssertEqual(g[1].portlandEnsemble!.mean, 0.76, accuracy: 1e-12)
        XCTAssertEqual(g[1].portlandEnsemble!.count, 2)
        let md = report.markdown()
        XCTAssertTrue(md.contains("| method | K | runs | merged | normalised | experts | Portland ensemble | ensemble | wall s |"), md)
        XCTAssertTrue(md.contains("| tsv-m | 2 | 3 | 74.00 ± 4.00 | 92.50 ± 5.00 | 80.00 ± 0.00 | 76.00 ± 2.83 | 70.00 ± 0.00 | 3.0 |"), md)
        // A run without the prediction ensemble shows the one of the same models from another run.
        XCTAssertTrue(md.contains("| progressive | 2 | 1 | 79.00 | 98.75 | 80.00 | 74.00 | 70.00 | 1.0 |"), md)
    }

    func testRecordsFromReportRows() {
        let rows = [ReportRow(name: "ensemble (mean softmax)", kind: .ensemble, accuracies: [0.9], mean: 0.9),
                    ReportRow(name: "best single model (m1)", kind: .bestSingle, accuracies: [0.88], mean: 0.88),
                    ReportRow(name: "weight averaging (no alignment)", kind: .baseline, accuracies: [0.5], mean: 0.5),
                    ReportRow(name: "fused: cca", kind: .fused, accuracies: [0.87], mean: 0.87, hyperparameters: ["gamma": "1e-2"]),
                    ReportRow(name: "m0", kind: .single, accuracies: [0.86], mean: 0.86),
                    ReportRow(name: "reference (m0)", kind: .reference, accuracies: [0.86], mean: 0.86),
                    ReportRow(name: "mean single model", kind: .baseline, accuracies: [0.87], mean: 0.87),
                    // Read by kind: a renamed ensemble is still the ensemble, a Portland ensemble its own field.
                    ReportRow(name: "Portland ensemble (Σ β(x)·logits)", kind: .portlandEnsemble, accuracies: [0.95], mean: 0.95)]
        let r = RunRecord.from(rows: rows, method: "cca", suite: "s", suiteKind: "seeds", architecture: "mlp", columns: ["accuracy"], k: 2,
                               subset: ["m0", "m1"], subsetIndices: [0, 1], seed: 0, settings: ["gammas": "0.01"], wallSeconds: 1, bytes: 5, ranks: 1)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r[0].accuracy, 0.87); XCTAssertEqual(r[0].ensemble, 0.9); XCTAssertEqual(r[0].bestSingle, 0.88)
        XCTAssertEqual(r[0].hyperparameters, ["gamma": "1e-2", "gammas": "0.01"])
        XCTAssertEqual(r[0].baselines, ["weight averaging (no alignment)": 0.5, "mean single model": 0.87])
        XCTAssertEqual(r[0].portlandEnsemble, 0.95)
        let n = RunRecord.from(rows: [ReportRow(name: "NeuLig fused, task mode", kind: .fused, accuracies: [0.8, 0.9], mean: 0.85),
                                      ReportRow(name: "NeuLig fused, global mode (1 model)", kind: .fused, accuracies: [0.7, 0.8], mean: 0.75)],
                               method: "neulig", suite: "t", suiteKind: "tasks", architecture: "mlp", columns: ["a", "b"], k: 2, subset: ["a", "b"],
                               subsetIndices: [0, 1], seed: 0, settings: [:], wallSeconds: 1, bytes: nil, ranks: 1)
        XCTAssertEqual(n.map(\.mode), ["task", "global"])
        XCTAssertEqual(n.map(\.series), ["neulig (task)", "neulig (global)"])
        var aligned = r[0]
        aligned.method = "regmean"; aligned.hyperparameters["align"] = "cca"
        XCTAssertEqual(aligned.series, "cca → regmean", "an aligned run is its own series")
    }

    /// Collects the series names and shapes of an SVG while checking it is well-formed XML.
    final class SVGScan: NSObject, XMLParserDelegate {
        var series: [String] = [], circles = 0, polylines = 0, dashed = 0, diagonals = 0, root = ""
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes a: [String: String]) {
            if root.isEmpty { root = name }
            if name == "g", a["class"] == "series", let n = a["data-name"] { series.append(n) }
            if name == "circle" { circles += 1 }
            if name == "polyline" { polylines += 1; if a["stroke-dasharray"] != nil { dashed += 1 } }
            if name == "line", a["class"] == "diagonal" { diagonals += 1 }
        }
    }

    func scan(_ svg: String) -> SVGScan {
        let p = XMLParser(data: Data(svg.utf8)), s = SVGScan()
        p.delegate = s
        XCTAssertTrue(p.parse(), "not well-formed XML: \(String(describing: p.parserError))")
        return s
    }

    func testChartsAreWellFormedSVGWithTheExpectedSeries() {
        let a = scan(SVGChart.accuracyVsK(sample))
        XCTAssertEqual(a.root, "svg")
        XCTAssertEqual(a.series, ["cca", "neulig (task)", "ensemble"])
        XCTAssertEqual(a.dashed, 1, "the ensemble is the dashed reference line")
        XCTAssertEqual(a.polylines, 2, "cca (K = 2, 4) and the ensemble have lines; neulig has one point")
        XCTAssertEqual(a.circles, 2 + 1)
        let b = scan(SVGChart.mergedVsEnsemble(sample))
        XCTAssertEqual(b.series, ["s: cca", "s: neulig (task)"])
        // One point per subset: cca has K=2 {0,1} (two seeds averaged), {2,3}, and K=4.
        XCTAssertEqual(b.circles, 3 + 1)
        XCTAssertEqual(b.diagonals, 1)
        // Names with XML specials are escaped.
        var odd = sample
        odd.records[0].suite = "a<b&c"
        _ = scan(SVGChart.accuracyVsK(odd))
    }

    func testTicksAreRoundAndCoverTheRange() {
        XCTAssertEqual(SVGChart.ticks(0, 10), [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(SVGChart.ticks(81.3, 87.9), [82, 84, 86])
        XCTAssertEqual(SVGChart.ticks(1.5, 8.5, integers: true), [2, 4, 6, 8])
    }
}
