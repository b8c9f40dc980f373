/// Reductions and elementwise operations; every accumulation runs in Float64.
extension TensorOf {
    @inlinable
    public func sum() -> Double {
        storage.withUnsafeBufferPointer { p in
            var s = 0.0
            for v in p { s += Double(v) }
            return s
        }
    }
    @inlinable
    public func mean() -> Double { count == 0 ? 0 : sum() / Double(count) }
    @inlinable
    public func dot(_ other: TensorOf) -> Double {
        precondition(count == other.count, "dot of \(shape) and \(other.shape)")
        return storage.withUnsafeBufferPointer { a in
            other.storage.withUnsafeBufferPointer { b in
                var s = 0.0
                for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
                return s
            }
        }
    }
    @inlinable
    public func squaredNorm() -> Double { dot(self) }
    @inlinable
    public func maxAbs() -> Scalar { storage.reduce(0) { Swift.max($0, Swift.abs($1)) } }

    /// Column sums of a tensor viewed as [rows, cols], in Float64.
    @inlinable
    public func columnSums(cols: Int) -> [Double] {
        precondition(cols > 0 && count % cols == 0)
        var s = [Double](repeating: 0, count: cols)
        storage.withUnsafeBufferPointer { p in
            s.withUnsafeMutableBufferPointer { acc in
                var i = 0
                while i < p.count {
                    for j in 0..<cols { acc[j] += Double(p[i + j]) }
                    i += cols
                }
            }
        }
        return s
    }

    /// Index of the largest entry of each row of a [rows, cols] tensor.
    @inlinable
    public func argmaxRows() -> [Int] {
        precondition(rank == 2)
        let c = shape[1]
        return (0..<shape[0]).map { r in
            var best = 0
            var bv = -Scalar.infinity
            for j in 0..<c where storage[r * c + j] > bv { bv = storage[r * c + j]; best = j }
            return best
        }
    }

    @inlinable
    public static func + (a: TensorOf, b: TensorOf) -> TensorOf { a.zipped(b, +) }
    @inlinable
    public static func - (a: TensorOf, b: TensorOf) -> TensorOf { a.zipped(b, -) }
    @inlinable
    public static func * (a: TensorOf, b: TensorOf) -> TensorOf { a.zipped(b, *) }
    @inlinable
    public static func * (s: Scalar, a: TensorOf) -> TensorOf { a.mapped { s * $0 } }

    @inlinable
    public func mapped(_ f: (Scalar) -> Scalar) -> TensorOf { TensorOf(shape: shape, storage: storage.map(f)) }
    @inlinable
    public func zipped(_ other: TensorOf, _ f: (Scalar, Scalar) -> Scalar) -> TensorOf {
        precondition(shape == other.shape, "elementwise op on \(shape) and \(other.shape)")
        return TensorOf(shape: shape, storage: zip(storage, other.storage).map(f))
    }
    /// self += α·x
    @inlinable
    public mutating func axpy(_ alpha: Scalar, _ x: TensorOf) {
        precondition(count == x.count, "axpy of \(shape) and \(x.shape)")
        storage.withUnsafeMutableBufferPointer { y in
            x.storage.withUnsafeBufferPointer { xv in
                for i in 0..<y.count { y[i] += alpha * xv[i] }
            }
        }
    }
    @inlinable
    public mutating func scale(_ s: Scalar) {
        storage.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= s } }
    }
}
