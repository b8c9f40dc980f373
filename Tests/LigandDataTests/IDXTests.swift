import Foundation
import XCTest
@testable import LigandData

final class IDXTests: TempDirTestCase {
    func testReadsRawAndGzipIdentically() throws {
        let payload = syntheticImages(count: 5, height: 4, width: 3)
        let raw = try write(idx(dims: [5, 4, 3], payload: payload), to: "a-idx3-ubyte")
        let gz = try write(idx(dims: [5, 4, 3], payload: payload), to: "a-idx3-ubyte.gz")
        XCTAssertNotEqual(try Data(contentsOf: raw), try Data(contentsOf: gz))
        for u in [raw, gz] {
            let a = try IDX.read(url: u)
            XCTAssertEqual(a.dims, [5, 4, 3])
            XCTAssertEqual(a.elementType, 0x08)
            XCTAssertEqual(Array(a.payload), payload)
        }
    }

    func testGzipIsDetectedByMagicNotName() throws {
        let bytes = idx(dims: [3], payload: [1, 2, 3])
        let u = url("labels-without-suffix")
        try Data(gzip(bytes)).write(to: u)
        XCTAssertEqual(Array(try IDX.read(url: u).payload), [1, 2, 3])
    }

    func testMultiMemberGzip() throws {
        let bytes = idx(dims: [6], payload: [1, 2, 3, 4, 5, 6])
        let u = url("multi.gz")
        try Data(gzip(Array(bytes[0..<7])) + gzip(Array(bytes[7...]))).write(to: u)
        let a = try IDX.read(url: u)
        XCTAssertEqual(a.dims, [6])
        XCTAssertEqual(Array(a.payload), [1, 2, 3, 4, 5, 6])
    }

    func testLargeGzipGrowsBufferBeyondHint() throws {
        // The size hint comes from the last member only; a tiny last member forces the buffer to grow.
        let payload = (0..<300_000).map { UInt8($0 % 251) }
        let bytes = idx(dims: [300_000], payload: payload)
        let u = url("big.gz")
        try Data(gzip(Array(bytes.dropLast(1))) + gzip([bytes.last!])).write(to: u)
        XCTAssertEqual(Array(try IDX.read(url: u).payload), payload)
    }

    func testBadLengthTrailerIsCorrupt() throws {
        var gz = gzip(idx(dims: [3], payload: [1, 2, 3]))
        gz[gz.count - 4] ^= 0x01
        let u = url("trailer.gz")
        try Data(gz).write(to: u)
        guard case .corruptGzip? = dataError(try IDX.read(url: u)) else { return XCTFail() }
    }

    func testBadMagic() throws {
        let u = try write([0x08, 0x03, 0x00, 0x01] + [0, 0, 0, 1, 7], to: "bad-magic")
        guard case let .badMagic(path, found, _)? = dataError(try IDX.read(url: u)) else { return XCTFail() }
        XCTAssertEqual(path, u.path)
        XCTAssertEqual(found, [0x08, 0x03, 0x00, 0x01])
        let unknownType = try write([0, 0, 0x42, 1, 0, 0, 0, 1, 7], to: "bad-type")
        guard case .badMagic? = dataError(try IDX.read(url: unknownType)) else { return XCTFail() }
        let tiny = try write([0, 0], to: "tiny")
        guard case .badMagic? = dataError(try IDX.read(url: tiny)) else { return XCTFail() }
    }

    func testUnsupportedElementTypeIsRefusedByName() throws {
        let u = try write(idx(type: 0x0D, dims: [2], payload: [UInt8](repeating: 0, count: 8)), to: "floats")
        let e = dataError(try IDX.read(url: u))
        guard case .unsupportedElementType(_, 0x0D)? = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertTrue(e!.description.contains("float"), e!.description)
        XCTAssertTrue(e!.description.contains(u.path))
    }

    func testTruncatedPayloadAndTrailingBytes() throws {
        let full = idx(dims: [4, 2, 2], payload: [UInt8](repeating: 9, count: 16))
        let short = try write(Array(full.dropLast(3)), to: "short.gz")
        guard case let .payloadLength(path, 16, 13)? = dataError(try IDX.read(url: short)) else { return XCTFail() }
        XCTAssertEqual(path, short.path)
        let long = try write(full + [1], to: "long")
        let e = dataError(try IDX.read(url: long))
        guard case .payloadLength(_, 16, 17)? = e else { return XCTFail() }
        XCTAssertTrue(e!.description.contains("trailing"), e!.description)
    }

