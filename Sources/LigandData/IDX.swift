import Foundation

/// An IDX array as stored on disk: element type, big-endian dimensions, and the raw payload.
public struct IDXArray: Sendable {
    public let path: String
    public let elementType: UInt8
    public let dims: [Int]
    /// The payload bytes, row-major over `dims`; a slice of the file buffer, not a copy.
    public let payload: ArraySlice<UInt8>

    public var count: Int { dims.first ?? 0 }
}

/// Reader for the IDX format of the MNIST family (raw, or gzip detected by its magic bytes).
public enum IDX {
    public static let unsignedByte: UInt8 = 0x08

    static func typeName(_ code: UInt8) -> String? {
        switch code {
        case 0x08: return "unsigned byte"
        case 0x09: return "signed byte"
        case 0x0B: return "short"
        case 0x0C: return "int"
        case 0x0D: return "float"
        case 0x0E: return "double"
        default: return nil
        }
    }

    public static func read(url: URL) throws -> IDXArray {
        try read(url: url, missingHint: "")
    }

    static func read(url: URL, missingHint: String) throws -> IDXArray {
        let bytes = try FileBytes.readMaybeGzipped(url, missingHint: missingHint) { try declaredSize($0, path: url.path) }
        return try parse(bytes, path: url.path)
    }

    /// The whole file's size as the header at the start of `prefix` declares it, overflow-checked and capped
    /// at `FileBytes.maxDecompressedSize`; nil while `prefix` is too short to tell.
    static func declaredSize(_ prefix: ArraySlice<UInt8>, path: String) throws -> Int? {
        let b = Array(prefix.prefix(4 + 4 * 255))
        guard b.count >= 4 else { return nil }
        let headerLength = 4 + 4 * Int(b[3])
        guard b.count >= headerLength else { return nil }
        // parse() reports a bad magic or type itself; the size needs only the dimensions.
        let (dims, total) = try dimensions(b, rank: Int(b[3]), path: path)
        let (size, overflow) = total.addingReportingOverflow(headerLength)
        guard !overflow, size <= FileBytes.maxDecompressedSize else {
            throw DataError.badHeader(path: path, reason: "dimensions \(dims) declare \(total) bytes, more than the \(FileBytes.maxDecompressedSize)-byte limit")
        }
        return size
    }

    /// The `rank` big-endian dimensions after the 4-byte magic and their product, overflow-checked (the caller has
    /// checked that `b` holds the whole header).
    static func dimensions(_ b: [UInt8], rank: Int, path: String) throws -> (dims: [Int], elements: Int) {
        var dims: [Int] = []
        var elements = 1
        for d in 0..<rank {
            let o = 4 + 4 * d
            let v = Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
            dims.append(v)
            let (p, overflow) = elements.multipliedReportingOverflow(by: v)
            guard !overflow else { throw DataError.badHeader(path: path, reason: "dimensions \(dims) overflow") }
            elements = p
        }
        return (dims, elements)
    }

    /// Parses an in-memory IDX file; `path` only names the source in errors.
    public static func parse(_ bytes: [UInt8], path: String) throws -> IDXArray {
        guard bytes.count >= 4 else {
            throw DataError.badMagic(path: path, found: Array(bytes.prefix(4)),
                                     expected: "00 00 <type> <rank> (file is only \(bytes.count) bytes)")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DataError.badMagic(path: path, found: Array(bytes.prefix(4)), expected: "00 00 <type> <rank>")
        }
        let type = bytes[2]
        guard typeName(type) != nil else {
            throw DataError.badMagic(path: path, found: Array(bytes.prefix(4)),
                                     expected: "00 00 <type> <rank> with type one of 08 09 0b 0c 0d 0e")
        }
        guard type == unsignedByte else { throw DataError.unsupportedElementType(path: path, code: type) }
        let rank = Int(bytes[3])
        guard rank >= 1 else { throw DataError.badHeader(path: path, reason: "rank is 0") }
        let headerLength = 4 + 4 * rank
        guard bytes.count >= headerLength else {
            throw DataError.badHeader(path: path, reason: "rank \(rank) needs a \(headerLength)-byte header, the file has \(bytes.count) bytes")
        }
        let (dims, elements) = try dimensions(bytes, rank: rank, path: path)
        let actual = bytes.count - headerLength
        guard actual == elements else { throw DataError.payloadLength(path: path, expected: elements, actual: actual) }
        return IDXArray(path: path, elementType: type, dims: dims, payload: bytes[headerLength...])
    }
}
