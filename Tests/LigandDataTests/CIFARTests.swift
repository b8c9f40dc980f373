import XCTest
@testable import LigandData

final class CIFARTests: TempDirTestCase {
    /// A record's pixel byte for (sample seed s, channel ch, row r, column c).
    func byte(_ s: Int, _ ch: Int, _ r: Int, _ c: Int) -> UInt8 { UInt8((s * 17 + ch * 85 + r * 3 + c) % 256) }

    func record(labels: [UInt8], seed s: Int) -> [UInt8] {
        var b = labels
        for ch in 0..<3 { for r in 0..<32 { for c in 0..<32 { b.append(byte(s, ch, r, c)) } } }
        return b
    }

    func testCIFAR10ConvertsPlanarToNHWCAcrossFiles() throws {
        let f1 = try write(record(labels: [7], seed: 0) + record(labels: [0], seed: 1), to: "data_batch_1.bin")
        let f2 = try write(record(labels: [9], seed: 2), to: "data_batch_2.bin")
        let d = try CIFAR.load(files: [f1, f2], variant: .cifar10)
        XCTAssertEqual(d.count, 3)
        XCTAssertEqual([d.height, d.width, d.channels, d.classCount], [32, 32, 3, 10])
        XCTAssertEqual(d.labels, [7, 0, 9])
        for (n, s) in [(0, 0), (1, 1), (2, 2)] {
            for (r, c) in [(0, 0), (5, 17), (31, 31)] {
                for ch in 0..<3 {
                    XCTAssertEqual(d.pixels[((n * 32 + r) * 32 + c) * 3 + ch], Float(byte(s, ch, r, c)) / 255)
                }
            }
        }
    }

    func testCIFAR100FineAndCoarse() throws {
        let f = try write(record(labels: [19, 99], seed: 0) + record(labels: [3, 42], seed: 1), to: "train.bin")
        let fine = try CIFAR.load(files: [f], variant: .cifar100(fine: true))
        XCTAssertEqual(fine.labels, [99, 42])
        XCTAssertEqual(fine.classCount, 100)
        let coarse = try CIFAR.load(files: [f], variant: .cifar100(fine: false))
        XCTAssertEqual(coarse.labels, [19, 3])
        XCTAssertEqual(coarse.classCount, 20)
        XCTAssertEqual(coarse.pixels, fine.pixels)
        XCTAssertEqual(fine.pixels[3 * (32 + 1) + 2], Float(byte(0, 2, 1, 1)) / 255)
    }

    func testGzippedBatchIsAccepted() throws {
        let f = try write(record(labels: [4], seed: 3), to: "batch.bin.gz")
        XCTAssertEqual(try CIFAR.load(files: [f], variant: .cifar10).labels, [4])
    }

    func testLengthNotMultipleOfRecordSize() throws {
        let f = try write(record(labels: [1], seed: 0) + [1, 2, 3], to: "odd.bin")
        guard case let .recordLength(path, 3076, 3073)? = dataError(try CIFAR.load(files: [f], variant: .cifar10)) else {
            return XCTFail()
        }
        XCTAssertEqual(path, f.path)
        // A CIFAR-10 file read as CIFAR-100 has the wrong record size too.
        let g = try write(record(labels: [1], seed: 0), to: "ten.bin")
        guard case .recordLength(_, 3073, 3074)? = dataError(try CIFAR.load(files: [g], variant: .cifar100(fine: true))) else {
            return XCTFail()
        }
        let empty = try write([], to: "empty.bin")
        guard case .recordLength? = dataError(try CIFAR.load(files: [empty], variant: .cifar10)) else { return XCTFail() }
    }

    func testLabelOutOfRange() throws {
        let f = try write(record(labels: [1], seed: 0) + record(labels: [10], seed: 1), to: "bad.bin")
        guard case .labelOutOfRange(f.path, 1, 10, 10)? = dataError(try CIFAR.load(files: [f], variant: .cifar10)) else {
            return XCTFail()
        }
        let g = try write(record(labels: [20, 5], seed: 0), to: "bad100.bin")
        guard case .labelOutOfRange(_, 0, 20, 20)? = dataError(try CIFAR.load(files: [g], variant: .cifar100(fine: false))) else {
            return XCTFail()
        }
        XCTAssertEqual(try CIFAR.load(files: [g], variant: .cifar100(fine: true)).labels, [5])
    }

    func testMissingAndNoFiles() throws {
        guard case .missingFile? = dataError(try CIFAR.load(files: [url("absent.bin")], variant: .cifar10)) else { return XCTFail() }
        guard case .invalidArgument? = dataError(try CIFAR.load(files: [], variant: .cifar10)) else { return XCTFail() }
    }
}
