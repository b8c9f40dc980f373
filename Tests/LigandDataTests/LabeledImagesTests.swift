import XCTest
import LigandNumerics
@testable import LigandData

final class LabeledImagesTests: XCTestCase {
    /// 3 samples of 2×2×3; channel k of sample n at (r, c) = n + 0.1k + 0.01(2r + c).
    func makeSet() -> LabeledImages {
        var p: [Float] = []
        for n in 0..<3 { for r in 0..<2 { for c in 0..<2 { for k in 0..<3 {
            p.append(Float(n) + 0.1 * Float(k) + 0.01 * Float(2 * r + c))
        } } } }
        return LabeledImages(height: 2, width: 2, channels: 3, pixels: p, labels: [2, 0, 1], classCount: 3)
    }

    func testChannelStatistics() {
        let d = makeSet()
        let (mean, std) = d.channelStatistics()
        XCTAssertEqual(mean.count, 3)
        for k in 0..<3 {
            var values: [Double] = []
            for i in stride(from: k, to: d.pixels.count, by: 3) { values.append(Double(d.pixels[i])) }
            XCTAssertEqual(values.count, 12)
            let m: Double = values.reduce(0, +) / 12
            var ss = 0.0
            for v in values { ss += (v - m) * (v - m) }
            let s = (ss / 12).squareRoot()
            XCTAssertEqual(mean[k], m, accuracy: 1e-12)
            XCTAssertEqual(std[k], s, accuracy: 1e-12)
        }
        XCTAssertLessThan(mean[0], mean[1])
    }

    func testNormalizedGivesZeroMeanUnitStd() throws {
        let d = makeSet()
        let (mean, std) = d.channelStatistics()
        let n = try d.normalized(mean: mean, std: std)
        let (m2, s2) = n.channelStatistics()
        for k in 0..<3 {
            XCTAssertEqual(m2[k], 0, accuracy: 1e-6)
            XCTAssertEqual(s2[k], 1, accuracy: 1e-5)
        }
        XCTAssertEqual(n.labels, d.labels)
        XCTAssertEqual(n.pixels[1], Float((Double(d.pixels[1]) - mean[1]) / std[1]), accuracy: 1e-6)
    }

    func testNormalizedRejectsBadStatistics() {
        let d = makeSet()
        XCTAssertThrowsError(try d.normalized(mean: [0, 0], std: [1, 1]))
        XCTAssertThrowsError(try d.normalized(mean: [0, 0, 0], std: [1, 0, 1])) { e in
            XCTAssertTrue("\(e)".contains("channel 1"), "\(e)")
        }
    }

    func testSubsetCopiesRequestedSamplesInOrder() {
        let d = makeSet()
        let s = d.subset([2, 0, 2])
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s.labels, [1, 2, 1])
        XCTAssertEqual(Array(s.image(0)), Array(d.image(2)))
        XCTAssertEqual(Array(s.image(1)), Array(d.image(0)))
        XCTAssertEqual(d.subset([]).count, 0)
        XCTAssertEqual(d.tensor().shape, [3, 2, 2, 3])
        XCTAssertEqual(d.classCounts(), [1, 1, 1])
    }
}
