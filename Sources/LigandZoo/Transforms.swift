import LigandData
import LigandNumerics

public enum TransformError: Error, CustomStringConvertible, Equatable {
    case unsupportedShape(task: String, height: Int, width: Int)
    case labelSpace(task: String, classes: Int)
    public var description: String {
        switch self {
        case let .unsupportedShape(t, h, w): return "task \(t): images of \(h)×\(w) are not supported (it needs square images whose side is a multiple of 4)"
        case let .labelSpace(t, c): return "task \(t): needs the 10 Fashion-MNIST classes, the data has \(c)"
        }
    }
}

/// A task derived from Fashion-MNIST: a fixed function of the image and/or of the label.
/// Every transform is deterministic (fixed permutations come from a constant seed), so a task
/// means the same thing on every rank and in every run.
public enum TaskTransform: String, CaseIterable, Codable, Sendable {
    case rotate90 = "rotate90"
    case flipVertical = "flip_vertical"
    case invert = "invert"
    case patchShuffle = "patch_shuffle"
    case pixelPermutation = "pixel_permutation"
    case checkerInvert = "checker_invert"
    case downsample = "downsample"
    case coarse = "coarse"
    // A half-size thumbnail (2×2 average pool of the transformed image) in one quadrant, the rest
    // black: each quadrant is its own input distribution, read with the fine or the coarse labels.
    case thumbTL = "thumb_tl"
    case thumbTRRotate90 = "thumb_tr_rotate90"
    case thumbBLInvert = "thumb_bl_invert"
    case thumbBRFlip = "thumb_br_flip"
    case thumbTLCoarse = "thumb_tl_coarse"
    case thumbTRRotate90Coarse = "thumb_tr_rotate90_coarse"
    case thumbBLInvertCoarse = "thumb_bl_invert_coarse"
    case thumbBRFlipCoarse = "thumb_br_flip_coarse"
    // A second transform per quadrant, so that eight tasks can have eight distinct input distributions
    // (the standard eight read each of four inputs with two label sets, which no input-conditioned
    // router can tell apart): recipes/tasks-distinct.yaml.
    case thumbTLInvertCoarse = "thumb_tl_invert_coarse"
    case thumbTRFlipCoarse = "thumb_tr_flip_coarse"
    case thumbBLRotate90Coarse = "thumb_bl_rotate90_coarse"
    case thumbBRCoarse = "thumb_br_coarse"
    // Plain thumbnails in the other three quadrants (with `thumb_tl`, the format without a task's own
    // transform): views a backbone can pretrain on (`pretrain.views`).
    case thumbTR = "thumb_tr"
    case thumbBL = "thumb_bl"
    case thumbBR = "thumb_br"

    /// The eight tasks a recipe gets when it does not list them (docs/suites.md says why these).
    public static let standard: [TaskTransform] = [.thumbTL, .thumbTRRotate90, .thumbBLInvert, .thumbBRFlip,
                                                   .thumbTLCoarse, .thumbTRRotate90Coarse, .thumbBLInvertCoarse, .thumbBRFlipCoarse]

    /// For a thumbnail task: the transform applied first (labels untouched) and the quadrant (0 TL, 1 TR, 2 BL, 3 BR).
    var thumbnail: (inner: TaskTransform?, quadrant: Int)? {
        switch self {
        case .thumbTL, .thumbTLCoarse: return (nil, 0)
        case .thumbTRRotate90, .thumbTRRotate90Coarse: return (.rotate90, 1)
        case .thumbBLInvert, .thumbBLInvertCoarse: return (.invert, 2)
        case .thumbBRFlip, .thumbBRFlipCoarse: return (.flipVertical, 3)
        case .thumbTLInvertCoarse: return (.invert, 0)
        case .thumbTRFlipCoarse: return (.flipVertical, 1)
        case .thumbBLRotate90Coarse: return (.rotate90, 2)
        case .thumbBRCoarse, .thumbBR: return (nil, 3)
        case .thumbTR: return (nil, 1)
        case .thumbBL: return (nil, 2)
        default: return nil
        }
    }

    var usesCoarseLabels: Bool {
        switch self {
        case .coarse, .thumbTLCoarse, .thumbTRRotate90Coarse, .thumbBLInvertCoarse, .thumbBRFlipCoarse,
             .thumbTLInvertCoarse, .thumbTRFlipCoarse, .thumbBLRotate90Coarse, .thumbBRCoarse: return true
        default: return false
        }
    }

    /// The constant seed of the fixed permutations; changing it changes the tasks.
    static let permutationSeed: UInt64 = 0x7A5C

    /// Coarse groups: tops (T-shirt, pullover, coat, shirt), bottoms and dresses (trouser, dress),
    /// footwear (sandal, sneaker, ankle boot), bags.
    public static let coarseGroups: [Int] = [0, 1, 0, 1, 0, 2, 0, 2, 3, 2]

    public var classes: Int { usesCoarseLabels ? 4 : 10 }

    public func label(_ y: Int) -> Int { usesCoarseLabels ? Self.coarseGroups[y] : y }

