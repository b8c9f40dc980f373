import Foundation
import XCTest
@testable import LigandZoo

/// Resource bombs and out-of-range counts in zoo recipes: refused at parse time, naming the file and key path.
final class RecipeLimitsTests: XCTestCase {
    let base = """
    suites:
      s:
        kind: seeds
        architectures: [mlp]
        models: 2
    """

    func error(_ text: String) -> String {
        do { _ = try Recipe.parse(text, path: "r.yaml"); return "no error" } catch { return "\(error)" }
    }

    func with(_ extra: String) -> String { base + "\n" + extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") }

    func testBillionLaughsIsRefusedBeforeExpansion() {
        var text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for (prev, name) in zip("abcdefgh", "bcdefghi") {
            text += "\(name): &\(name) [" + Array(repeating: "*\(prev)", count: 10).joined(separator: ", ") + "]\n"
        }
        text += "suites: *i\n"
        let start = Date()
        let e = error(text)
        XCTAssertEqual(e, "r.yaml: expands to more than 100,000 YAML values (aliases counted at their full size): is it an alias bomb?")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "10^10 values must not be expanded")
        // Fields (the run recipe's reader) uses the same loader.
        XCTAssertThrowsError(try Fields.parse(text, file: "f.yaml")) { XCTAssertTrue("\($0)".hasPrefix("f.yaml: expands to more than"), "\($0)") }
    }

    func testDeepNestingIsAParseErrorWithAShortMessage() {
        let e = error("suites: " + String(repeating: "[", count: 500_000))
        XCTAssertTrue(e.hasPrefix("r.yaml: not valid YAML:"), String(e.prefix(300)))
        XCTAssertTrue(e.contains("Maximum nesting level"), String(e.prefix(300)))
        XCTAssertLessThan(e.count, 1_000, "the 500,000-character source line is clipped")
    }

    func testBase60IntegerIsRefusedNotMultipliedOut() {
        // Found by the recipe fuzzer: Yams computes 7777777777777777777:40 in Int and traps on the overflow.
        XCTAssertEqual(error("-7777777777777777777:40"), "r.yaml: line 1: '-7777777777777777777:40' is a YAML base-60 number (like 1:30); write a plain number, or quote it if it is a name")
        XCTAssertTrue(error(with("epochs: 1:30")).hasPrefix("r.yaml: line 6: '1:30' is a YAML base-60 number"), error(with("epochs: 1:30")))
        // Quoted, it is a string, and the field reader names the key.
        XCTAssertFalse(error(with("epochs: '1:30'")).contains("base-60"))
        XCTAssertThrowsError(try Fields.parse("seeds: 1:0:0:0:0:0:0:0:0:0:0:0:0\n", file: "f.yaml")) { XCTAssertTrue("\($0)".hasPrefix("f.yaml: line 1: "), "\($0)") }
    }

    func testSmallAliasesStillWork() throws {
        let r = try Recipe.parse("suites:\n  s:\n    kind: seeds\n    architectures: &archs [mlp]\n    models: 2\n  t:\n    kind: seeds\n    architectures: *archs\n    models: 3\n",
                                 path: "r.yaml")
        XCTAssertEqual(r.suites.map { $0.architectures.map(\.label) }, [["mlp"], ["mlp"]])
    }

    func testOversizedAndDirectoryRecipeFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try Recipe.load(path: dir.path)) { XCTAssertEqual("\($0)", "\(dir.path): is a directory, not a recipe file") }
        let big = dir.appendingPathComponent("big.yaml")
        try Data((base + "\n#" + String(repeating: "x", count: RecipeLimits.maxFileBytes)).utf8).write(to: big)
        XCTAssertThrowsError(try Recipe.load(path: big.path)) { XCTAssertEqual("\($0)", "\(big.path): is larger than the 1,048,576-byte limit for a recipe") }
        XCTAssertThrowsError(try Fields.load(path: big.path)) { XCTAssertTrue("\($0)".contains("1,048,576-byte limit"), "\($0)") }
        // Right at the limit is fine.
        let edge = dir.appendingPathComponent("edge.yaml")
        let pad = RecipeLimits.maxFileBytes - base.utf8.count - 2
        try Data((base + "\n#" + String(repeating: "x", count: pad)).utf8).write(to: edge)
        XCTAssertEqual(try Recipe.load(path: edge.path).suites.count, 1)
    }

    func testCountsAreBoundedWithTheirKeyPath() {
        let cases: [(String, String)] = [
            ("models: 1000000000", "r.yaml: suites.s.models: must be an integer in 1...1000, got 1000000000"),
            ("epochs: 4294967296", "r.yaml: suites.s.epochs: must be an integer in 1...10000, got 4294967296"),
            ("batch_size: 100000000", "r.yaml: suites.s.batch_size: must be an integer in 1...4096, got 100000000"),
            ("calibration: 60000", "r.yaml: suites.s.calibration: must be an integer in 0...59999, got 60000"),
            ("train_images: 1000000", "r.yaml: suites.s.train_images: must be an integer in 1...60000, got 1000000"),
            ("shift: 1000", "r.yaml: suites.s.shift: must be an integer in 0...27, got 1000"),
            ("seed: -1", "r.yaml: suites.s.seed: must be a non-negative integer, got -1"),
        ]
        for (line, message) in cases {
            XCTAssertEqual(error(base.replacingOccurrences(of: "    models: 2", with: "    " + line + (line.hasPrefix("models") ? "" : "\n    models: 2"))), message)
        }
    }

    func testArchitectureSizesAreBounded() {
        func arch(_ a: String) -> String { error(base.replacingOccurrences(of: "[mlp]", with: "[\(a)]")) }
        XCTAssertEqual(arch("{kind: mlp, hidden: [100000]}"), "r.yaml: suites.s.architectures[0].hidden[0]: must be an integer in 1...16384, got 100000")
        XCTAssertEqual(arch("{kind: mlp, hidden: [16384, 16384]}"),
                       "r.yaml: suites.s.architectures[0]: has 281,444,352 weights, more than the limit of 100,000,000 per network")
        XCTAssertEqual(arch("{kind: mlp, hidden: [\(Array(repeating: "8", count: 65).joined(separator: ","))]}"),
                       "r.yaml: suites.s.architectures[0].hidden: lists 65 values, more than the limit of 64")
        XCTAssertEqual(arch("{kind: vgg, config: [8, 99999]}"), "r.yaml: suites.s.architectures[0].config[1]: must be a channel count in 1...16384 or \"M\", got 99999")
        XCTAssertEqual(arch("{kind: vgg, config: [true]}"), "r.yaml: suites.s.architectures[0].config[0]: must be a channel count in 1...16384 or \"M\", got true")
        XCTAssertEqual(arch("{kind: resnet20, width: 1000}"), "r.yaml: suites.s.architectures[0].width: must be an integer in 1...64, got 1000")
        XCTAssertTrue(arch("{kind: resnet20, width: 64}").contains("weights, more than the limit"), arch("{kind: resnet20, width: 64}"))
        XCTAssertEqual(arch("{kind: mlp, epochs: 20000}"), "r.yaml: suites.s.architectures[0].epochs: must be an integer in 1...10000, got 20000")
    }

    func testSuiteModelTotalsAndTaskImagesAreBounded() {
        let splits = "suites:\n  p:\n    kind: splits\n    architectures: [mlp, vgg]\n    partitions: [{type: dirichlet, parts: 600}]\n"
        XCTAssertEqual(error(splits), "r.yaml: suites.p.partitions: asks for 1,200 models (2 architecture(s) × 600), more than the limit of 1,000 per suite")
        XCTAssertEqual(error(splits.replacingOccurrences(of: "600", with: "5000")),
                       "r.yaml: suites.p.partitions[0].parts: must be an integer in 2...1000, got 5000")
        let tasks = "suites:\n  t:\n    kind: tasks\n    architectures: [mlp]\n    tasks: [invert]\n    pretrain: {images: 58000}\n    calibration: 2000\n"
        XCTAssertTrue(error(tasks).hasPrefix("r.yaml: suites.t.pretrain.images: 58000 pretraining images and the 2000 calibration images leave none"), error(tasks))
        XCTAssertEqual(error(tasks.replacingOccurrences(of: "58000", with: "100") + "    shots: 100000\n"),
                       "r.yaml: suites.t.shots: must be an integer in 1...60000, got 100000")
    }

    func testArithmeticHelpersAreExactAndOverflowSafe() {
        XCTAssertEqual(RecipeLimits.binomial(30, 15, cap: Int.max), 155_117_520)
        XCTAssertEqual(RecipeLimits.binomial(5, 2, cap: 10), 10)
        XCTAssertNil(RecipeLimits.binomial(5, 2, cap: 9))
        XCTAssertNil(RecipeLimits.binomial(200, 100, cap: Int.max), "C(200, 100) overflows Int: nil, not a trap")
        XCTAssertEqual(RecipeLimits.binomial(60, 30, cap: Int.max), 118_264_581_564_861_424)
        XCTAssertNil(RecipeLimits.product(Int.max, 2))
        XCTAssertEqual(RecipeLimits.grouped(1_234_567), "1,234,567")
        XCTAssertEqual(RecipeLimits.grouped(999), "999")
        XCTAssertEqual(RecipeLimits.weightCount(.mlp(hidden: [8])), 784 * 8 + 8 * 10)
        XCTAssertNil(RecipeLimits.weightCount(.mlp(hidden: [Int.max / 2])))
    }
}
