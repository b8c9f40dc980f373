/// The scalar types the engine runs in: Float32 for work, Float64 for gradient checks.
public protocol FloatScalar: BinaryFloatingPoint, SIMDScalar, Sendable, Codable, CustomStringConvertible
where RawSignificand: FixedWidthInteger {
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
}

extension Float: FloatScalar {
    @inline(__always) public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
    @inlinable @inline(__always) public static func exp(_ x: Float) -> Float { Foundation.expf(x) }
    @inlinable @inline(__always) public static func log(_ x: Float) -> Float { Foundation.logf(x) }
    @inlinable @inline(__always) public static func erf(_ x: Float) -> Float { Foundation.erff(x) }
}

extension Double: FloatScalar {
    @inline(__always) public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                                              a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                                              beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        BLAS.dgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
    @inlinable @inline(__always) public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inlinable @inline(__always) public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inlinable @inline(__always) public static func erf(_ x: Double) -> Double { Foundation.erf(x) }
}

/// The engine's working tensor.
public typealias Tensor = TensorOf<Float>

/// A dense tensor: a shape and contiguous row-major storage with value semantics.
public struct TensorOf<Scalar: FloatScalar>: Equatable, Sendable {
    public let shape: [Int]
    public var storage: [Scalar]

    @inlinable
    public init(shape: [Int], storage: [Scalar]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == storage.count,
                     "shape \(shape) holds \(shape.reduce(1, *)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    @inlinable
    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    @inlinable
    public init(shape: [Int], repeating value: Scalar) {
        self.init(shape: shape, storage: [Scalar](repeating: value, count: shape.reduce(1, *)))
    }

    /// A tensor whose every element `fill` writes, with no zero-fill first (a wasted pass over memory on hot paths);
    /// `fill` must write all `count` elements.
    @inlinable
    public init(shape: [Int], filling fill: (UnsafeMutableBufferPointer<Scalar>) -> Void) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        let n = shape.reduce(1, *)
        self.init(shape: shape, storage: [Scalar](unsafeUninitializedCapacity: n) { buffer, count in fill(buffer); count = n })
    }

    @inlinable
    public var count: Int { storage.count }
    @inlinable
    public var rank: Int { shape.count }

    /// Same storage, new shape; -1 once infers a dimension.
    @inlinable
    public func reshaped(_ newShape: [Int]) -> TensorOf {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        return TensorOf(shape: s, storage: storage)
    }

    @inlinable
    public subscript(_ i: Int) -> Scalar {
        get { storage[i] }
        set { storage[i] = newValue }
    }

    /// Row r of a 2-D tensor, copied.
    @inlinable
    public func row(_ r: Int) -> [Scalar] {
        precondition(rank == 2)
        let n = shape[1]
        return Array(storage[(r * n)..<((r + 1) * n)])
    }

    /// Rows [lo, hi) of a tensor viewed as [shape[0], rest], copied.
    @inlinable
    public func rows(_ lo: Int, _ hi: Int) -> TensorOf {
        precondition(rank >= 1 && lo >= 0 && hi <= shape[0] && lo <= hi)
        let inner = shape.dropFirst().reduce(1, *)
        return TensorOf(shape: [hi - lo] + shape.dropFirst(), storage: Array(storage[(lo * inner)..<(hi * inner)]))
    }

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Scalar>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (inout UnsafeMutableBufferPointer<Scalar>) throws -> R) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }

    /// Whether every element is finite; the index of the first that is not, otherwise.
    @inlinable
    public var firstNonFinite: Int? {
        storage.withUnsafeBufferPointer { p in
            for i in p.indices where !p[i].isFinite { return i }
            return nil
        }
    }

    /// The same values in another scalar type.
    @inlinable
    public func converted<T: FloatScalar>(to: T.Type = T.self) -> TensorOf<T> {
        TensorOf<T>(shape: shape, storage: storage.map { T($0) })
    }
}

extension TensorOf: CustomStringConvertible {
    public var description: String {
        let head = storage.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}

import Foundation