    func testTruncatedHeader() throws {
        let u = try write([0, 0, 8, 3, 0, 0, 0, 5, 0, 0], to: "header")
        guard case .badHeader? = dataError(try IDX.read(url: u)) else { return XCTFail() }
    }

    func testTruncatedGzipStream() throws {
        let gz = gzip(idx(dims: [1000], payload: (0..<1000).map { UInt8($0 % 7) }))
        let u = url("cut.gz")
        try Data(gz.prefix(gz.count / 2)).write(to: u)
        let e = dataError(try IDX.read(url: u))
        guard case .corruptGzip(u.path, _)? = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertTrue(e!.description.contains("truncated"), e!.description)
    }

    func testCorruptGzipStream() throws {
        var gz = gzip(idx(dims: [1000], payload: (0..<1000).map { UInt8($0 % 7) }))
        for i in 12..<min(40, gz.count - 8) { gz[i] = 0xff }
        let u = url("garbled.gz")
        try Data(gz).write(to: u)
        guard case .corruptGzip? = dataError(try IDX.read(url: u)) else { return XCTFail() }
    }

    func testMissingFile() throws {
        guard case .missingFile(url("nope").path, _)? = dataError(try IDX.read(url: url("nope"))) else { return XCTFail() }
    }
}

final class MNISTFamilyTests: TempDirTestCase {
    func testLoadsRawAndGzipToUnitNHWC() throws {
        for gz in [false, true] {
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let labels: [UInt8] = [3, 0, 9, 9, 1]
            try writeMNIST(split: .test, labels: labels, gz: gz)
            let d = try MNISTFamily.load(directory: dir, split: .test)
            XCTAssertEqual(d.count, 5)
            XCTAssertEqual([d.height, d.width, d.channels, d.classCount], [4, 3, 1, 10])
            XCTAssertEqual(d.labels, [3, 0, 9, 9, 1])
            let raw = syntheticImages(count: 5, height: 4, width: 3)
            XCTAssertEqual(d.pixels, raw.map { Float($0) / 255 })
            // Sample 2, row 1, column 2: NHWC offset ((2·4 + 1)·3 + 2).
            XCTAssertEqual(d.pixels[(2 * 4 + 1) * 3 + 2], Float((2 * 31 + 7 + 6) % 256) / 255)
            XCTAssertTrue(d.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
            XCTAssertEqual(d.pixels.max(), d.pixels.isEmpty ? nil : raw.max().map { Float($0) / 255 })
        }
    }

    func testTrainSplitUsesTrainFiles() throws {
        try writeMNIST(split: .train, labels: [1, 2], gz: false)
        XCTAssertEqual(try MNISTFamily.load(directory: dir, split: .train).labels, [1, 2])
        let e = dataError(try MNISTFamily.load(directory: dir, split: .test))
        guard case .missingFile? = e else { return XCTFail() }
    }

    func testLabelOutOfRangeNamesFileAndIndex() throws {
        try writeMNIST(split: .test, labels: [1, 2, 10, 4], gz: true)
        let e = dataError(try MNISTFamily.load(directory: dir, split: .test))
        guard case let .labelOutOfRange(path, 2, 10, 10)? = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertTrue(path.hasSuffix("t10k-labels-idx1-ubyte.gz"))
        XCTAssertTrue(e!.description.contains("index 2"), e!.description)
    }

    func testImageLabelCountMismatch() throws {
        try writeMNIST(split: .test, labels: [1, 2, 3], gz: true, imageCount: 4)
        let e = dataError(try MNISTFamily.load(directory: dir, split: .test))
        guard case let .countMismatch(ip, 4, lp, 3)? = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertTrue(ip.hasSuffix("t10k-images-idx3-ubyte.gz"))
        XCTAssertTrue(lp.hasSuffix("t10k-labels-idx1-ubyte.gz"))
    }

    func testMissingFileSaysWhichPackageProvidesIt() throws {
        let e = dataError(try MNISTFamily.load(directory: dir, split: .test))
        guard case let .missingFile(path, _)? = e else { return XCTFail() }
        XCTAssertTrue(path.hasSuffix("t10k-images-idx3-ubyte.gz"))
        XCTAssertTrue(e!.description.contains("apt-get install dataset-fashion-mnist"), e!.description)
        XCTAssertTrue(e!.description.contains(MNISTFamily.environmentVariable))
        // Images present, labels missing: the labels file is named.
        try write(idx(dims: [1, 2, 2], payload: [0, 0, 0, 0]), to: "t10k-images-idx3-ubyte")
        guard case let .missingFile(p2, _)? = dataError(try MNISTFamily.load(directory: dir, split: .test)) else { return XCTFail() }
        XCTAssertTrue(p2.contains("t10k-labels-idx1-ubyte"))
    }

    func testWrongRankIsRejected() throws {
        try write(idx(dims: [2, 4], payload: [UInt8](repeating: 0, count: 8)), to: "t10k-images-idx3-ubyte")
        try write(idx(dims: [2], payload: [0, 1]), to: "t10k-labels-idx1-ubyte")
        guard case let .unexpectedShape(path, _, [2, 4])? = dataError(try MNISTFamily.load(directory: dir, split: .test))
        else { return XCTFail() }
        XCTAssertTrue(path.hasSuffix("t10k-images-idx3-ubyte"))
    }

    func testDefaultDirectoryHonoursEnvironment() throws {
        setenv(MNISTFamily.environmentVariable, dir.path, 1)
        defer { unsetenv(MNISTFamily.environmentVariable) }
        XCTAssertEqual(MNISTFamily.defaultDirectory.standardizedFileURL.path, dir.standardizedFileURL.path)
        try writeMNIST(split: .test, labels: [5], gz: true)
        XCTAssertEqual(try MNISTFamily.load(split: .test).labels, [5])
    }

    func testRealFashionMNISTTestSetIfInstalled() throws {
        let real = URL(fileURLWithPath: MNISTFamily.systemDirectory)
        guard FileManager.default.fileExists(atPath: real.appendingPathComponent("t10k-images-idx3-ubyte.gz").path) else {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let d = try MNISTFamily.load(directory: real, split: .test)
        XCTAssertEqual(d.count, 10_000)
        XCTAssertEqual([d.height, d.width, d.channels, d.classCount], [28, 28, 1, 10])
        XCTAssertEqual(d.classCounts(), [Int](repeating: 1000, count: 10))
        let (mean, std) = d.channelStatistics()
        XCTAssertGreaterThanOrEqual(mean[0], 0.28)
        XCTAssertLessThanOrEqual(mean[0], 0.29)
        XCTAssertGreaterThan(std[0], 0.3)
        XCTAssertLessThan(std[0], 0.4)
    }

    // MARK: hardening (issue 16)

    func testGzipInflatingPastTheDeclaredSizeStopsAtTheHeaderBound() throws {
        // 10 declared bytes followed by 8 MB of zeros: a small file that would inflate far beyond its header.
        let bomb = try write(idx(dims: [10], payload: [UInt8](repeating: 0, count: 8 << 20)), to: "bomb.gz")
        XCTAssertLessThan(try Data(contentsOf: bomb).count, 64 << 10)
        guard case let .decompressedTooLarge(path, limit)? = dataError(try IDX.read(url: bomb)) else { return XCTFail() }
        XCTAssertEqual(path, bomb.path)
        XCTAssertEqual(limit, 4 + 4 + 10)
    }

    func testDeclaredSizeAboveTheCapIsRefusedBeforeInflating() throws {
        let huge = try write(idx(dims: [60000, 1000, 1000], payload: [1, 2, 3]), to: "huge.gz")
        let e = dataError(try IDX.read(url: huge))
        guard case let .badHeader(path, reason)? = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertEqual(path, huge.path)
        XCTAssertTrue(reason.contains("limit"), reason)
    }

    func testFIFODataFileIsRefusedWithoutBlocking() throws {
        let fifo = url("fifo-idx3-ubyte")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        guard case let .unreadable(path, reason)? = dataError(try IDX.read(url: fifo)) else { return XCTFail() }
        XCTAssertEqual(path, fifo.path)
        XCTAssertEqual(reason, "not a regular file")
    }
}
