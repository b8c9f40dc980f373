import CZlib
import Foundation
import LigandNumerics

/// One array read from a data file, before it becomes images or labels: its shape and its elements, widened.
struct DataArray {
    enum Values {
        /// Unsigned bytes (pixels, to be scaled by 1/255).
        case bytes([UInt8])
        /// Floating-point values, already finite-checked by the caller of `floats`.
        case doubles([Double])
        case integers([Int64])
    }
    /// The file and the array's name inside it, for messages: "train.npz: images".
    let path: String
    let field: String
    let shape: [Int]
    let values: Values

    var count: Int { shape.first ?? 0 }
    func fail(_ reason: String) -> DataError { .format(path: path, field: field, reason: reason) }
}

/// NumPy's `.npy` format (format version 1, 2 or 3): a magic string, a Python-literal header, then the raw array.
enum NPY {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// Parses `bytes` (a whole `.npy` file or `.npz` member); every size is checked against the bytes present.
    static func parse(_ bytes: ArraySlice<UInt8>, path: String, field: String) throws -> DataArray {
        func fail(_ r: String) -> DataError { .format(path: path, field: field, reason: r) }
        let b = Array(bytes)
        guard b.count >= 10, Array(b[0..<6]) == magic else { throw fail("not a .npy array (no \\x93NUMPY magic)") }
        let major = b[6]
        let headerLength: Int, start: Int
        switch major {
        case 1: headerLength = Int(b[8]) | Int(b[9]) << 8; start = 10
        case 2, 3:
            guard b.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24; start = 12
        default: throw fail("npy format version \(major) is not supported (1, 2 or 3 are)")
        }
        guard headerLength <= b.count - start else { throw fail("header of \(headerLength) bytes runs past the end of the data") }
        let header = String(decoding: b[start..<(start + headerLength)], as: UTF8.self)
        let descr = try value(of: "descr", in: header, fail: fail)
        let fortran = try value(of: "fortran_order", in: header, fail: fail)
        let shapeText = try value(of: "shape", in: header, fail: fail)
        guard fortran == "False" else {
            throw fail("is stored in Fortran order; save np.ascontiguousarray(x) instead")
        }
        let descrValue = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        let shape = try parseShape(shapeText, fail: fail)
        guard let elements = CheckedSize.product(shape) else { throw fail("shape \(shape) overflows") }
        let (kind, size) = try dtype(descrValue, fail: fail)
        let payload = b.count - start - headerLength
        guard let need = CheckedSize.product([elements, size]), need == payload else {
            throw fail("shape \(shape) of \(descrValue) needs \(elements) × \(size) bytes, the data holds \(payload)")
        }
        let data = b[(start + headerLength)...]
        return DataArray(path: path, field: field, shape: shape, values: decode(data, kind: kind, size: size, count: elements))
    }

    enum Kind { case unsigned, signed, float }

    static func dtype(_ d: String, fail: (String) -> DataError) throws -> (Kind, Int) {
        guard d.count >= 3 else { throw fail("dtype '\(d)' is not understood") }
        let order = d.first!, kindChar = d.dropFirst().first!, size = Int(d.dropFirst(2)) ?? 0
        guard order == "<" || order == "|" || (order == "=" && 1.littleEndian == 1) else {
            throw fail("dtype '\(d)' is big-endian; save it little-endian (x.astype(x.dtype.newbyteorder('<')))")
        }
        switch (kindChar, size) {
        case ("u", 1), ("u", 2), ("u", 4), ("u", 8): return (.unsigned, size)
        case ("i", 1), ("i", 2), ("i", 4), ("i", 8): return (.signed, size)
        case ("b", 1): return (.unsigned, 1)
        case ("f", 4), ("f", 8): return (.float, size)
        default: throw fail("dtype '\(d)' is not supported (unsigned or signed integers, float32 or float64 are)")
        }
    }

