import Foundation
import XCTest
import LigandNumerics
@testable import LigandFormats

final class SafeTensorsTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-fmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    private func url(_ name: String) -> URL { dir.appendingPathComponent(name) }

    private func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededRNG(seed: seed)
        return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    private func dirListing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    // MARK: round trips

    func testEveryDTypeRoundTripsBytesExactly() throws {
        var tensors: [(name: String, value: TensorPayload)] = []
        for (i, dtype) in DType.allCases.enumerated() {
            let shape = [2, 3]
            var bytes = randomBytes(6 * dtype.byteSize, seed: UInt64(i))
            if dtype == .bool { bytes = bytes.map { $0 & 1 } }
            tensors.append((name: "t_\(dtype.rawValue)", value: .raw(dtype: dtype, shape: shape, bytes: bytes)))
        }
        let u = url("all.safetensors")
        try SafeTensors.write(tensors, to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(f.names, tensors.map(\.name), "tensors are laid out in the order given")
        for (name, value) in tensors {
            guard case let .raw(dtype, shape, bytes) = value else { return XCTFail() }
            let e = try f.entry(name)
            XCTAssertEqual(e.dtype, dtype)
            XCTAssertEqual(e.shape, shape)
            XCTAssertEqual(try f.bytes(name), bytes, name)
            XCTAssertEqual(Array(try f.rawBytes(name)), bytes, name)
        }
        // The in-memory serialisation is byte-identical to the file.
        XCTAssertEqual(try SafeTensors.serialize(tensors), Array(try Data(contentsOf: u)))
    }

    func testFloat32TensorStoredAsEachFloatType() throws {
        let values: [Float] = [0, -0.5, 1, -2, 1024, 65504, 0x1p-14, 0x1p-24, 3.140625]
        let t = Tensor(shape: [3, 3], storage: values)
        let u = url("floats.safetensors")
        try SafeTensors.write([
            (name: "f32", value: .float32(t)),
            (name: "f64", value: .float32(t, storedAs: .f64)),
            (name: "f16", value: .float32(t, storedAs: .f16)),
            (name: "bf16", value: .float32(Tensor(shape: [2], storage: [1.5, -3.25]), storedAs: .bf16)),
        ], to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(try f.floats("f32"), t)
        XCTAssertEqual(try f.floats("f64"), t)
        XCTAssertEqual(try f.floats("f16"), t, "every value is exactly representable in F16")
        XCTAssertEqual(try f.floats("bf16").storage, [1.5, -3.25])
        XCTAssertEqual(try f.doubles("f16").values, values.map(Double.init))
        XCTAssertEqual(try f.bytes("f16").prefix(4), [0x00, 0x00, 0x00, 0xB8], "F16 little-endian: 0, -0.5")
        XCTAssertThrowsError(try SafeTensors.write(
            [(name: "x", value: .float32(t, storedAs: .i32))], to: url("bad.safetensors")))
    }

    func testFloat64AndInt64Payloads() throws {
        let u = url("d.safetensors")
        let d: [Double] = [1e-300, -2.5, 1e300, 0.1]
        let ints: [Int64] = [Int64.min, -1, 0, Int64.max]
        try SafeTensors.write([
            (name: "d", value: .float64(d, shape: [2, 2])),
            (name: "i", value: .int64(ints, shape: [4])),
            (name: "i8", value: .raw(dtype: .i8, shape: [2], bytes: [0xFF, 0x7F])),
            (name: "u64", value: .raw(dtype: .u64, shape: [1], bytes: [UInt8](repeating: 0xFF, count: 8))),
            (name: "flag", value: .raw(dtype: .bool, shape: [2], bytes: [1, 0])),
        ], to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(try f.doubles("d"), ShapedArray(shape: [2, 2], values: d))
        XCTAssertEqual(try f.int64s("i"), ShapedArray(shape: [4], values: ints))
        XCTAssertEqual(try f.int64s("i8").values, [-1, 127])
        XCTAssertEqual(try f.int64s("flag").values, [1, 0])
        XCTAssertThrowsError(try f.int64s("u64")) { error in
            XCTAssertEqual(error as? SafeTensorsError,
                           .integerOutOfRange(path: u.path, tensor: "u64", index: 0, value: "\(UInt64.max)"))
        }
        XCTAssertThrowsError(try f.floats("d")) { error in
            XCTAssertEqual(error as? SafeTensorsError,
                           .nonFinite(path: u.path, tensor: "d", index: 2, value: "1e+300, beyond Float32's range"))
        }
        XCTAssertThrowsError(try f.floats("i")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .unsupportedConversion(path: u.path, tensor: "i", dtype: .i64, to: "Float32"))
        }
        XCTAssertThrowsError(try f.floats("nope")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .tensorNotFound(path: u.path, tensor: "nope"))
        }
    }

    func testDictionaryWriteSortsByName() throws {
        let u = url("dict.safetensors")
        try SafeTensors.write(["b": Tensor(shape: [1], storage: [2]), "a": Tensor(shape: [2], storage: [0, 1])],
                              metadata: ["arch": "mlp"], to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(try f.entry("b").range, 8..<12)
        XCTAssertEqual(f.metadata, ["arch": "mlp"])
    }

    func testMetadataRoundTrip() throws {
        let metadata = [
            "architecture": "{\"kind\": \"mlp\", \"widths\": [784, 100, 10]}",
            "quote\"back\\slash": "line1\nline2\ttab\u{01}ctrl",
            "unicode": "λ → ✓ 😀",
            "empty": "",
        ]
        let u = url("meta.safetensors")
        try SafeTensors.write([(name: "layers.0.weight", value: .float32(Tensor(shape: [1, 1], storage: [3])))],
                              metadata: metadata, to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(f.metadata, metadata)
        XCTAssertEqual(f.names, ["layers.0.weight"])
        // The header must also be plain JSON to Foundation.
        let bytes = Array(try Data(contentsOf: u))
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<f.dataStart])) as? [String: Any]
        XCTAssertEqual(header?["__metadata__"] as? [String: String], metadata)
    }

    func testOddTensorNamesRoundTrip() throws {
        let names = ["é\"x\\y", "with space", "layers.10.bn.running_var", "tab\there"]
        let u = url("names.safetensors")
        try SafeTensors.write(names.map { (name: $0, value: .raw(dtype: .u8, shape: [1], bytes: [7])) }, to: u)
        XCTAssertEqual(try SafeTensorsFile(url: u).names, names)
    }

    func testUnicodeEscapesInHeader() throws {
        let header = #"{"\u00e9\ud83d\ude00\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"k\/":"\"v\""}}"#
        let f = try SafeTensorsFile(url: try write(Self.file(header, [5])))
        XCTAssertEqual(f.names, ["é😀\n"])
        XCTAssertEqual(f.metadata, ["k/": "\"v\""])
        try assertRejects(Self.file(#"{"\ud83d":1}"#)) { .headerNotJSON(path: $0, reason: "unpaired surrogate in \\u escape", byteOffset: 8) }
        try assertRejects(Self.file("{\"a\tb\":1}")) { .headerNotJSON(path: $0, reason: "control character in a string", byteOffset: 3) }
    }

    func testDataStartIsAlignedToEightBytes() throws {
        for length in 1...17 {
            let u = url("align\(length).safetensors")
            let name = String(repeating: "n", count: length)
            try SafeTensors.write([(name: name, value: .raw(dtype: .f64, shape: [1], bytes: [UInt8](repeating: 1, count: 8)))], to: u)
            let f = try SafeTensorsFile(url: u)
            XCTAssertEqual(f.dataStart % 8, 0, "name length \(length)")
            let bytes = Array(try Data(contentsOf: u))
            let n = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            XCTAssertEqual(Int(n) + 8, f.dataStart)
            XCTAssertEqual(bytes.count, f.dataStart + 8)
            XCTAssertTrue(bytes[8..<f.dataStart].last == UInt8(ascii: "}") || bytes[f.dataStart - 1] == 0x20)
            XCTAssertEqual(try f.rawBytes(name).baseAddress.map { Int(bitPattern: $0) % 8 }, 0, "mapped data is 8-byte aligned")
        }
    }

    func testEmptyTensorsScalarsAndNoTensors() throws {
        let u = url("shapes.safetensors")
        try SafeTensors.write([
            (name: "empty", value: .float32(Tensor(shape: [0, 3], storage: []))),
            (name: "scalar", value: .float32(Tensor(shape: [], storage: [4.5]))),
            (name: "empty_i", value: .int64([], shape: [2, 0])),
            (name: "scalar_i", value: .int64([-9], shape: [])),
        ], to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(try f.floats("empty").shape, [0, 3])
        XCTAssertEqual(try f.floats("empty").count, 0)
        XCTAssertEqual(try f.floats("scalar"), Tensor(shape: [], storage: [4.5]))
        XCTAssertEqual(try f.int64s("empty_i"), ShapedArray(shape: [2, 0], values: []))
        XCTAssertEqual(try f.int64s("scalar_i"), ShapedArray(shape: [], values: [-9]))
        XCTAssertEqual(try f.entry("empty").range, 0..<0)
        XCTAssertEqual(try f.rawBytes("empty").count, 0)

        let none = url("none.safetensors")
        try SafeTensors.write([], metadata: ["k": "v"], to: none)
        let g = try SafeTensorsFile(url: none)
        XCTAssertEqual(g.entries, [])
        XCTAssertEqual(g.metadata, ["k": "v"])
        try SafeTensors.write([], to: none)
        XCTAssertEqual(try SafeTensorsFile(url: none).metadata, [:])
    }

    func testReadsUnpaddedHeaderAtAnyAlignment() throws {
        // Other writers need not pad: the data may start at an odd offset.
        var payload: [UInt8] = []
        for v: Float in [1.5, -2] { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload += $0 } }
        let bytes = Self.file(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, payload)
        let u = try write(bytes)
        let f = try SafeTensorsFile(url: u)
        XCTAssertNotEqual(f.dataStart % 4, 0)
        XCTAssertEqual(try f.floats("x").storage, [1.5, -2])
    }

    func testHeaderFieldsInAnyOrderAndMetadataNull() throws {
        let bytes = Self.file(#" { "__metadata__" : null , "x" : { "data_offsets" : [ 0 , 1 ] , "shape" : [ ] , "dtype" : "U8", "extra": 1 } } "#, [9])
        let f = try SafeTensorsFile(url: try write(bytes))
        XCTAssertEqual(f.metadata, [:])
        XCTAssertEqual(try f.bytes("x"), [9])
    }

    // MARK: half precision

    func testF16ConversionMatchesSwiftFloat16() throws {
        for h in 0...UInt16.max {
            let f = HalfPrecision.float(fromF16: h)
            if f.isNaN { continue }
            XCTAssertEqual(HalfPrecision.f16Bits(from: f), h, "bits \(h)")
        }
        #if !(os(macOS) && arch(x86_64))
        var rng = SeededRNG(seed: 7)
        for i in 0..<200_000 {
            // Spread over the whole F16 range, subnormals and overflow included.
            let exponent = Int(rng.int(below: 50)) - 30
            let f = Float(rng.uniform() * 2 - 1) * Float(pow(2.0, Double(exponent)))
            XCTAssertEqual(HalfPrecision.f16Bits(from: f), Float16(f).bitPattern, "sample \(i): \(f)")
            XCTAssertEqual(HalfPrecision.float(fromF16: Float16(f).bitPattern), Float(Float16(f)))
        }
        #endif
        XCTAssertEqual(HalfPrecision.f16Bits(from: 1 + 0x1p-11), 0x3C00, "tie rounds to even")
        XCTAssertEqual(HalfPrecision.f16Bits(from: 1 + 3 * 0x1p-11), 0x3C02, "tie rounds to even")
        XCTAssertEqual(HalfPrecision.f16Bits(from: 65520), 0x7C00, "rounds up to infinity")
        XCTAssertEqual(HalfPrecision.f16Bits(from: 0x1p-25), 0x0000, "tie at half the smallest subnormal rounds to zero")
        XCTAssertEqual(HalfPrecision.f16Bits(from: 0x1.8p-25), 0x0001)
    }

    func testBF16Conversion() {
        XCTAssertEqual(HalfPrecision.bf16Bits(from: 1), 0x3F80)
        XCTAssertEqual(HalfPrecision.bf16Bits(from: Float(bitPattern: 0x3F80_8000)), 0x3F80, "tie rounds to even")
        XCTAssertEqual(HalfPrecision.bf16Bits(from: Float(bitPattern: 0x3F81_8000)), 0x3F82, "tie rounds to even")
        XCTAssertEqual(HalfPrecision.bf16Bits(from: Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(HalfPrecision.bf16Bits(from: .greatestFiniteMagnitude), 0x7F80)
        XCTAssertTrue(HalfPrecision.float(fromBF16: HalfPrecision.bf16Bits(from: .nan)).isNaN)
        for b in stride(from: 0, through: Int(UInt16.max), by: 1) {
            let f = HalfPrecision.float(fromBF16: UInt16(b))
            if !f.isNaN { XCTAssertEqual(HalfPrecision.bf16Bits(from: f), UInt16(b)) }
        }
    }

    // MARK: non-finite values

    func testNonFiniteValuesAreRefusedWithTheTensorName() throws {
        var f32: [UInt8] = []
        for v: Float in [1, 2, .nan, 4] { withUnsafeBytes(of: v.bitPattern.littleEndian) { f32 += $0 } }
        let u = url("nan.safetensors")
        try SafeTensors.write([
            (name: "layers.1.weight", value: .raw(dtype: .f32, shape: [4], bytes: f32)),
            (name: "h", value: .raw(dtype: .f16, shape: [2], bytes: [0x00, 0x3C, 0x00, 0xFC])),
            (name: "b", value: .raw(dtype: .bf16, shape: [1], bytes: [0x80, 0x7F])),
        ], to: u)
        let f = try SafeTensorsFile(url: u)
        XCTAssertThrowsError(try f.floats("layers.1.weight")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .nonFinite(path: u.path, tensor: "layers.1.weight", index: 2, value: "nan"))
            XCTAssertTrue("\(error)".contains("layers.1.weight"))
            XCTAssertTrue("\(error)".contains(u.path))
        }
        XCTAssertThrowsError(try f.doubles("layers.1.weight"))
        XCTAssertThrowsError(try f.floats("h")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .nonFinite(path: u.path, tensor: "h", index: 1, value: "-inf"))
        }
        XCTAssertThrowsError(try f.floats("b")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .nonFinite(path: u.path, tensor: "b", index: 0, value: "inf"))
        }

        let w = url("w.safetensors")
        XCTAssertThrowsError(try SafeTensors.write(["fc.bias": Tensor(shape: [2], storage: [0, .infinity])], to: w)) { error in
            XCTAssertTrue("\(error)".contains("fc.bias"), "\(error)")
        }
        XCTAssertThrowsError(try SafeTensors.write([(name: "big", value: .float32(Tensor(shape: [1], storage: [1e6]), storedAs: .f16))], to: w))
        XCTAssertThrowsError(try SafeTensors.write([(name: "d", value: .float64([.nan], shape: [1]))], to: w))
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.path))
    }

    // MARK: malformed files

    /// A file from a header string and data bytes, without padding.
    static func file(_ header: String, _ data: [UInt8] = []) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + data
    }

    private var counter = 0
    private func write(_ bytes: [UInt8]) throws -> URL {
        counter += 1
        let u = url("bad\(counter).safetensors")
        try Data(bytes).write(to: u)
        return u
    }

    private func assertRejects(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                               _ expected: (String) -> SafeTensorsError) throws {
        let u = try write(bytes)
        XCTAssertThrowsError(try SafeTensorsFile(url: u), file: file, line: line) { error in
            XCTAssertEqual(error as? SafeTensorsError, expected(u.path), "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".hasPrefix(u.path + ":"), "error names the file: \(error)", file: file, line: line)
        }
    }

    private static func entry(_ name: String, _ dtype: String = "U8", _ shape: String = "[4]", _ offsets: String = "[0,4]") -> String {
        "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }

    func testTruncatedFile() throws {
        try assertRejects([]) { .truncated(path: $0, fileSize: 0) }
        try assertRejects([1, 0, 0, 0, 0, 0, 0]) { .truncated(path: $0, fileSize: 7) }
    }

    func testHeaderLengthBeyondFile() throws {
        var bytes = Self.file("{}")
        bytes[0] = 3
        try assertRejects(bytes) { .headerLengthBeyondFile(path: $0, headerLength: 3, fileSize: 10) }
        try assertRejects([UInt8](repeating: 0xFF, count: 8)) { .headerLengthBeyondFile(path: $0, headerLength: UInt64.max, fileSize: 8) }
    }

    func testHeaderNotUTF8() throws {
        try assertRejects(withUnsafeBytes(of: UInt64(4).littleEndian) { Array($0) } + [0x7B, 0xFF, 0xFE, 0x7D]) { .headerNotUTF8(path: $0) }
    }

    func testHeaderNotJSON() throws {
        try assertRejects(Self.file("{\"a\": ")) { .headerNotJSON(path: $0, reason: "unexpected end of header", byteOffset: 6) }
        try assertRejects(Self.file("{'a': 1}")) { .headerNotJSON(path: $0, reason: "expected a string key", byteOffset: 1) }
        try assertRejects(Self.file("{} x")) { .headerNotJSON(path: $0, reason: "unexpected text after the JSON value", byteOffset: 3) }
        try assertRejects(Self.file("")) { .headerNotJSON(path: $0, reason: "unexpected end of header", byteOffset: 0) }
        try assertRejects(Self.file("{\"a\":01}")) { .headerNotJSON(path: $0, reason: "number with a leading zero", byteOffset: 7) }
    }

    func testHeaderNotObject() throws {
        try assertRejects(Self.file("[1, 2]")) { .headerNotObject(path: $0, found: "an array") }
        try assertRejects(Self.file("\"text\"")) { .headerNotObject(path: $0, found: "a string") }
    }

    func testInvalidMetadata() throws {
        try assertRejects(Self.file(#"{"__metadata__":{"k":1}}"#)) {
            .invalidMetadata(path: $0, key: "k", reason: "value must be a string, found a number")
        }
        try assertRejects(Self.file(#"{"__metadata__":[]}"#)) {
            .invalidMetadata(path: $0, key: nil, reason: "must be an object of strings, found an array")
        }
        try assertRejects(Self.file(#"{"__metadata__":{"k":"a","k":"b"}}"#)) {
            .invalidMetadata(path: $0, key: "k", reason: "key appears more than once")
        }
        try assertRejects(Self.file(#"{"__metadata__":{},"__metadata__":{}}"#)) {
            .invalidMetadata(path: $0, key: nil, reason: "appears more than once")
        }
    }

    func testMissingFields() throws {
        try assertRejects(Self.file(#"{"w":{"shape":[4],"data_offsets":[0,4]}}"#, [1, 2, 3, 4])) {
            .missingField(path: $0, tensor: "w", field: "dtype")
        }
        try assertRejects(Self.file(#"{"w":{"dtype":"U8","data_offsets":[0,4]}}"#, [1, 2, 3, 4])) {
            .missingField(path: $0, tensor: "w", field: "shape")
        }
        try assertRejects(Self.file(#"{"w":{"dtype":"U8","shape":[4]}}"#, [1, 2, 3, 4])) {
            .missingField(path: $0, tensor: "w", field: "data_offsets")
        }
    }

    func testWrongFieldTypes() throws {
        let data: [UInt8] = [1, 2, 3, 4]
        try assertRejects(Self.file(#"{"w":{"dtype":5,"shape":[4],"data_offsets":[0,4]}}"#, data)) {
            .wrongFieldType(path: $0, tensor: "w", field: "dtype", expected: "a string")
        }
        let shapeMessage = "an array of non-negative integers"
        for shape in ["\"4\"", "[4.0]", "[-4]", "[\"4\"]", "4", "[1e1]"] {
            try assertRejects(Self.file("{" + Self.entry("w", "U8", shape) + "}", data)) {
                .wrongFieldType(path: $0, tensor: "w", field: "shape", expected: shapeMessage)
            }
        }
        let offsetsMessage = "an array of two non-negative integers [begin, end]"
        for offsets in ["[0]", "[0,4,4]", "[0,\"4\"]", "{}", "[-1,4]", "[0,99999999999999999999999]"] {
            try assertRejects(Self.file("{" + Self.entry("w", "U8", "[4]", offsets) + "}", data)) {
                .wrongFieldType(path: $0, tensor: "w", field: "data_offsets", expected: offsetsMessage)
            }
        }
        try assertRejects(Self.file(#"{"w":[1,2]}"#)) {
            .wrongFieldType(path: $0, tensor: "w", field: "(entry)", expected: "an object with dtype, shape and data_offsets, found an array")
        }
    }

    func testUnknownDType() throws {
        try assertRejects(Self.file("{" + Self.entry("w", "F128") + "}", [1, 2, 3, 4])) {
            .unknownDType(path: $0, tensor: "w", dtype: "F128")
        }
        try assertRejects(Self.file("{" + Self.entry("w", "f32", "[1]") + "}", [1, 2, 3, 4])) {
            .unknownDType(path: $0, tensor: "w", dtype: "f32")
        }
    }

    func testDuplicateTensorName() throws {
        let header = "{" + Self.entry("w", "U8", "[2]", "[0,2]") + "," + Self.entry("w", "U8", "[2]", "[2,4]") + "}"
        try assertRejects(Self.file(header, [1, 2, 3, 4])) { .duplicateTensor(path: $0, tensor: "w") }
        // Foundation's parser would have accepted this file, keeping only one "w".
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(header.utf8)))
    }

    func testDuplicateField() throws {
        try assertRejects(Self.file(#"{"w":{"dtype":"U8","dtype":"I8","shape":[4],"data_offsets":[0,4]}}"#, [1, 2, 3, 4])) {
            .duplicateField(path: $0, tensor: "w", field: "dtype")
        }
    }

    func testOffsetsBeginAfterEnd() throws {
        try assertRejects(Self.file("{" + Self.entry("w", "U8", "[0]", "[4,0]") + "}", [1, 2, 3, 4])) {
            .invalidOffsets(path: $0, tensor: "w", begin: 4, end: 0)
        }
    }

    func testOffsetsWithGap() throws {
        let header = "{" + Self.entry("b", "U8", "[4]", "[8,12]") + "," + Self.entry("a", "U8", "[4]", "[0,4]") + "}"
        try assertRejects(Self.file(header, [UInt8](repeating: 0, count: 12))) {
            .offsetsNotContiguous(path: $0, tensor: "b", begin: 8, expectedBegin: 4, previous: "a")
        }
        try assertRejects(Self.file("{" + Self.entry("a", "U8", "[4]", "[2,6]") + "}", [UInt8](repeating: 0, count: 6))) {
            .offsetsNotContiguous(path: $0, tensor: "a", begin: 2, expectedBegin: 0, previous: nil)
        }
    }

    func testOffsetsOverlap() throws {
        let header = "{" + Self.entry("a", "U8", "[8]", "[0,8]") + "," + Self.entry("b", "U8", "[8]", "[4,12]") + "}"
        try assertRejects(Self.file(header, [UInt8](repeating: 0, count: 12))) {
            .offsetsNotContiguous(path: $0, tensor: "b", begin: 4, expectedBegin: 8, previous: "a")
        }
        let message = SafeTensorsError.offsetsNotContiguous(path: "p", tensor: "b", begin: 4, expectedBegin: 8, previous: "a").description
        XCTAssertTrue(message.contains("leaves an overlap after the end of tensor \"a\" at 8"), message)
        let gap = SafeTensorsError.offsetsNotContiguous(path: "p", tensor: "b", begin: 9, expectedBegin: 8, previous: "a").description
        XCTAssertTrue(gap.contains("leaves a gap after"), gap)
    }

    func testOffsetsOutOfBounds() throws {
        try assertRejects(Self.file("{" + Self.entry("w", "F32", "[2]", "[0,8]") + "}", [1, 2, 3, 4])) {
            .offsetsOutOfBounds(path: $0, tensor: "w", end: 8, bufferSize: 4)
        }
    }

    func testByteCountMismatch() throws {
        try assertRejects(Self.file("{" + Self.entry("w", "F32", "[2]", "[0,4]") + "}", [1, 2, 3, 4])) {
            .byteCountMismatch(path: $0, tensor: "w", dtype: .f32, shape: [2], expected: 8, actual: 4)
        }
        try assertRejects(Self.file("{" + Self.entry("w", "F32", "[4611686018427387904,4]", "[0,4]") + "}", [1, 2, 3, 4])) {
            .shapeTooLarge(path: $0, tensor: "w", shape: [4611686018427387904, 4])
        }
    }

    func testTrailingBytes() throws {
        try assertRejects(Self.file("{" + Self.entry("w") + "}", [1, 2, 3, 4, 5])) {
            .trailingBytes(path: $0, dataEnd: 4, bufferSize: 5)
        }
        try assertRejects(Self.file("{}", [0])) { .trailingBytes(path: $0, dataEnd: 0, bufferSize: 1) }
    }

    func testMissingFileAndDirectory() throws {
        let missing = url("missing.safetensors")
        XCTAssertThrowsError(try SafeTensorsFile(url: missing)) { error in
            guard case let .io(path, _, _)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, missing.path)
        }
        XCTAssertThrowsError(try SafeTensorsFile(url: dir)) { error in
            XCTAssertEqual(error as? FileAccessError, .inputNotRegular(path: dir.path, kind: "a directory"))
        }
    }

    // MARK: atomic writes

    func testWriteIntoMissingDirectoryLeavesNothing() throws {
        let target = dir.appendingPathComponent("no/such/dir/model.safetensors")
        XCTAssertThrowsError(try SafeTensors.write(["w": Tensor(shape: [1], storage: [1])], to: target)) { error in
            guard case let .io(path, _, _)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, target.path)
        }
        XCTAssertEqual(try dirListing(), [])
    }

    func testFailedWriteLeavesNoTemporaryAndKeepsOldFile() throws {
        let target = url("model.safetensors")
        try SafeTensors.write(["w": Tensor(shape: [1], storage: [1])], to: target)
        let before = try Data(contentsOf: target)

        struct Stop: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: target) { sink in
            try sink.write([UInt8](repeating: 0xAB, count: 100_000))
            throw Stop()
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(try dirListing(), ["model.safetensors"])
        XCTAssertEqual(try Data(contentsOf: target), before)

        // A payload error is found before any file is created.
        XCTAssertThrowsError(try SafeTensors.write([(name: "w", value: .float64([1, 2, 3], shape: [2]))], to: target)) { error in
            XCTAssertEqual(error as? SafeTensorsError,
                           .invalidPayload(path: target.path, tensor: "w", reason: "shape [2] of F64 needs 16 bytes, got 24"))
        }
        XCTAssertEqual(try dirListing(), ["model.safetensors"])
        XCTAssertEqual(try Data(contentsOf: target), before)

        // Renaming onto a directory fails after the data is written; the temporary must go.
        let blocker = url("blocker")
        try FileManager.default.createDirectory(at: blocker, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: blocker.appendingPathComponent("inside"), withIntermediateDirectories: false)
        XCTAssertThrowsError(try SafeTensors.write(["w": Tensor(shape: [1], storage: [1])], to: blocker))
        XCTAssertEqual(try dirListing(), ["blocker", "model.safetensors"])
    }

    func testOverwriteReplacesWholeFile() throws {
        let target = url("m.safetensors")
        try SafeTensors.write(["w": Tensor(shape: [1000], repeating: 1)], to: target)
        try SafeTensors.write(["v": Tensor(shape: [1], storage: [2])], to: target)
        let f = try SafeTensorsFile(url: target)
        XCTAssertEqual(f.names, ["v"])
        XCTAssertEqual(try dirListing(), ["m.safetensors"])
        let mode = try FileManager.default.attributesOfItem(atPath: target.path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o644)
    }

    func testWriterRejectsBadNames() throws {
        let target = url("n.safetensors")
        let one = TensorPayload.int64([1], shape: [1])
        XCTAssertThrowsError(try SafeTensors.write([(name: "a", value: one), (name: "a", value: one)], to: target)) { error in
            XCTAssertEqual(error as? SafeTensorsError, .invalidPayload(path: target.path, tensor: "a", reason: "tensor name given more than once"))
        }
        XCTAssertThrowsError(try SafeTensors.write([(name: "__metadata__", value: one)], to: target))
        XCTAssertThrowsError(try SafeTensors.write([(name: "", value: one)], to: target))
        XCTAssertThrowsError(try SafeTensors.write([(name: "x", value: .raw(dtype: .u8, shape: [-1], bytes: []))], to: target))
        XCTAssertEqual(try dirListing(), [])
    }

    // MARK: SHA-256

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertEqual(SHA256.hex(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        var h = SHA256()
        var i = 0
        var step = 1
        while i < million.count {
            let j = min(million.count, i + step)
            h.update(Array(million[i..<j]))
            i = j
            step = step * 3 % 257 + 1
        }
        XCTAssertEqual(h.finalize().map { String(format: "%02x", $0) }.joined(),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        var h2 = SHA256()
        for chunk in stride(from: 0, to: million.count, by: 63) { h2.update(Array(million[chunk..<min(million.count, chunk + 63)])) }
        let hex = h2.finalize().map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

/// Hardening (issue 16): where outputs may be written, what inputs may be, and the content digest.
final class FileSafetyTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ligand-safety-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func url(_ name: String) -> URL { dir.appendingPathComponent(name) }
    private let sample: [(name: String, value: TensorPayload)] = [("w", .float32(Tensor(shape: [2, 2], storage: [1, 2, 3, 4])))]

    func testOutputThatIsADirectoryOrFIFOIsRefusedAndLeftAlone() throws {
        let d = url("adir")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: false)
        XCTAssertThrowsError(try SafeTensors.write(sample, to: d)) { e in
            XCTAssertEqual(e as? FileAccessError, .outputNotRegular(path: d.path, kind: "a directory"))
        }
        let fifo = url("fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertThrowsError(try SafeTensors.write(sample, to: fifo)) { e in
            XCTAssertEqual(e as? FileAccessError, .outputNotRegular(path: fifo.path, kind: "a FIFO"))
        }
        var st = stat()
        XCTAssertEqual(lstat(fifo.path, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO, "the FIFO must not be replaced by a file")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["adir", "fifo"], "no temporary file left")
    }

    func testOutputThatIsACharacterDeviceIsRefused() throws {
        XCTAssertThrowsError(try FileChecks.resolveOutput("/dev/null")) { e in
            XCTAssertEqual(e as? FileAccessError, .outputNotRegular(path: "/dev/null", kind: "a character device"))
        }
    }

    func testSymlinkOutputIsWrittenThroughAndStaysALink() throws {
        let target = url("target.safetensors"), link = url("link.safetensors")
        try SafeTensors.write([("old", .float32(Tensor(shape: [1], storage: [0])))], to: target)
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "target.safetensors")
        try SafeTensors.write(sample, to: link)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), "target.safetensors")
        XCTAssertEqual(try SafeTensorsFile(url: target).names, ["w"], "the link's target holds the new content")
        let dangling = url("dangling.safetensors")
        try FileManager.default.createSymbolicLink(atPath: dangling.path, withDestinationPath: "nowhere/x.safetensors")
        XCTAssertThrowsError(try SafeTensors.write(sample, to: dangling)) { e in
            guard case .outputDanglingLink(let p, _)? = e as? FileAccessError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, dangling.path)
        }
    }

    func testOutputThatIsAnInputIsRefusedEvenThroughALink() throws {
        let model = url("model.safetensors"), link = url("alias.safetensors")
        try SafeTensors.write(sample, to: model)
        let before = try Data(contentsOf: model)
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: model.path)
        for out in [model, link] {
            XCTAssertThrowsError(try SafeTensors.write([("x", .float32(Tensor(shape: [1], storage: [9])))], to: out, inputs: [model])) { e in
                XCTAssertEqual(e as? FileAccessError, .outputIsInput(path: out.path, input: model.path))
            }
        }
        XCTAssertEqual(try Data(contentsOf: model), before)
    }

    func testFIFOInputIsRefusedWithoutBlocking() throws {
        let fifo = url("in.safetensors")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        // Without O_NONBLOCK this open would wait forever for a writer.
        XCTAssertThrowsError(try SafeTensorsFile(url: fifo)) { e in
            XCTAssertEqual(e as? FileAccessError, .inputNotRegular(path: fifo.path, kind: "a FIFO"))
        }
        XCTAssertThrowsError(try SafeTensorsFile(url: dir)) { e in
            XCTAssertEqual(e as? FileAccessError, .inputNotRegular(path: dir.path, kind: "a directory"))
        }
    }

    func testZeroElementShapeWhoseOtherDimensionsOverflowIsRefused() throws {
        let json = #"{"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#
        var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) }
        bytes += Array(json.utf8)
        let u = url("zero.safetensors")
        try Data(bytes).write(to: u)
        XCTAssertThrowsError(try SafeTensorsFile(url: u)) { e in
            XCTAssertEqual(e as? SafeTensorsError, .shapeTooLarge(path: u.path, tensor: "t", shape: [0, 4294967296, 4294967296]))
        }
        XCTAssertEqual(TensorEntry(name: "z", dtype: .f32, shape: [0, 3], range: 0..<0).elementCount, 0)
    }

    func testContentDigestIsRecordedAndFlippedDataIsDetected() throws {
        let u = url("d.safetensors")
        try SafeTensors.write(sample, to: u, contentDigest: true)
        let f = try SafeTensorsFile(url: u)
        XCTAssertEqual(f.metadata[SafeTensors.digestKey], f.dataDigest())
        XCTAssertTrue(try f.verifyDigest())
        var bytes = [UInt8](try Data(contentsOf: u))
        bytes[bytes.count - 3] ^= 0x10
        let bad = url("bad.safetensors")
        try Data(bytes).write(to: bad)
        XCTAssertThrowsError(try SafeTensorsFile(url: bad).verifyDigest()) { e in
            guard case .digestMismatch(let p, _, _)? = e as? SafeTensorsError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, bad.path)
            XCTAssertTrue("\(e)".hasPrefix(bad.path))
        }
        // Files written without a digest (older files) load unverified.
        let plain = url("plain.safetensors")
        try SafeTensors.write(sample, to: plain)
        XCTAssertFalse(try SafeTensorsFile(url: plain).verifyDigest())
    }
}
