import Foundation
import LigandZoo
import XCTest
@testable import LigandPipeline

/// Run recipes whose plan would be huge are refused while parsing (so `--dry-run` too), counted without listing the plan.
final class RunRecipeLimitsTests: XCTestCase {
    var dir: URL!
    var zoo = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        zoo = dir.appendingPathComponent("zoo.yaml").path
        try "suites:\n  s30:\n    kind: seeds\n    architectures: [mlp]\n    models: 30\n".write(toFile: zoo, atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func error(_ body: String) -> RecipeError? {
        do { _ = try RunRecipe.parse("zoo: \(zoo)\n" + body, path: "r.yaml"); return nil } catch { return error as? RecipeError }
    }

    func testAllSubsetsOfAHugeBinomialIsRefusedQuickly() {
        let start = Date()
        let e = error("experiments:\n  - suite: s30\n    k: [15]\n    subsets: all\n    methods: [average]\n")
        XCTAssertEqual(e?.path, "experiments[0].subsets")
        XCTAssertEqual(e?.message, "'all' asks for C(30, 15) = 155,117,520 subsets of K = 15, more than the limit of 10,000 planned runs")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    func testSeedsAndRandomSubsetCountsAreBounded() {
        XCTAssertEqual(error("seeds: 1000000000\nexperiments:\n  - suite: s30\n    methods: [average]\n")?.description,
                       "r.yaml: seeds: must be an integer in 1...1000, got 1000000000")
        XCTAssertEqual(error("experiments:\n  - suite: s30\n    k: [3]\n    subsets: 100000000\n    methods: [average]\n")?.description,
                       "r.yaml: experiments[0].subsets: must be first, all or an integer in 1...10000, got 100000000")
    }

    func testTheProductOfMethodsKsSubsetsAndSeedsIsBounded() {
        // 2 seeded methods × 10 K × 1 subset × 1,000 seeds = 20,000 runs.
        let e = error("seeds: 1000\nexperiments:\n  - suite: s30\n    k: [2,3,4,5,6,7,8,9,10,11]\n    methods: [neulig, weight-matching]\n")
        XCTAssertEqual(e?.path, "experiments[0]")
        XCTAssertTrue(e?.message.hasPrefix("plans more than 10,000 runs (2 method(s) × 10 K value(s) × subsets × 1000 seed(s))") == true, "\(String(describing: e))")
        // Two experiments of 6,000 runs each (C(30, 3) and C(30, 4) both exceed 3,000): within the limit alone, not together.
        let one = "  - suite: s30\n    k: [3, 4]\n    subsets: 3000\n    methods: [average]\n"
        let both = error("experiments:\n" + one + one)
        XCTAssertEqual(both?.path, "experiments")
        XCTAssertTrue(both?.message.contains("the limit is 10,000") == true, "\(String(describing: both))")
    }

    func testACountedPlanMatchesTheListedPlan() throws {
        let r = try RunRecipe.parse("zoo: \(zoo)\nseeds: 3\nexperiments:\n  - suite: s30\n    k: [2, 29]\n    subsets: 40\n    methods: [average, weight-matching]\n",
                                    path: "r.yaml")
        // C(30, 2) = 435 > 40 → 40 subsets; C(30, 29) = 30 → all 30. average once, weight-matching per seed.
        XCTAssertEqual(r.plannedRunCount(), (40 + 30) * (1 + 3))
        XCTAssertEqual(r.plan().count, r.plannedRunCount())
        XCTAssertNil(r.plannedRunCount(cap: 100))
    }
}
