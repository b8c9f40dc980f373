import Foundation

/// CIFAR-10/100 binary batches: per record the label byte(s), then 3072 channel-planar RGB bytes (32×32).
public enum CIFAR {
    public enum Variant: Sendable, Equatable {
        case cifar10
        /// `fine`: the 100 fine labels (second byte); otherwise the 20 coarse ones (first byte).
        case cifar100(fine: Bool)

        var labelBytes: Int { self == .cifar10 ? 1 : 2 }
        var labelOffset: Int {
            if case .cifar100(fine: true) = self { return 1 }
            return 0
        }
        public var classCount: Int {
            switch self {
            case .cifar10: return 10
            case .cifar100(let fine): return fine ? 100 : 20
            }
        }
    }

    public static let side = 32
    public static let pixelBytes = 3 * 32 * 32

    /// Loads and concatenates `files` in order (gzip-compressed files are accepted too).
    public static func load(files: [URL], variant: Variant) throws -> LabeledImages {
        guard !files.isEmpty else { throw DataError.invalidArgument(name: "CIFAR.load(files:)", reason: "no files given") }
        let record = variant.labelBytes + pixelBytes
        let plane = side * side
        var pixels: [Float] = []
        var labels: [Int] = []
        let table = PixelConversion.table
        for url in files {
            let bytes = try FileBytes.readMaybeGzipped(url)
            guard !bytes.isEmpty, bytes.count % record == 0 else {
                throw DataError.recordLength(path: url.path, length: bytes.count, recordSize: record)
            }
            let n = bytes.count / record
            let base = pixels.count
            pixels.append(contentsOf: repeatElement(0, count: n * pixelBytes))
            labels.reserveCapacity(labels.count + n)
            for r in 0..<n {
                let label = Int(bytes[r * record + variant.labelOffset])
                guard label < variant.classCount else {
                    throw DataError.labelOutOfRange(path: url.path, index: r, label: label, classCount: variant.classCount)
                }
                labels.append(label)
            }
            // Planar [3][32][32] → interleaved [32][32][3].
            bytes.withUnsafeBufferPointer { src in
                table.withUnsafeBufferPointer { t in
                    pixels.withUnsafeMutableBufferPointer { dst in
                        for r in 0..<n {
                            let s = r * record + variant.labelBytes
                            let d = base + r * pixelBytes
                            for p in 0..<plane {
                                dst[d + 3 * p] = t[Int(src[s + p])]
                                dst[d + 3 * p + 1] = t[Int(src[s + plane + p])]
                                dst[d + 3 * p + 2] = t[Int(src[s + 2 * plane + p])]
                            }
                        }
                    }
                }
            }
        }
        return LabeledImages(height: side, width: side, channels: 3, pixels: pixels, labels: labels,
                             classCount: variant.classCount)
    }
}