    /// Widens little-endian elements: bytes stay bytes when `kind` is unsigned of size 1.
    static func decode(_ data: ArraySlice<UInt8>, kind: Kind, size: Int, count: Int) -> DataArray.Values {
        if kind == .unsigned && size == 1 { return .bytes(Array(data)) }
        return data.withUnsafeBytes { raw -> DataArray.Values in
            func le<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T { T(littleEndian: raw.loadUnaligned(fromByteOffset: i * size, as: T.self)) }
            switch kind {
            case .float:
                return .doubles((0..<count).map { size == 4 ? Double(Float(bitPattern: le($0, UInt32.self))) : Double(bitPattern: le($0, UInt64.self)) })
            case .signed:
                return .integers((0..<count).map {
                    switch size { case 1: return Int64(Int8(bitPattern: raw[$0])); case 2: return Int64(le($0, Int16.self))
                    case 4: return Int64(le($0, Int32.self)); default: return le($0, Int64.self) }
                })
            case .unsigned:
                return .integers((0..<count).map {
                    switch size { case 2: return Int64(le($0, UInt16.self)); case 4: return Int64(le($0, UInt32.self))
                    default: let v = le($0, UInt64.self); return v > UInt64(Int64.max) ? -1 : Int64(v) }
                })
            }
        }
    }

    /// The text after `'key':` up to the next top-level comma or brace.
    static func value(of key: String, in header: String, fail: (String) -> DataError) throws -> String {
        guard let r = header.range(of: "'\(key)'") else { throw fail("header has no '\(key)' (\(header.prefix(120)))") }
        var rest = header[r.upperBound...].drop { $0 == " " }
        guard rest.first == ":" else { throw fail("header's '\(key)' has no value") }
        rest = rest.dropFirst().drop { $0 == " " }
        var depth = 0, end = rest.startIndex
        while end < rest.endIndex {
            let ch = rest[end]
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 }
            if depth == 0 && (ch == "," || ch == "}") { break }
            end = rest.index(after: end)
        }
        return String(rest[..<end]).trimmingCharacters(in: .whitespaces)
    }

    static func parseShape(_ text: String, fail: (String) -> DataError) throws -> [Int] {
        guard text.hasPrefix("("), text.hasSuffix(")") else { throw fail("shape '\(text)' is not a tuple") }
        let inner = text.dropFirst().dropLast()
        return try inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map {
            guard let v = Int($0), v >= 0 else { throw fail("shape '\(text)' holds '\($0)', not a size") }
            return v
        }
    }
}

/// The members of a ZIP archive (`.npz`), stored or deflated, read from its central directory.
enum ZipArchive {
    /// Most bytes one member may inflate to (the data cap of every reader here).
    static let maxMemberSize = FileBytes.maxDecompressedSize
    /// Deflate's largest expansion (258-byte matches in about 2 bits each).
    static let maxDeflateRatio = 1032

    struct Member { let name: String; let method: Int; let compressed: Int; let size: Int; let localOffset: Int; let crc: UInt32 }

    static func members(_ b: [UInt8], path: String) throws -> [Member] {
        func fail(_ r: String) -> DataError { .format(path: path, field: "zip", reason: r) }
        func u16(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
        func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
        func u64(_ i: Int) -> Int? { let hi = u32(i + 4); return hi >= 1 << 31 ? nil : u32(i) | hi << 32 }
        // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
        guard b.count >= 22 else { throw fail("too short to be a ZIP archive (.npz)") }
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 22 - 65_535) {
            if b[i] == 0x50 && b[i + 1] == 0x4b && b[i + 2] == 5 && b[i + 3] == 6 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record: not a ZIP archive (.npz)") }
        var entries = u16(eocd + 10), dirSize = u32(eocd + 12), dirOffset = u32(eocd + 16)
        if entries == 0xFFFF || dirOffset == 0xFFFF_FFFF {
            // ZIP64: the locator just before the record points at the ZIP64 end record.
            let loc = eocd - 20
            guard loc >= 0, u32(loc) == 0x0706_4b50, let rec = u64(loc + 8), rec >= 0, rec <= b.count - 56, u32(rec) == 0x0606_4b50,
                  let n = u64(rec + 32), let s = u64(rec + 40), let o = u64(rec + 48) else { throw fail("damaged ZIP64 end record") }
            (entries, dirSize, dirOffset) = (n, s, o)
        }
        guard dirOffset <= b.count, dirSize <= b.count - dirOffset, entries <= dirSize / 46 else {
            throw fail("central directory (\(entries) entries, \(dirSize) bytes at \(dirOffset)) runs past the end of the file")
        }
        var out: [Member] = []
        var p = dirOffset
        for _ in 0..<entries {
            guard p <= dirOffset + dirSize - 46, u32(p) == 0x0201_4b50 else { throw fail("damaged central directory entry at byte \(p)") }
            let method = u16(p + 10), crc = UInt32(u32(p + 16))
            var compressed = u32(p + 20), size = u32(p + 24), offset = u32(p + 42)
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            guard p + 46 + nameLength + extraLength + commentLength <= dirOffset + dirSize else { throw fail("damaged central directory entry at byte \(p)") }
            let name = String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            // ZIP64 extra field: the 64-bit values of whichever fields hold 0xFFFFFFFF, in this order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), length = u16(e + 2)
                guard e + 4 + length <= extraEnd else { break }
                if id == 1 {
                    var q = e + 4
                    for field in 0..<3 {
                        let wide = field == 0 ? size == 0xFFFF_FFFF : field == 1 ? compressed == 0xFFFF_FFFF : offset == 0xFFFF_FFFF
                        guard wide else { continue }
                        guard q + 8 <= e + 4 + length, let v = u64(q) else { throw fail("member '\(name)': damaged ZIP64 sizes") }
                        if field == 0 { size = v } else if field == 1 { compressed = v } else { offset = v }
                        q += 8
                    }
                }
                e += 4 + length
            }
            out.append(Member(name: name, method: method, compressed: compressed, size: size, localOffset: offset, crc: crc))
            p += 46 + nameLength + extraLength + commentLength
        }
        return out
    }