    /// The whole set transformed (images and labels).
    public func apply(_ data: LabeledImages) throws -> LabeledImages {
        let (h, w, c) = (data.height, data.width, data.channels)
        guard h == w, h % 4 == 0 else { throw TransformError.unsupportedShape(task: rawValue, height: h, width: w) }
        guard data.classCount == 10 else { throw TransformError.labelSpace(task: rawValue, classes: data.classCount) }
        let size = h * w * c
        if let (inner, quadrant) = thumbnail {
            let base = try inner?.apply(data) ?? data
            var out = [Float](repeating: 0, count: data.pixels.count)
            let (h2, w2) = (h / 2, w / 2)
            let (r0, c0) = ((quadrant / 2) * h2, (quadrant % 2) * w2)
            base.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for n in 0..<data.count { for r in 0..<h2 { for col in 0..<w2 { for ch in 0..<c {
                        let at = { (rr: Int, cc: Int) in n * size + (rr * w + cc) * c + ch }
                        dst[at(r0 + r, c0 + col)] = (src[at(2 * r, 2 * col)] + src[at(2 * r, 2 * col + 1)]
                                                     + src[at(2 * r + 1, 2 * col)] + src[at(2 * r + 1, 2 * col + 1)]) / 4
                    } } } }
                }
            }
            return LabeledImages(height: h, width: w, channels: c, pixels: out, labels: data.labels.map(label), classCount: classes)
        }
        var out = data.pixels
        switch self {
        case .coarse:
            break
        case .invert:
            for i in 0..<out.count { out[i] = 1 - out[i] }
        case .checkerInvert:
            // Inverts the 7×7 (side/4) tiles of one colour of a 4×4 checkerboard.
            let t = h / 4
            out.withUnsafeMutableBufferPointer { p in
                for n in 0..<data.count { for r in 0..<h { for col in 0..<w where (r / t + col / t) % 2 == 1 {
                    for ch in 0..<c { let i = n * size + (r * w + col) * c + ch; p[i] = 1 - p[i] }
                } } }
            }
        default:
            let source = sourceIndex(height: h, width: w, channels: c)
            data.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for n in 0..<data.count {
                        let base = n * size
                        for j in 0..<size { dst[base + j] = src[base + source[j]] }
                    }
                }
            }
            if self == .downsample {
                // 2×2 average pooling, repeated back to full size: a blurred, blocky version of the image.
                data.pixels.withUnsafeBufferPointer { src in
                    out.withUnsafeMutableBufferPointer { dst in
                        for n in 0..<data.count { for r in stride(from: 0, to: h, by: 2) { for col in stride(from: 0, to: w, by: 2) {
                            for ch in 0..<c {
                                let at = { (rr: Int, cc: Int) in n * size + (rr * w + cc) * c + ch }
                                let m = (src[at(r, col)] + src[at(r, col + 1)] + src[at(r + 1, col)] + src[at(r + 1, col + 1)]) / 4
                                dst[at(r, col)] = m; dst[at(r, col + 1)] = m; dst[at(r + 1, col)] = m; dst[at(r + 1, col + 1)] = m
                            }
                        } } }
                    }
                }
            }
        }
        return LabeledImages(height: h, width: w, channels: c, pixels: out,
                             labels: data.labels.map(label), classCount: classes)
    }

    /// For a pure rearrangement of pixels, out[j] = in[source[j]] within one image (identity otherwise).
    public func sourceIndex(height h: Int, width w: Int, channels c: Int) -> [Int] {
        let size = h * w * c
        let identity = Array(0..<size)
        func at(_ r: Int, _ col: Int, _ ch: Int) -> Int { (r * w + col) * c + ch }
        switch self {
        case .rotate90:
            // Rotated a quarter turn clockwise: out(r, col) = in(h-1-col, r).
            var s = identity
            for r in 0..<h { for col in 0..<w { for ch in 0..<c { s[at(r, col, ch)] = at(h - 1 - col, r, ch) } } }
            return s
        case .flipVertical:
            var s = identity
            for r in 0..<h { for col in 0..<w { for ch in 0..<c { s[at(r, col, ch)] = at(h - 1 - r, col, ch) } } }
            return s
        case .patchShuffle:
            // A 4×4 grid of tiles put in a fixed shuffled order.
            let t = h / 4
            var rng = SeededRNG(seed: Self.permutationSeed, stream: "patch-shuffle")
            var perm = rng.permutation(16)
            if perm == Array(0..<16) { perm.reverse() }
            var s = identity
            for tile in 0..<16 {
                let from = perm[tile]
                let (tr, tc, fr, fc) = (tile / 4, tile % 4, from / 4, from % 4)
                for dr in 0..<t { for dc in 0..<t { for ch in 0..<c {
                    s[at(tr * t + dr, tc * t + dc, ch)] = at(fr * t + dr, fc * t + dc, ch)
                } } }
            }
            return s
        case .pixelPermutation:
            var rng = SeededRNG(seed: Self.permutationSeed, stream: "pixel-permutation-\(h)x\(w)")
            let perm = rng.permutation(h * w)
            var s = identity
            for p in 0..<(h * w) { for ch in 0..<c { s[p * c + ch] = perm[p] * c + ch } }
            return s
        default:
            return identity
        }
    }
}
