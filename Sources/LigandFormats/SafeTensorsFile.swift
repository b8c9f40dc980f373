import Foundation
import LigandNumerics
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's header entry. `range` is the byte range inside the data buffer (the
/// header's `data_offsets`), not inside the file: the buffer starts at `SafeTensorsFile.dataStart`.
public struct TensorEntry: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let range: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], range: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.range = range
    }

    /// Parsing refused shapes whose non-zero dimensions overflow, so this product cannot trap.
    public var elementCount: Int { shape.contains(0) ? 0 : shape.reduce(1, *) }
    public var byteCount: Int { range.count }
}

/// Values of a tensor read as a Swift array, with the tensor's shape.
public struct ShapedArray<Element: Sendable>: Sendable {
    public var shape: [Int]
    public var values: [Element]

    public init(shape: [Int], values: [Element]) {
        self.shape = shape
        self.values = values
    }
}

extension ShapedArray: Equatable where Element: Equatable {}

/// A safetensors file mapped read-only into memory and validated in full on opening.
/// The mapping lives as long as this object, so views from `rawBytes` must not outlive it.
public final class SafeTensorsFile: @unchecked Sendable {
    public let url: URL
    public let metadata: [String: String]
    /// Every tensor, in the order of its data in the file.
    public let entries: [TensorEntry]
    /// Byte offset of the data buffer in the file (8 + header length).
    public let dataStart: Int
    /// Size of the whole file in bytes.
    public let fileSize: Int

    private let mapping: UnsafeRawPointer
    private let index: [String: Int]

    public var names: [String] { entries.map(\.name) }
    private var path: String { url.path }