    /// A member's bytes, inflated when deflated; its size is checked before anything is allocated and its CRC after.
    static func extract(_ m: Member, from b: [UInt8], path: String) throws -> ArraySlice<UInt8> {
        func fail(_ r: String) -> DataError { .format(path: path, field: m.name, reason: r) }
        let lo = m.localOffset
        guard lo <= b.count - 30, b[lo] == 0x50, b[lo + 1] == 0x4b, b[lo + 2] == 3, b[lo + 3] == 4 else { throw fail("damaged local header") }
        let start = lo + 30 + (Int(b[lo + 26]) | Int(b[lo + 27]) << 8) + (Int(b[lo + 28]) | Int(b[lo + 29]) << 8)
        guard start <= b.count, m.compressed <= b.count - start else { throw fail("member data runs past the end of the file") }
        guard m.compressed <= Int(UInt32.max) else { throw fail("member of \(m.compressed) compressed bytes is too large") }
        // Deflate cannot expand data more than 1032:1, so a small member claiming a huge size is refused before allocating it.
        guard m.size <= m.compressed * maxDeflateRatio + 64 else {
            throw fail("claims \(m.size) bytes from \(m.compressed) compressed, more than deflate can produce")
        }
        guard m.size <= maxMemberSize else { throw fail("inflates to \(m.size) bytes, more than the \(maxMemberSize)-byte cap") }
        let data: ArraySlice<UInt8>
        switch m.method {
        case 0:
            guard m.compressed == m.size else { throw fail("stored member's sizes disagree (\(m.compressed) vs \(m.size))") }
            data = b[start..<(start + m.size)]
        case 8:
            var out = [UInt8](repeating: 0, count: m.size)
            var stream = z_stream()
            guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw fail("inflateInit2 failed") }
            defer { inflateEnd(&stream) }
            let rc: Int32 = b.withUnsafeBufferPointer { inp in
                out.withUnsafeMutableBufferPointer { o in
                    stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress! + start)
                    stream.avail_in = uInt(m.compressed)
                    stream.next_out = o.baseAddress
                    stream.avail_out = uInt(m.size)
                    return inflate(&stream, Z_FINISH)
                }
            }
            guard rc == Z_STREAM_END, stream.avail_out == 0 else { throw fail("corrupt deflate data (zlib \(rc), \(m.size - Int(stream.avail_out)) of \(m.size) bytes)") }
            data = out[...]
        default: throw fail("compression method \(m.method) is not supported (stored or deflate are: np.savez or np.savez_compressed)")
        }
        let crc = data.withUnsafeBufferPointer { p in UInt32(crc32(0, p.baseAddress, uInt(p.count))) }
        guard crc == m.crc else { throw fail("CRC mismatch: the member is damaged") }
        return data
    }
}
