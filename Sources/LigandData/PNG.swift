import CZlib
import Foundation
import LigandNumerics

/// A decoder for the PNG images of an image-folder data set (PNG spec, W3C 2003): 8- or 16-bit grey, grey+alpha,
/// RGB, RGBA and 8-bit palette images, not interlaced; alpha is dropped. Sizes are checked before inflating.
enum PNG {
    static let signature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
    /// Most pixels one image may have (the bound on a network's input).
    static let maxPixels = 1 << 24

    struct Image { let height: Int; let width: Int; let channels: Int; let pixels: [UInt8] }

    static func decode(_ b: [UInt8], path: String) throws -> Image {
        func fail(_ field: String, _ r: String) -> DataError { .format(path: path, field: field, reason: r) }
        func u32(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
        guard b.count >= 8, Array(b[0..<8]) == signature else { throw fail("signature", "not a PNG file") }
        var p = 8
        var width = 0, height = 0, depth = 0, colour = -1
        var palette: [UInt8] = []
        var idat: [UInt8] = []
        var sawEnd = false
        while p + 12 <= b.count {
            let length = u32(p)
            let type = String(decoding: b[(p + 4)..<(p + 8)], as: UTF8.self)
            guard length <= b.count - p - 12 else { throw fail(type, "chunk of \(length) bytes runs past the end of the file") }
            let data = b[(p + 8)..<(p + 8 + length)]
            switch type {
            case "IHDR":
                guard length == 13 else { throw fail("IHDR", "is \(length) bytes, not 13") }
                width = u32(p + 8); height = u32(p + 12); depth = Int(b[p + 16]); colour = Int(b[p + 17])
                guard b[p + 18] == 0, b[p + 19] == 0 else { throw fail("IHDR", "unknown compression or filter method") }
                guard b[p + 20] == 0 else { throw fail("IHDR", "interlaced images are not supported; save it without interlacing") }
            case "PLTE": palette = Array(data)
            case "IDAT": idat += data
            case "IEND": sawEnd = true
            default: break
            }
            if sawEnd { break }
            p += 12 + length
        }
        guard width > 0, height > 0 else { throw fail("IHDR", "missing, or a zero size (\(width)×\(height))") }
        guard let pixels = CheckedSize.product([width, height]), pixels <= maxPixels else {
            throw fail("IHDR", "\(width)×\(height) is more than \(maxPixels) pixels")
        }
        let samples: Int
        switch (colour, depth) {
        case (0, 8), (0, 16): samples = 1
        case (2, 8), (2, 16): samples = 3
        case (3, 8): samples = 1
        case (4, 8), (4, 16): samples = 2
        case (6, 8), (6, 16): samples = 4
        default: throw fail("IHDR", "colour type \(colour) at bit depth \(depth) is not supported (8- or 16-bit grey, RGB, alpha, or 8-bit palette are)")
        }
        if colour == 3 { guard !palette.isEmpty, palette.count % 3 == 0 else { throw fail("PLTE", "a palette image needs a palette") } }
        guard sawEnd else { throw fail("IEND", "missing: the file is truncated") }
        let bpp = samples * depth / 8, stride = width * bpp
        guard height * (stride + 1) <= idat.count * ZipArchive.maxDeflateRatio + 64 else {
            throw fail("IDAT", "\(idat.count) compressed bytes cannot hold a \(width)×\(height) image")
        }
        // The inflated size is known exactly: one filter byte per row, then the row.
        var raw = [UInt8](repeating: 0, count: height * (stride + 1))
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw fail("IDAT", "inflateInit failed") }
        defer { inflateEnd(&stream) }
        guard idat.count <= Int(UInt32.max), raw.count <= Int(UInt32.max) else { throw fail("IDAT", "too large") }
        let rc: Int32 = idat.withUnsafeMutableBufferPointer { inp in
            raw.withUnsafeMutableBufferPointer { out in
                stream.next_in = inp.baseAddress; stream.avail_in = uInt(inp.count)
                stream.next_out = out.baseAddress; stream.avail_out = uInt(out.count)
                return inflate(&stream, Z_FINISH)
            }
        }
        guard rc == Z_STREAM_END, stream.avail_out == 0 else {
            throw fail("IDAT", "image data inflates to \(raw.count - Int(stream.avail_out)) bytes, \(width)×\(height) needs \(raw.count) (zlib \(rc))")
        }
        // Undo the per-row filters (None, Sub, Up, Average, Paeth) in place.
        var prior = [UInt8](repeating: 0, count: stride)
        var rows = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let f = raw[y * (stride + 1)], base = y * (stride + 1) + 1
            var row = Array(raw[base..<(base + stride)])
            for x in 0..<stride {
                let a = x >= bpp ? Int(row[x - bpp]) : 0, up = Int(prior[x]), c = x >= bpp ? Int(prior[x - bpp]) : 0
                let add: Int
                switch f {
                case 0: add = 0
                case 1: add = a
                case 2: add = up
                case 3: add = (a + up) / 2
                case 4:
                    let pa = abs(up - c), pb = abs(a - c), pc = abs(a + up - 2 * c)
                    add = pa <= pb && pa <= pc ? a : pb <= pc ? up : c
                default: throw fail("IDAT", "row \(y) has unknown filter type \(f)")
                }
                row[x] = UInt8(truncatingIfNeeded: Int(row[x]) + add)
            }
            rows.replaceSubrange((y * stride)..<((y + 1) * stride), with: row)
            prior = row
        }
        // To 8-bit samples (16-bit: the high byte), alpha dropped, palette looked up.
        let channels = colour == 2 || colour == 6 || colour == 3 ? 3 : 1
        var out = [UInt8](repeating: 0, count: pixels * channels)
        let step = depth / 8
        for i in 0..<pixels {
            if colour == 3 {
                let k = Int(rows[i]) * 3
                guard k + 2 < palette.count else { throw fail("PLTE", "pixel \(i) uses palette entry \(rows[i]), the palette has \(palette.count / 3)") }
                out[i * 3] = palette[k]; out[i * 3 + 1] = palette[k + 1]; out[i * 3 + 2] = palette[k + 2]
            } else {
                for ch in 0..<channels { out[i * channels + ch] = rows[(i * samples + ch) * step] }
            }
        }
        return Image(height: height, width: width, channels: channels, pixels: out)
    }
}