    public init(url: URL) throws {
        let path = url.path
        let fd = try FileChecks.openRegularForReading(path)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError.io(path: path, operation: "stat", reason: Self.errnoText()) }
        let size = Int(st.st_size)
        guard size >= 8 else { throw SafeTensorsError.truncated(path: path, fileSize: size) }
        let raw = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let raw, raw != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SafeTensorsError.io(path: path, operation: "memory-map", reason: Self.errnoText())
        }
        let header: SafeTensorsHeader
        do {
            header = try SafeTensorsHeader.parse(UnsafeRawBufferPointer(start: raw, count: size), path: path)
        } catch {
            munmap(raw, size)
            throw error
        }
        self.url = url
        self.fileSize = size
        self.mapping = UnsafeRawPointer(raw)
        self.metadata = header.metadata
        self.entries = header.entries
        self.dataStart = header.dataStart
        self.index = Dictionary(uniqueKeysWithValues: header.entries.enumerated().map { ($1.name, $0) })
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: mapping), fileSize)
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    /// SHA-256 (lowercase hex) of the data buffer: every tensor's bytes, header excluded.
    public func dataDigest() -> String {
        withExtendedLifetime(self) { SHA256.hex(UnsafeRawBufferPointer(start: mapping + dataStart, count: fileSize - dataStart)) }
    }

    /// Checks the data buffer against `__metadata__["ligand.sha256"]`; a file without the key passes unverified.
    /// Returns whether a digest was checked.
    @discardableResult
    public func verifyDigest() throws -> Bool {
        guard let expected = metadata[SafeTensors.digestKey] else { return false }
        let actual = dataDigest()
        guard expected.lowercased() == actual else {
            throw SafeTensorsError.digestMismatch(path: path, expected: expected, actual: actual)
        }
        return true
    }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func entry(_ name: String) throws -> TensorEntry {
        guard let i = index[name] else { throw SafeTensorsError.tensorNotFound(path: path, tensor: name) }
        return entries[i]
    }

    /// The tensor's bytes inside the mapping, without copying; valid only while `self` lives.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let e = try entry(name)
        return UnsafeRawBufferPointer(start: mapping + dataStart + e.range.lowerBound, count: e.range.count)
    }

    /// Calls `body` with the tensor's mapped bytes, keeping the mapping alive for the call.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let p = try rawBytes(name)
        return try withExtendedLifetime(self) { try body(p) }
    }

    /// A copy of the tensor's bytes.
    public func bytes(_ name: String) throws -> [UInt8] {
        try withRawBytes(name) { [UInt8]($0) }
    }

    /// The tensor as Float32, from F32, F64, F16 or BF16; NaN, infinity and F64 values beyond
    /// Float32's range are refused, naming the tensor and the element.
    public func floats(_ name: String) throws -> Tensor {
        let e = try entry(name)
        let n = e.elementCount
        var out = [Float](repeating: 0, count: n)
        try withRawBytes(name) { p in
            switch e.dtype {
            case .f32:
                for i in 0..<n {
                    let v = Float(bitPattern: Self.load(p, i, UInt32.self))
                    guard v.isFinite else { throw nonFinite(e, i, "\(v)") }
                    out[i] = v
                }
            case .f64:
                for i in 0..<n {
                    let d = Double(bitPattern: Self.load(p, i, UInt64.self))
                    guard d.isFinite else { throw nonFinite(e, i, "\(d)") }
                    let v = Float(d)
                    guard v.isFinite else { throw nonFinite(e, i, "\(d), beyond Float32's range") }
                    out[i] = v
                }
            case .f16:
                for i in 0..<n {
                    let v = HalfPrecision.float(fromF16: Self.load(p, i, UInt16.self))
                    guard v.isFinite else { throw nonFinite(e, i, "\(v)") }
                    out[i] = v
                }
            case .bf16:
                for i in 0..<n {
                    let v = HalfPrecision.float(fromBF16: Self.load(p, i, UInt16.self))
                    guard v.isFinite else { throw nonFinite(e, i, "\(v)") }
                    out[i] = v
                }
            default:
                throw SafeTensorsError.unsupportedConversion(path: path, tensor: name, dtype: e.dtype, to: "Float32")
            }
        }
        return Tensor(shape: e.shape, storage: out)
    }

    /// The tensor as Float64, from F64, F32, F16 or BF16; NaN and infinity are refused.
    public func doubles(_ name: String) throws -> ShapedArray<Double> {
        let e = try entry(name)
        let n = e.elementCount
        var out = [Double](repeating: 0, count: n)
        try withRawBytes(name) { p in
            for i in 0..<n {
                let v: Double
                switch e.dtype {
                case .f64: v = Double(bitPattern: Self.load(p, i, UInt64.self))
                case .f32: v = Double(Float(bitPattern: Self.load(p, i, UInt32.self)))
                case .f16: v = Double(HalfPrecision.float(fromF16: Self.load(p, i, UInt16.self)))
                case .bf16: v = Double(HalfPrecision.float(fromBF16: Self.load(p, i, UInt16.self)))
                default:
                    throw SafeTensorsError.unsupportedConversion(path: path, tensor: name, dtype: e.dtype, to: "Float64")
                }
                guard v.isFinite else { throw nonFinite(e, i, "\(v)") }
                out[i] = v
            }
        }
        return ShapedArray(shape: e.shape, values: out)
    }

    /// The tensor as Int64, from any integer dtype or BOOL; U64 values above Int64.max are refused.
    public func int64s(_ name: String) throws -> ShapedArray<Int64> {
        let e = try entry(name)
        let n = e.elementCount
        guard e.dtype.isConvertibleInteger else {
            throw SafeTensorsError.unsupportedConversion(path: path, tensor: name, dtype: e.dtype, to: "Int64")
        }
        var out = [Int64](repeating: 0, count: n)
        try withRawBytes(name) { p in
            for i in 0..<n {
                switch e.dtype {
                case .i64: out[i] = Int64(bitPattern: Self.load(p, i, UInt64.self))
                case .i32: out[i] = Int64(Int32(bitPattern: Self.load(p, i, UInt32.self)))
                case .i16: out[i] = Int64(Int16(bitPattern: Self.load(p, i, UInt16.self)))
                case .i8: out[i] = Int64(Int8(bitPattern: p[i]))
                case .u32: out[i] = Int64(Self.load(p, i, UInt32.self))
                case .u16: out[i] = Int64(Self.load(p, i, UInt16.self))
                case .u8, .bool: out[i] = Int64(p[i])
                case .u64:
                    let u = Self.load(p, i, UInt64.self)
                    guard let v = Int64(exactly: u) else {
                        throw SafeTensorsError.integerOutOfRange(path: path, tensor: name, index: i, value: "\(u)")
                    }
                    out[i] = v
                default: break
                }
            }
        }
        return ShapedArray(shape: e.shape, values: out)
    }

    private func nonFinite(_ e: TensorEntry, _ i: Int, _ v: String) -> SafeTensorsError {
        .nonFinite(path: path, tensor: e.name, index: i, value: v)
    }

    /// Element i of a little-endian array that may sit at any alignment in the mapping.
    @inline(__always)
    private static func load<T: FixedWidthInteger>(_ p: UnsafeRawBufferPointer, _ i: Int, _: T.Type) -> T {
        T(littleEndian: p.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
    }
}

