/// im2col / col2im for NHWC images: each output position becomes one row of kh·kw·C values,
/// ordered (tap row i, tap column j, channel c), so a convolution is one GEMM over the batch.
public struct ConvGeometry: Equatable, Sendable, Codable {
    public let height: Int, width: Int, channels: Int
    public let kernelH: Int, kernelW: Int, stride: Int, padding: Int
    public var outHeight: Int { (height + 2 * padding - kernelH) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernelW) / stride + 1 }
    public var patchSize: Int { kernelH * kernelW * channels }

    public init(height: Int, width: Int, channels: Int, kernelH: Int, kernelW: Int, stride: Int, padding: Int) {
        self.height = height; self.width = width; self.channels = channels
        self.kernelH = kernelH; self.kernelW = kernelW; self.stride = stride; self.padding = padding
    }
}

/// Writes the [batch·outH·outW, kh·kw·C] patch matrix of `x` ([batch, H, W, C]) into `col`.
@_specialize(exported: true, where S == Float)
@_specialize(exported: true, where S == Double)
public func im2col<S: FloatScalar>(_ x: UnsafePointer<S>, batch: Int, geometry g: ConvGeometry, into col: UnsafeMutablePointer<S>) {
    let oh = g.outHeight, ow = g.outWidth, c = g.channels, kk = g.patchSize, kw = g.kernelW
    for n in 0..<batch {
        for y in 0..<oh {
            for xo in 0..<ow {
                let row = col + ((n * oh + y) * ow + xo) * kk
                // Taps j in [jlo, jhi) fall inside the image; their sources are one contiguous run of (jhi − jlo)·C values.
                let iw0 = xo * g.stride - g.padding
                let jlo = min(kw, max(0, -iw0)), jhi = max(jlo, min(kw, g.width - iw0))
                for i in 0..<g.kernelH {
                    let ih = y * g.stride - g.padding + i
                    let dst = row + i * kw * c
                    if ih < 0 || ih >= g.height {
                        dst.update(repeating: 0, count: kw * c)
                        continue
                    }
                    if jlo > 0 { dst.update(repeating: 0, count: jlo * c) }
                    if jhi > jlo { (dst + jlo * c).update(from: x + ((n * g.height + ih) * g.width + iw0 + jlo) * c, count: (jhi - jlo) * c) }
                    if jhi < kw { (dst + jhi * c).update(repeating: 0, count: (kw - jhi) * c) }
                }
            }
        }
    }
}

/// Adds each patch row of `col` back onto the image positions it came from (the adjoint of im2col); `dx` must start zeroed.
@_specialize(exported: true, where S == Float)
@_specialize(exported: true, where S == Double)
public func col2im<S: FloatScalar>(_ col: UnsafePointer<S>, batch: Int, geometry g: ConvGeometry, into dx: UnsafeMutablePointer<S>) {
    let oh = g.outHeight, ow = g.outWidth, c = g.channels, kk = g.patchSize, kw = g.kernelW
    for n in 0..<batch {
        for y in 0..<oh {
            for xo in 0..<ow {
                let row = col + ((n * oh + y) * ow + xo) * kk
                // As in im2col, the in-image taps [jlo, jhi) of one tap row are one contiguous run; each image value
                // still receives its contributions in (y, x, i, j) order.
                let iw0 = xo * g.stride - g.padding
                let jlo = min(kw, max(0, -iw0)), jhi = max(jlo, min(kw, g.width - iw0))
                if jhi == jlo { continue }
                for i in 0..<g.kernelH {
                    let ih = y * g.stride - g.padding + i
                    if ih < 0 || ih >= g.height { continue }
                    let src = row + (i * kw + jlo) * c
                    let dst = dx + ((n * g.height + ih) * g.width + iw0 + jlo) * c
                    for k in 0..<((jhi - jlo) * c) { dst[k] += src[k] }
                }
            }
        }
    }
}
