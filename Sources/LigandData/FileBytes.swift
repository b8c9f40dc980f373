import CZlib
import Foundation

/// Whole-file reads, transparently gunzipping when the content starts with the gzip magic.
enum FileBytes {
    static func read(_ url: URL, missingHint: String = "") throws -> [UInt8] {
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError.missingFile(path: path, hint: missingHint)
        }
        if isDirectory.boolValue { throw DataError.unreadable(path: path, reason: "is a directory") }
        // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer, and is then refused below.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw DataError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw DataError.unreadable(path: path, reason: "not a regular file") }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        let size = Int(info.st_size)
        var failure: String?
        // Read straight into the array's storage: no Data and no second copy.
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var done = 0
            while done < size {
                let r = Foundation.read(fd, buffer.baseAddress! + done, size - done)
                if r < 0 && errno == EINTR { continue }
                if r < 0 { failure = String(cString: strerror(errno)); break }
                if r == 0 { failure = "file shrank while reading (\(done) of \(size) bytes)"; break }
                done += r
            }
            if failure != nil { done = 0 }
            initialized = done
        }
        if let failure { throw DataError.unreadable(path: path, reason: failure) }
        return bytes
    }

    /// Most bytes a data file may decompress to (1 GiB; Fashion-MNIST's largest file is 47 MB).
    static let maxDecompressedSize = 1 << 30

    /// File content, decompressed if it is gzip (detected by the bytes, not the name). `limit` sees the
    /// decompressed prefix and returns the most bytes the whole may have (nil while it needs more bytes).
    static func readMaybeGzipped(_ url: URL, missingHint: String = "",
                                 limit: (ArraySlice<UInt8>) throws -> Int? = { _ in maxDecompressedSize }) throws -> [UInt8] {
        let bytes = try read(url, missingHint: missingHint)
        if Gzip.isGzip(bytes) { return try Gzip.decompress(bytes, path: url.path, limit: limit) }
        return bytes
    }
}

enum Gzip {
    static func isGzip(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b }

    /// Streams the (possibly multi-member) gzip input through zlib into a buffer that grows only up to
    /// the size `limit` allows (asked with the output so far until it answers; never above `maxDecompressedSize`).
    static func decompress(_ input: [UInt8], path: String,
                           limit: (ArraySlice<UInt8>) throws -> Int? = { _ in FileBytes.maxDecompressedSize }) throws -> [UInt8] {
        // ISIZE (last 4 bytes, little-endian) is the uncompressed size mod 2^32: a good first capacity.
        var capacity = 1 << 16
        if input.count >= 18 {
            let n = input.count
            let isize = Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1]) << 24
            // A damaged trailer can claim up to 4 GiB; deflate rarely beats 32:1 on image data, so cap the trust.
            capacity = max(capacity, min(isize + 64, 32 * input.count, 1 << 24))
        }
        var allowed: Int?
        var out = [UInt8](unsafeUninitializedCapacity: capacity) { _, n in n = capacity }
        var produced = 0
        var consumed = 0
        var stream = z_stream()
        var rc = inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw DataError.corruptGzip(path: path, reason: "inflateInit2 failed (\(rc))") }
        defer { inflateEnd(&stream) }

        // Asks `limit` until it answers, then holds the output to that size.
        func checkLimit() throws -> Int {
            if allowed == nil, let n = try limit(out[0..<produced]) { allowed = min(n, FileBytes.maxDecompressedSize) }
            let bound = allowed ?? FileBytes.maxDecompressedSize
            guard produced <= bound else { throw DataError.decompressedTooLarge(path: path, limit: bound) }
            return bound
        }

        func finish() throws -> [UInt8] {
            _ = try checkLimit()
            out.removeLast(out.count - produced)
            return out
        }

        func zlibMessage(_ code: Int32) -> String {
            if let m = stream.msg { return String(cString: m) }
            return "zlib error \(code)"
        }

        while true {
            let bound = try checkLimit()
            if produced == out.count {
                // One byte past the bound is room enough to see that the stream runs over it.
                let grow = min(max(out.count / 2, 1 << 16), bound + 1 - out.count)
                out.append(contentsOf: repeatElement(0, count: grow))
            }
            let chunkIn = min(input.count - consumed, Int(UInt32.max))
            let chunkOut = min(out.count - produced, Int(UInt32.max))
            rc = input.withUnsafeBufferPointer { inp in
                out.withUnsafeMutableBufferPointer { o in
                    stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress! + consumed)
                    stream.avail_in = uInt(chunkIn)
                    stream.next_out = o.baseAddress! + produced
                    stream.avail_out = uInt(chunkOut)
                    return inflate(&stream, Z_NO_FLUSH)
                }
            }
            consumed += chunkIn - Int(stream.avail_in)
            produced += chunkOut - Int(stream.avail_out)
            switch rc {
            case Z_OK:
                continue
            case Z_STREAM_END:
                let rest = input[consumed...]
                if rest.isEmpty { return try finish() }
                if rest.count >= 2 && rest[consumed] == 0x1f && rest[consumed + 1] == 0x8b {
                    guard inflateReset(&stream) == Z_OK else {
                        throw DataError.corruptGzip(path: path, reason: "cannot restart for the next gzip member")
                    }
                    continue
                }
                if rest.allSatisfy({ $0 == 0 }) { return try finish() }
                throw DataError.corruptGzip(path: path, reason: "\(rest.count) unexpected bytes after the end of the gzip stream")
            case Z_BUF_ERROR:
                if stream.avail_out == 0 { continue }
                throw DataError.corruptGzip(path: path, reason: "truncated: the stream ends after \(produced) decompressed bytes")
            case Z_NEED_DICT:
                throw DataError.corruptGzip(path: path, reason: "the stream needs a preset dictionary")
            case Z_MEM_ERROR:
                throw DataError.corruptGzip(path: path, reason: "out of memory")
            default:
                throw DataError.corruptGzip(path: path, reason: zlibMessage(rc))
            }
        }
    }
}