/// The validated content of a header: parsing is separate from the mapping so it can be tested on bytes.
struct SafeTensorsHeader {
    var metadata: [String: String]
    var entries: [TensorEntry]
    var dataStart: Int

    static func parse(_ file: UnsafeRawBufferPointer, path: String) throws -> SafeTensorsHeader {
        let size = file.count
        guard size >= 8 else { throw SafeTensorsError.truncated(path: path, fileSize: size) }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(file[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(size - 8) else {
            throw SafeTensorsError.headerLengthBeyondFile(path: path, headerLength: n, fileSize: size)
        }
        let headerLength = Int(n)
        let headerBytes = [UInt8](UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)]))
        let text = String(decoding: headerBytes, as: UTF8.self)
        guard text.utf8.elementsEqual(headerBytes) else { throw SafeTensorsError.headerNotUTF8(path: path) }

        let json: HeaderJSON
        do {
            json = try HeaderJSONParser.parse(headerBytes)
        } catch let e as HeaderJSONError {
            throw SafeTensorsError.headerNotJSON(path: path, reason: e.reason, byteOffset: e.offset)
        }
        guard case let .object(members) = json else {
            throw SafeTensorsError.headerNotObject(path: path, found: json.kindName)
        }

        let dataStart = 8 + headerLength
        let bufferSize = size - dataStart
        var metadata: [String: String] = [:]
        var sawMetadata = false
        var seen = Set<String>()
        var entries: [TensorEntry] = []
        for (key, value) in members {
            if key == "__metadata__" {
                guard !sawMetadata else {
                    throw SafeTensorsError.invalidMetadata(path: path, key: nil, reason: "appears more than once")
                }
                sawMetadata = true
                metadata = try parseMetadata(value, path: path)
                continue
            }
            guard seen.insert(key).inserted else { throw SafeTensorsError.duplicateTensor(path: path, tensor: key) }
            entries.append(try parseEntry(name: key, value, path: path, bufferSize: bufferSize))
        }

