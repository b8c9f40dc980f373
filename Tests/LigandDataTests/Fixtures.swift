import CZlib
import Foundation
import XCTest
@testable import LigandData

/// A fresh temporary directory per test, removed afterwards.
class TempDirTestCase: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("ligand-data-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func url(_ name: String) -> URL { dir.appendingPathComponent(name) }

    /// Writes bytes raw, or gzip-compressed when the name ends in .gz.
    @discardableResult
    func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let u = url(name)
        if name.hasSuffix(".gz") {
            try Data(gzip(bytes)).write(to: u)
        } else {
            try Data(bytes).write(to: u)
        }
        return u
    }

    func gzip(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        XCTAssertEqual(deflateInit2_(&stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
                                     ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)), Z_OK)
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(bytes.count))) + 64
        var out = [UInt8](repeating: 0, count: bound)
        var input = bytes
        let rc = input.withUnsafeMutableBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = i.baseAddress
                stream.avail_in = uInt(i.count)
                stream.next_out = o.baseAddress
                stream.avail_out = uInt(o.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        XCTAssertEqual(rc, Z_STREAM_END)
        return Array(out[0..<Int(stream.total_out)])
    }

    /// An IDX file image: magic 00 00 type rank, big-endian dims, payload.
    func idx(type: UInt8 = 0x08, dims: [Int], payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = [0, 0, type, UInt8(dims.count)]
        for d in dims { b += [UInt8(d >> 24 & 0xff), UInt8(d >> 16 & 0xff), UInt8(d >> 8 & 0xff), UInt8(d & 0xff)] }
        return b + payload
    }

    /// Deterministic synthetic images: pixel (n, r, c) = (n*31 + r*7 + c*3) mod 256.
    func syntheticImages(count: Int, height: Int, width: Int) -> [UInt8] {
        var p: [UInt8] = []
        for n in 0..<count { for r in 0..<height { for c in 0..<width { p.append(UInt8((n * 31 + r * 7 + c * 3) % 256)) } } }
        return p
    }

    /// Writes an MNIST-style pair for `split` into the temp dir.
    func writeMNIST(split: MNISTFamily.Split, labels: [UInt8], height: Int = 4, width: Int = 3,
                    gz: Bool, imageCount: Int? = nil) throws {
        let prefix = split == .train ? "train" : "t10k"
        let ext = gz ? ".gz" : ""
        let n = imageCount ?? labels.count
        try write(idx(dims: [n, height, width], payload: syntheticImages(count: n, height: height, width: width)),
                  to: "\(prefix)-images-idx3-ubyte\(ext)")
        try write(idx(dims: [labels.count], payload: labels), to: "\(prefix)-labels-idx1-ubyte\(ext)")
    }

    /// Runs `body`, expecting a DataError, and returns it.
    func dataError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> DataError? {
        do {
            _ = try body()
            XCTFail("expected a DataError", file: file, line: line)
            return nil
        } catch let e as DataError {
            return e
        } catch {
            XCTFail("expected a DataError, got \(error)", file: file, line: line)
            return nil
        }
    }
}
