import Foundation

/// Everything that can be wrong with a safetensors file or a write request; each case names
/// the file and, where there is one, the tensor and header field at fault.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The file could not be opened, read, mapped, written or renamed.
    case io(path: String, operation: String, reason: String)
    /// Fewer than the 8 bytes of the header-length prefix.
    case truncated(path: String, fileSize: Int)
    /// The header length in the prefix runs past the end of the file.
    case headerLengthBeyondFile(path: String, headerLength: UInt64, fileSize: Int)
    case headerNotUTF8(path: String)
    case headerNotJSON(path: String, reason: String, byteOffset: Int)
    case headerNotObject(path: String, found: String)
    /// `__metadata__` is not an object of string values (or appears twice).
    case invalidMetadata(path: String, key: String?, reason: String)
    case duplicateTensor(path: String, tensor: String)
    /// A tensor entry repeats a field such as `dtype`.
    case duplicateField(path: String, tensor: String, field: String)
    case missingField(path: String, tensor: String, field: String)
    case wrongFieldType(path: String, tensor: String, field: String, expected: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    /// `data_offsets` has begin > end.
    case invalidOffsets(path: String, tensor: String, begin: Int, end: Int)
    case offsetsOutOfBounds(path: String, tensor: String, end: Int, bufferSize: Int)
    /// After sorting by begin, this tensor does not start where the previous one ended.
    case offsetsNotContiguous(path: String, tensor: String, begin: Int, expectedBegin: Int, previous: String?)
    case byteCountMismatch(path: String, tensor: String, dtype: DType, shape: [Int], expected: Int, actual: Int)
    /// The element count of a shape overflows Int.
    case shapeTooLarge(path: String, tensor: String, shape: [Int])
    /// Bytes remain after the last tensor's data.
    case trailingBytes(path: String, dataEnd: Int, bufferSize: Int)
    case tensorNotFound(path: String, tensor: String)
    case unsupportedConversion(path: String, tensor: String, dtype: DType, to: String)
    case nonFinite(path: String, tensor: String, index: Int, value: String)
    /// An Int64 request for a U64 value above Int64.max.
    case integerOutOfRange(path: String, tensor: String, index: Int, value: String)
    /// A write request that cannot be encoded (bad name, shape/count mismatch, ...).
    case invalidPayload(path: String, tensor: String, reason: String)
    /// The data buffer's SHA-256 differs from the one recorded in `__metadata__` when the file was written.
    case digestMismatch(path: String, expected: String, actual: String)

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            return "\(path): cannot \(operation): \(reason)"
        case let .truncated(path, size):
            return "\(path): truncated safetensors file: \(size) bytes, fewer than the 8-byte header length"
        case let .headerLengthBeyondFile(path, n, size):
            return "\(path): header length \(n) runs past the end of the file (\(size) bytes, header may be at most \(max(0, size - 8)))"
        case let .headerNotUTF8(path):
            return "\(path): header is not valid UTF-8"
        case let .headerNotJSON(path, reason, offset):
            return "\(path): header is not valid JSON: \(reason) at header byte \(offset)"
        case let .headerNotObject(path, found):
            return "\(path): header must be a JSON object, found \(found)"
        case let .invalidMetadata(path, key, reason):
            return "\(path): __metadata__\(key.map { "[\"\($0)\"]" } ?? ""): \(reason)"
        case let .duplicateTensor(path, tensor):
            return "\(path): tensor \"\(tensor)\" appears more than once in the header"
        case let .duplicateField(path, tensor, field):
            return "\(path): tensor \"\(tensor)\": field \(field) appears more than once"
        case let .missingField(path, tensor, field):
            return "\(path): tensor \"\(tensor)\": missing field \(field)"
        case let .wrongFieldType(path, tensor, field, expected):
            return "\(path): tensor \"\(tensor)\": field \(field) must be \(expected)"
        case let .unknownDType(path, tensor, dtype):
            return "\(path): tensor \"\(tensor)\": unknown dtype \"\(dtype)\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .invalidOffsets(path, tensor, begin, end):
            return "\(path): tensor \"\(tensor)\": data_offsets [\(begin), \(end)] begin after end"
        case let .offsetsOutOfBounds(path, tensor, end, size):
            return "\(path): tensor \"\(tensor)\": data_offsets end \(end) is beyond the data buffer of \(size) bytes"
        case let .offsetsNotContiguous(path, tensor, begin, expected, previous):
            let kind = begin > expected ? "a gap" : "an overlap"
            let after = previous.map { "the end of tensor \"\($0)\"" } ?? "the start of the data buffer"
            return "\(path): tensor \"\(tensor)\": data_offsets begin \(begin) leaves \(kind) after \(after) at \(expected)"
        case let .byteCountMismatch(path, tensor, dtype, shape, expected, actual):
            return "\(path): tensor \"\(tensor)\": data_offsets span \(actual) bytes but shape \(shape) of \(dtype) needs \(expected)"
        case let .shapeTooLarge(path, tensor, shape):
            return "\(path): tensor \"\(tensor)\": shape \(shape) has too many elements"
        case let .trailingBytes(path, end, size):
            return "\(path): \(size - end) trailing bytes after the last tensor (data ends at \(end) of a \(size)-byte buffer)"
        case let .tensorNotFound(path, tensor):
            return "\(path): no tensor named \"\(tensor)\""
        case let .unsupportedConversion(path, tensor, dtype, to):
            return "\(path): tensor \"\(tensor)\": cannot read dtype \(dtype) as \(to)"
        case let .nonFinite(path, tensor, index, value):
            return "\(path): tensor \"\(tensor)\": element \(index) is \(value); non-finite values are refused"
        case let .integerOutOfRange(path, tensor, index, value):
            return "\(path): tensor \"\(tensor)\": element \(index) = \(value) does not fit in Int64"
        case let .invalidPayload(path, tensor, reason):
            return "\(path): tensor \"\(tensor)\": \(reason)"
        case let .digestMismatch(path, expected, actual):
            return "\(path): tensor data does not match its recorded checksum (__metadata__[\"\(SafeTensors.digestKey)\"] is \(expected), the data hashes to \(actual)); the file is corrupt or was modified (--no-verify skips this check)"
        }
    }

    public var errorDescription: String? { description }
}
