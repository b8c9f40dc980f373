import Foundation
import XCTest
import LigandModels
import LigandNN
@testable import LigandPipeline

/// Hardening (issue 16): one model file reached through two paths is listed twice, not merged with itself.
final class ListedTwiceTests: XCTestCase {
    func testSymlinkAndHardLinkToOneModelAreListedTwice() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-twice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        try ModelFile.save(try Network<Float>(.mlp(hidden: [4], input: [4, 4, 1]), seed: 0), to: a)
        try ModelFile.save(try Network<Float>(.mlp(hidden: [4], input: [4, 4, 1]), seed: 1), to: b)
        XCTAssertNoThrow(try ModelFiles.architecture(of: [a, b]))
        let soft = dir.appendingPathComponent("alias.safetensors"), hard = dir.appendingPathComponent("hard.safetensors")
        try FileManager.default.createSymbolicLink(at: soft, withDestinationURL: a)
        try FileManager.default.linkItem(at: a, to: hard)
        for twin in [soft, hard] {
            XCTAssertThrowsError(try ModelFiles.architecture(of: [a, b, twin])) { e in
                XCTAssertTrue("\(e)".contains("listed twice"), "\(e)")
                XCTAssertTrue("\(e)".contains(twin.path), "\(e)")
            }
        }
    }
}
