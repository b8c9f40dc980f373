import Foundation
import XCTest
@testable import LigandZoo

/// Hardening (issue 16): a manifest cannot lead model reads out of its suite directory.
final class ManifestPathTests: XCTestCase {
    private func manifest(file: String) -> ZooManifest {
        let spec = SuiteSpec(name: "s", kind: .seeds, seed: 1, calibration: 10, architectures: [ArchitectureSpec(kind: .mlp)], epochs: 1,
                             lr: 0.1, batchSize: 8, momentum: 0.9, weightDecay: 0, trainImages: 100)
        let model = ManifestModel(name: "mlp-seed0", file: file, architecture: "mlp", role: .seed(0), task: nil,
                                  trainImages: 100, testAccuracy: 0.5, calibrationAccuracy: nil)
        return ZooManifest(suite: "s", kind: .seeds, hash: "h", recipe: "r.yaml", dataIdentity: "d", spec: spec, models: [model])
    }

    func testEntriesOutsideTheSuiteDirectoryAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-manifest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(ZooManifest.fileName)
        try JSONEncoder().encode(manifest(file: "mlp-seed0.safetensors")).write(to: url)
        XCTAssertEqual(try ZooManifest.read(url).models.map(\.file), ["mlp-seed0.safetensors"])
        for bad in ["../other/m.safetensors", "../../etc/passwd", "/etc/passwd", "a/../../m.safetensors", "./m.safetensors", "", "a//b"] {
            try JSONEncoder().encode(manifest(file: bad)).write(to: url)
            XCTAssertThrowsError(try ZooManifest.read(url), bad) { e in
                XCTAssertTrue("\(e)".contains("not a plain relative path"), "\(e)")
                XCTAssertTrue("\(e)".hasPrefix(url.path), "\(e)")
            }
        }
    }
}