        // Stable sort by begin (then end) so zero-length tensors at one offset keep header order.
        let ordered = entries.enumerated().sorted {
            ($0.element.range.lowerBound, $0.element.range.upperBound, $0.offset)
                < ($1.element.range.lowerBound, $1.element.range.upperBound, $1.offset)
        }.map(\.element)
        var expected = 0
        var previous: String?
        for e in ordered {
            guard e.range.lowerBound == expected else {
                throw SafeTensorsError.offsetsNotContiguous(path: path, tensor: e.name, begin: e.range.lowerBound,
                                                            expectedBegin: expected, previous: previous)
            }
            expected = e.range.upperBound
            previous = e.name
        }
        guard expected == bufferSize else {
            throw SafeTensorsError.trailingBytes(path: path, dataEnd: expected, bufferSize: bufferSize)
        }
        return SafeTensorsHeader(metadata: metadata, entries: ordered, dataStart: dataStart)
    }

    private static func parseMetadata(_ value: HeaderJSON, path: String) throws -> [String: String] {
        switch value {
        case .null:
            return [:]
        case let .object(pairs):
            var out: [String: String] = [:]
            for (k, v) in pairs {
                guard case let .string(s) = v else {
                    throw SafeTensorsError.invalidMetadata(path: path, key: k, reason: "value must be a string, found \(v.kindName)")
                }
                guard out.updateValue(s, forKey: k) == nil else {
                    throw SafeTensorsError.invalidMetadata(path: path, key: k, reason: "key appears more than once")
                }
            }
            return out
        default:
            throw SafeTensorsError.invalidMetadata(path: path, key: nil, reason: "must be an object of strings, found \(value.kindName)")
        }
    }

    private static func nonNegativeInts(_ v: HeaderJSON) -> [Int]? {
        guard case let .array(items) = v else { return nil }
        var out: [Int] = []
        for item in items {
            guard case let .number(_, integer?) = item, integer >= 0 else { return nil }
            out.append(integer)
        }
        return out
    }

    private static func parseEntry(name: String, _ value: HeaderJSON, path: String, bufferSize: Int) throws -> TensorEntry {
        guard case let .object(fields) = value else {
            throw SafeTensorsError.wrongFieldType(path: path, tensor: name, field: "(entry)",
                                                  expected: "an object with dtype, shape and data_offsets, found \(value.kindName)")
        }
        var byName: [String: HeaderJSON] = [:]
        for (k, v) in fields {
            guard byName.updateValue(v, forKey: k) == nil else {
                throw SafeTensorsError.duplicateField(path: path, tensor: name, field: k)
            }
        }
        for field in ["dtype", "shape", "data_offsets"] where byName[field] == nil {
            throw SafeTensorsError.missingField(path: path, tensor: name, field: field)
        }
        guard case let .string(dtypeText)? = byName["dtype"] else {
            throw SafeTensorsError.wrongFieldType(path: path, tensor: name, field: "dtype", expected: "a string")
        }
        guard let shape = nonNegativeInts(byName["shape"]!) else {
            throw SafeTensorsError.wrongFieldType(path: path, tensor: name, field: "shape", expected: "an array of non-negative integers")
        }
        guard let offsets = nonNegativeInts(byName["data_offsets"]!), offsets.count == 2 else {
            throw SafeTensorsError.wrongFieldType(path: path, tensor: name, field: "data_offsets",
                                                  expected: "an array of two non-negative integers [begin, end]")
        }
        guard let dtype = DType(rawValue: dtypeText) else {
            throw SafeTensorsError.unknownDType(path: path, tensor: name, dtype: dtypeText)
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw SafeTensorsError.invalidOffsets(path: path, tensor: name, begin: begin, end: end) }
        guard let expected = byteCount(shape: shape, dtype: dtype) else {
            throw SafeTensorsError.shapeTooLarge(path: path, tensor: name, shape: shape)
        }
        guard expected == end - begin else {
            throw SafeTensorsError.byteCountMismatch(path: path, tensor: name, dtype: dtype, shape: shape,
                                                     expected: expected, actual: end - begin)
        }
        guard end <= bufferSize else {
            throw SafeTensorsError.offsetsOutOfBounds(path: path, tensor: name, end: end, bufferSize: bufferSize)
        }
        return TensorEntry(name: name, dtype: dtype, shape: shape, range: begin..<end)
    }

    /// Bytes a tensor of this shape needs, or nil when that overflows Int. The non-zero dimensions
    /// must multiply without overflow even when another is 0, so no later product of the shape can trap.
    static func byteCount(shape: [Int], dtype: DType) -> Int? {
        var count = dtype.byteSize
        for d in shape where d != 0 {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            count = p
        }
        return shape.contains(0) ? 0 : count
    }
}
