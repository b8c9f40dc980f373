import Foundation

/// Every way a data file or a data request can be wrong, each naming the file (or argument) at fault.
public enum DataError: Error, Equatable, Sendable {
    case missingFile(path: String, hint: String)
    case unreadable(path: String, reason: String)
    case corruptGzip(path: String, reason: String)
    /// The gzip stream inflates past the size its content declares (or past the decompression cap).
    case decompressedTooLarge(path: String, limit: Int)
    case badMagic(path: String, found: [UInt8], expected: String)
    case unsupportedElementType(path: String, code: UInt8)
    case badHeader(path: String, reason: String)
    case payloadLength(path: String, expected: Int, actual: Int)
    case unexpectedShape(path: String, expected: String, actual: [Int])
    case countMismatch(imagesPath: String, images: Int, labelsPath: String, labels: Int)
    case labelOutOfRange(path: String, index: Int, label: Int, classCount: Int)
    case recordLength(path: String, length: Int, recordSize: Int)
    case invalidArgument(name: String, reason: String)
    /// A field of a data file (an array of an `.npz`, a PNG's header, a class folder) that is wrong, and why.
    case format(path: String, field: String, reason: String)
}

extension DataError: CustomStringConvertible, LocalizedError {
    public var description: String {
        switch self {
        case let .missingFile(path, hint):
            return "\(path): file not found. \(hint)"
        case let .unreadable(path, reason):
            return "\(path): cannot be read: \(reason)"
        case let .corruptGzip(path, reason):
            return "\(path): corrupt gzip data: \(reason)"
        case let .decompressedTooLarge(path, limit):
            return "\(path): gzip data decompresses to more than \(limit) bytes, the most its header declares (or the \(FileBytes.maxDecompressedSize)-byte cap); refusing to inflate it"
        case let .badMagic(path, found, expected):
            let hex = found.map { String(format: "%02x", $0) }.joined(separator: " ")
            return "\(path): bad magic number [\(hex)], expected \(expected)"
        case let .unsupportedElementType(path, code):
            let name = IDX.typeName(code).map { " (\($0))" } ?? " (not an IDX type)"
            return "\(path): IDX element type 0x\(String(format: "%02x", code))\(name) is not supported; only 0x08 (unsigned byte) is"
        case let .badHeader(path, reason):
            return "\(path): bad header: \(reason)"
        case let .payloadLength(path, expected, actual):
            let what = actual < expected ? "truncated" : "has trailing bytes"
            return "\(path): payload \(what): the header's dimensions need \(expected) bytes, the file holds \(actual)"
        case let .unexpectedShape(path, expected, actual):
            return "\(path): dimensions \(actual) do not fit: expected \(expected)"
        case let .countMismatch(imagesPath, images, labelsPath, labels):
            return "\(imagesPath) holds \(images) images but \(labelsPath) holds \(labels) labels"
        case let .labelOutOfRange(path, index, label, classCount):
            return "\(path): label \(label) at index \(index) is out of range 0..<\(classCount)"
        case let .recordLength(path, length, recordSize):
            return "\(path): length \(length) bytes is not a positive multiple of the record size \(recordSize)"
        case let .invalidArgument(name, reason):
            return "\(name): \(reason)"
        case let .format(path, field, reason):
            return "\(path): \(field): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
