/// A dense Float32 tensor: a shape and contiguous row-major storage with value semantics.
public struct Tensor: Equatable, Sendable {
    public private(set) var shape: [Int]
    public var storage: [Float]

    public init(shape: [Int], storage: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == storage.count,
                     "shape \(shape) holds \(shape.reduce(1, *)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    public init(shape: [Int], repeating value: Float) {
        self.init(shape: shape, storage: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// Same storage, new shape; -1 once infers a dimension.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        return Tensor(shape: s, storage: storage)
    }

    public subscript(_ i: Int) -> Float {
        get { storage[i] }
        set { storage[i] = newValue }
    }

    /// Row r of a 2-D tensor, copied.
    public func row(_ r: Int) -> [Float] {
        precondition(rank == 2)
        let n = shape[1]
        return Array(storage[(r * n)..<((r + 1) * n)])
    }

    /// Rows [lo, hi) of a tensor viewed as [shape[0], rest], copied.
    public func rows(_ lo: Int, _ hi: Int) -> Tensor {
        precondition(rank >= 1 && lo >= 0 && hi <= shape[0] && lo <= hi)
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [hi - lo] + shape.dropFirst(), storage: Array(storage[(lo * inner)..<(hi * inner)]))
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }

    /// Whether every element is finite; the index of the first that is not, otherwise.
    public var firstNonFinite: Int? { storage.firstIndex { !$0.isFinite } }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = storage.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}

import Foundation
