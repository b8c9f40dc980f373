import LigandNumerics

/// A labelled image set held as one NHWC Float32 buffer (sample, row, column, channel).
public struct LabeledImages: Sendable {
    public let count: Int
    public let height: Int
    public let width: Int
    public let channels: Int
    /// count × height × width × channels values, NHWC.
    public let pixels: [Float]
    public let labels: [Int]
    public let classCount: Int

    /// Values per sample: height × width × channels.
    public var sampleSize: Int { height * width * channels }

    /// Builds a set from code-computed arrays; the loaders validate file contents before calling this.
    public init(height: Int, width: Int, channels: Int, pixels: [Float], labels: [Int], classCount: Int) {
        precondition(height > 0 && width > 0 && channels > 0, "non-positive image shape \(height)×\(width)×\(channels)")
        precondition(pixels.count == labels.count * height * width * channels,
                     "\(pixels.count) pixel values do not fill \(labels.count) images of \(height)×\(width)×\(channels)")
        precondition(labels.allSatisfy { $0 >= 0 && $0 < classCount }, "a label is outside 0..<\(classCount)")
        self.count = labels.count
        self.height = height
        self.width = width
        self.channels = channels
        self.pixels = pixels
        self.labels = labels
        self.classCount = classCount
    }

    /// The pixels of sample i, NHWC-contiguous.
    public func image(_ i: Int) -> ArraySlice<Float> {
        pixels[(i * sampleSize)..<((i + 1) * sampleSize)]
    }

    /// The whole set as a [count, height, width, channels] tensor (a copy-on-write share of the buffer).
    public func tensor() -> Tensor {
        Tensor(shape: [count, height, width, channels], storage: pixels)
    }

    /// Number of samples in each class 0..<classCount.
    public func classCounts() -> [Int] {
        var c = [Int](repeating: 0, count: classCount)
        for l in labels { c[l] += 1 }
        return c
    }

    /// The samples at `indices`, in that order, copied into a new set.
    public func subset(_ indices: [Int]) -> LabeledImages {
        let s = sampleSize
        let gathered = Gather.rows(pixels, rowSize: s, indices: indices, limit: count)
        return LabeledImages(height: height, width: width, channels: channels,
                             pixels: gathered, labels: indices.map { labels[$0] }, classCount: classCount)
    }

    /// Per-channel mean and (population) standard deviation, accumulated in Float64 in two passes.
    public func channelStatistics() -> (mean: [Double], std: [Double]) {
        let c = channels
        let perChannel = Double(count * height * width)
        guard perChannel > 0 else { return ([Double](repeating: 0, count: c), [Double](repeating: 0, count: c)) }
        return pixels.withUnsafeBufferPointer { p in
            var mean: [Double] = []
            var std: [Double] = []
            for k in 0..<c {
                let m = Strided.sum(p, start: k, stride: c) { $0 } / perChannel
                let v = Strided.sum(p, start: k, stride: c) { ($0 - m) * ($0 - m) } / perChannel
                mean.append(m)
                std.append(v.squareRoot())
            }
            return (mean, std)
        }
    }

    /// (x − mean[c]) / std[c] per channel; std must be positive and finite.
    public func normalized(mean: [Double], std: [Double]) throws -> LabeledImages {
        guard mean.count == channels, std.count == channels else {
            throw DataError.invalidArgument(name: "normalized(mean:std:)",
                                            reason: "needs \(channels) values each, got mean \(mean.count) and std \(std.count)")
        }
        for k in 0..<channels {
            guard mean[k].isFinite, std[k].isFinite, std[k] > 0 else {
                throw DataError.invalidArgument(name: "normalized(mean:std:)",
                                                reason: "channel \(k): mean \(mean[k]) and std \(std[k]) must be finite with std > 0")
            }
        }
        let c = channels
        var out = pixels
        out.withUnsafeMutableBufferPointer { p in
            guard let base = p.baseAddress else { return }
            let n = p.count
            for k in 0..<c {
                let m = Float(mean[k])
                let inv = Float(1 / std[k])
                var i = k
                while i < n { base[i] = (base[i] - m) * inv; i += c }
            }
        }
        return LabeledImages(height: height, width: width, channels: channels,
                             pixels: out, labels: labels, classCount: classCount)
    }
}

enum Strided {
    /// Σ f(p[start + j·stride]) in Float64, with four partial sums so the adds can overlap.
    @inline(__always)
    static func sum(_ p: UnsafeBufferPointer<Float>, start: Int, stride: Int, _ f: (Double) -> Double) -> Double {
        var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
        var i = start
        let n = p.count
        while i + 3 * stride < n {
            a0 += f(Double(p[i]))
            a1 += f(Double(p[i + stride]))
            a2 += f(Double(p[i + 2 * stride]))
            a3 += f(Double(p[i + 3 * stride]))
            i += 4 * stride
        }
        while i < n { a0 += f(Double(p[i])); i += stride }
        return (a0 + a1) + (a2 + a3)
    }
}

enum Gather {
    /// Copies rows `indices` of a buffer of `limit` rows of `rowSize` values.
    static func rows(_ source: [Float], rowSize s: Int, indices: [Int], limit: Int) -> [Float] {
        for i in indices { precondition(i >= 0 && i < limit, "index \(i) outside 0..<\(limit)") }
        let n = indices.count * s
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            source.withUnsafeBufferPointer { src in
                for (r, i) in indices.enumerated() {
                    (out.baseAddress! + r * s).initialize(from: src.baseAddress! + i * s, count: s)
                }
            }
            initialized = n
        }
    }
}
