import Foundation
import LigandNumerics

/// The data of one tensor to write.
public enum TensorPayload {
    /// A Float32 tensor, stored as F32 or converted to F64, F16 or BF16 (rounding to nearest even).
    case float32(Tensor, storedAs: DType = .f32)
    /// Float64 values with their shape, stored as F64.
    case float64([Double], shape: [Int])
    /// Int64 values with their shape, stored as I64.
    case int64([Int64], shape: [Int])
    /// Little-endian element bytes of any dtype, written unchanged.
    case raw(dtype: DType, shape: [Int], bytes: [UInt8])
}

/// Writing safetensors files. Tensors are laid out in the order given (the dictionary
/// variant sorts by name), `__metadata__` keys are sorted, and the header is padded
/// with spaces so the data buffer starts at a multiple of 8 bytes.
public enum SafeTensors {
    /// The `__metadata__` key holding the SHA-256 of the data buffer, checked on loading when present.
    public static let digestKey = "ligand.sha256"

    /// Writes the tensors atomically to `url`; on any error no file is created or changed. `inputs` are files
    /// the output must not replace; `contentDigest` records the data buffer's SHA-256 under `digestKey`.
    public static func write(_ tensors: [(name: String, value: TensorPayload)],
                             metadata: [String: String] = [:], to url: URL, inputs: [URL] = [], contentDigest: Bool = false) throws {
        let encoded = try encodeTensors(tensors, path: url.path)
        var meta = metadata
        if contentDigest {
            var h = SHA256()
            for t in encoded { h.update(t.bytes) }
            meta[digestKey] = h.finalizeHex()
        }
        let header = headerBytes(encoded, metadata: meta)
        try AtomicFile.write(to: url, inputs: inputs) { sink in
            try sink.write(header)
            for t in encoded { try sink.write(t.bytes) }
        }
    }

    /// Writes Float32 tensors as F32, ordered by name.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL, inputs: [URL] = []) throws {
        try write(tensors.sorted { $0.key < $1.key }.map { (name: $0.key, value: TensorPayload.float32($0.value)) },
                  metadata: metadata, to: url, inputs: inputs)
    }

    /// The whole file as bytes, for callers that want to send it elsewhere than a file.
    public static func serialize(_ tensors: [(name: String, value: TensorPayload)],
                                 metadata: [String: String] = [:]) throws -> [UInt8] {
        let encoded = try encodeTensors(tensors, path: "<memory>")
        var out = headerBytes(encoded, metadata: metadata)
        for t in encoded { out += t.bytes }
        return out
    }

    struct Encoded {
        var name: String
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
    }

    static func encodeTensors(_ tensors: [(name: String, value: TensorPayload)], path: String) throws -> [Encoded] {
        var seen = Set<String>()
        return try tensors.map { name, value in
            guard !name.isEmpty else { throw SafeTensorsError.invalidPayload(path: path, tensor: name, reason: "empty tensor name") }
            guard name != "__metadata__" else {
                throw SafeTensorsError.invalidPayload(path: path, tensor: name, reason: "the name __metadata__ is reserved")
            }
            guard seen.insert(name).inserted else {
                throw SafeTensorsError.invalidPayload(path: path, tensor: name, reason: "tensor name given more than once")
            }
            return try encode(name: name, value, path: path)
        }
    }

    private static func encode(name: String, _ value: TensorPayload, path: String) throws -> Encoded {
        func fail(_ reason: String) -> SafeTensorsError { .invalidPayload(path: path, tensor: name, reason: reason) }
        func checkShape(_ shape: [Int], dtype: DType, count: Int) throws {
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("negative dimension in shape \(shape)") }
            guard let bytes = SafeTensorsHeader.byteCount(shape: shape, dtype: dtype) else { throw fail("shape \(shape) has too many elements") }
            guard bytes == count else { throw fail("shape \(shape) of \(dtype) needs \(bytes) bytes, got \(count)") }
        }
        func nonFinite(_ i: Int, _ v: String) -> SafeTensorsError {
            fail("element \(i) is \(v); non-finite values are refused")
        }
        var out: [UInt8] = []
        switch value {
        case let .float32(t, dtype):
            out.reserveCapacity(t.count * dtype.byteSize)
            for (i, v) in t.storage.enumerated() {
                guard v.isFinite else { throw nonFinite(i, "\(v)") }
                switch dtype {
                case .f32: append(v.bitPattern, to: &out)
                case .f64: append(Double(v).bitPattern, to: &out)
                case .f16:
                    let h = HalfPrecision.f16Bits(from: v)
                    guard h & 0x7C00 != 0x7C00 else { throw nonFinite(i, "\(v), beyond F16's range") }
                    append(h, to: &out)
                case .bf16:
                    let b = HalfPrecision.bf16Bits(from: v)
                    guard b & 0x7F80 != 0x7F80 else { throw nonFinite(i, "\(v), beyond BF16's range") }
                    append(b, to: &out)
                default:
                    throw fail("a Float32 tensor can be stored as F32, F64, F16 or BF16, not \(dtype)")
                }
            }
            return Encoded(name: name, dtype: dtype, shape: t.shape, bytes: out)
        case let .float64(values, shape):
            try checkShape(shape, dtype: .f64, count: values.count * 8)
            out.reserveCapacity(values.count * 8)
            for (i, v) in values.enumerated() {
                guard v.isFinite else { throw nonFinite(i, "\(v)") }
                append(v.bitPattern, to: &out)
            }
            return Encoded(name: name, dtype: .f64, shape: shape, bytes: out)
        case let .int64(values, shape):
            try checkShape(shape, dtype: .i64, count: values.count * 8)
            out.reserveCapacity(values.count * 8)
            for v in values { append(UInt64(bitPattern: v), to: &out) }
            return Encoded(name: name, dtype: .i64, shape: shape, bytes: out)
        case let .raw(dtype, shape, bytes):
            try checkShape(shape, dtype: dtype, count: bytes.count)
            return Encoded(name: name, dtype: dtype, shape: shape, bytes: bytes)
        }
    }

    @inline(__always)
    private static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    /// The 8-byte length prefix and the space-padded JSON header.
    static func headerBytes(_ tensors: [Encoded], metadata: [String: String]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }
                .map { "\(HeaderJSONWriter.quoted($0.key)):\(HeaderJSONWriter.quoted($0.value))" }
            parts.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(HeaderJSONWriter.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
        }
        var json = Array("{\(parts.joined(separator: ","))}".utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count)
        append(UInt64(json.count), to: &out)
        return out + json
    }
}
