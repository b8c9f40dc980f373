import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import LigandPipeline

/// `ligand report` input: implausible figures refused while decoding; names escaped in Markdown and SVG.
final class ReportValidationTests: XCTestCase {
    func record(suite: String = "s", method: String = "cca", k: Int = 2, acc: Double = 0.8) -> RunRecord {
        var r = RunRecord(suite: suite, suiteKind: "seeds", architecture: "mlp", method: method, k: k, subset: ["a", "b"], subsetIndices: [0, 1], seed: 0,
                          columns: ["accuracy"], accuracies: [acc], accuracy: acc, ensemble: 0.85, bestSingle: 0.84, baselines: ["mean single": 0.7],
                          wallSeconds: 1, bytesCommunicated: 0, ranks: 1)
        r.calibrationScores = ["alpha=0.5": 0.75]
        return r
    }

    /// The report JSON with one value replaced in the text, decoded; the DecodingError's path and message, or "ok".
    func decode(_ edit: (String) -> String) -> String {
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let json = edit(String(decoding: try! enc.encode(RunReport(recipe: "r.yaml", ranks: 1, records: [record(), record(k: 4)])), as: UTF8.self))
        do { _ = try JSONDecoder().decode(RunReport.self, from: Data(json.utf8)); return "ok" } catch DecodingError.dataCorrupted(let c) {
            return c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() + ": " + c.debugDescription
        } catch { return "\(error)" }
    }

    func testAValidReportRoundTrips() {
        XCTAssertEqual(decode { $0 }, "ok")
    }

    func testImplausibleFiguresAreRefusedWithTheirPath() {
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"k\":4", with: "\"k\":-1") }, ".records[1].k: must be an integer in 1...1000000, got -1")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"accuracy\":0.8,", with: "\"accuracy\":1e308,") },
                       ".records[0].accuracy: must be an accuracy, a fraction in [0, 1], got 1e+308")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"ensemble\":0.85", with: "\"ensemble\":-0.5") },
                       ".records[0].ensemble: must be an accuracy, a fraction in [0, 1], got -0.5")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"mean single\":0.7", with: "\"mean single\":7") },
                       ".records[0].baselines.mean single: must be an accuracy, a fraction in [0, 1], got 7.0")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"alpha=0.5\":0.75", with: "\"alpha=0.5\":75") },
                       ".records[0].calibrationScores.alpha=0.5: must be an accuracy, a fraction in [0, 1], got 75.0")
        // A record written before the field existed still reads.
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"calibrationScores\":{\"alpha=0.5\":0.75},", with: "") }, "ok")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"wallSeconds\":1", with: "\"wallSeconds\":-3") },
                       ".records[0].wallSeconds: must be a finite number of seconds ≥ 0, got -3.0")
        XCTAssertEqual(decode { $0.replacingOccurrences(of: "\"ranks\":1,\"recipe\"", with: "\"ranks\":0,\"recipe\"") }, ".ranks: must be at least 1, got 0")
    }

    func testNamesAreEscapedInMarkdown() {
        let r = RunReport(recipe: "<b>r</b>.yaml", ranks: 1, records: [record(suite: "<script>alert(1)</script>", method: "cca | x\n## y [l](http://e)")])
        let md = r.markdown()
        XCTAssertFalse(md.contains("<script>"), md)
        XCTAssertFalse(md.contains("<b>"), md)
        XCTAssertTrue(md.contains("## &lt;script&gt;alert(1)&lt;/script&gt; (seeds)"), md)
        XCTAssertTrue(md.contains("| cca \\| x ## y \\[l\\](http://e) | 2 |"), md)
        // Every table row still has its 8 cells: 9 unescaped bars.
        for line in md.split(separator: "\n") where line.hasPrefix("| cca") {
            XCTAssertEqual(line.replacingOccurrences(of: "\\|", with: "").filter { $0 == "|" }.count, 9, String(line))
        }
    }

    func testSVGStaysWellFormedWithHostileNames() throws {
        let r = RunReport(recipe: "r", ranks: 1, records: [record(suite: "a&b <c> \"d\" 'e' \u{1}", method: "m</text><script/>")])
        for svg in [SVGChart.accuracyVsK(r), SVGChart.mergedVsEnsemble(r)] {
            XCTAssertFalse(svg.contains("<script"), svg)
            XCTAssertFalse(svg.contains("\u{1}"))
            let parser = XMLParser(data: Data(svg.utf8))
            XCTAssertTrue(parser.parse(), "\(String(describing: parser.parserError))")
        }
    }
}
