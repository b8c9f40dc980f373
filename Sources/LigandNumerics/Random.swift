/// SplitMix64-seeded xoshiro256**: fast, and identical on every platform for a seed,
/// which is what makes shuffles, initialisations and splits reproducible.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    private var spareNormal: Double?

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// A generator whose weights are never drawn (initialisers give zeros): for a network whose every tensor is loaded next.
    public static var drawless: SeededRNG { var r = SeededRNG(seed: 0); r.drawless = true; return r }
    public private(set) var drawless = false

    /// A generator for a named sub-stream, so adding one consumer never shifts another's numbers.
    public init(seed: UInt64, stream: String) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in stream.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        self.init(seed: seed ^ h)
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = SeededRNG.rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = SeededRNG.rotl(s.3, 45)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal by Box–Muller.
    public mutating func normal() -> Double {
        if let z = spareNormal { spareNormal = nil; return z }
        var u1 = uniform()
        while u1 <= 0 { u1 = uniform() }
        let u2 = uniform()
        let r = (-2 * _log(u1)).squareRoot()
        spareNormal = r * _sin(2 * Double.pi * u2)
        return r * _cos(2 * Double.pi * u2)
    }

    /// Uniform integer in [0, n) without modulo bias.
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next(upperBound: UInt64(n)))
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, int(below: i + 1)) } }
        return p
    }
}

import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }

extension TensorOf {
    /// Elements of a shape; callers validate sizes first, so an overflow here stops with the shape named, not a bare trap.
    static func checkedCount(_ shape: [Int]) -> Int {
        var n = 1
        for d in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            precondition(!overflow && d >= 0, "shape \(shape) has too many elements")
            n = p
        }
        return n
    }

    /// Entries drawn from N(0, std²).
    public static func randomNormal(_ shape: [Int], std: Scalar = 1, rng: inout SeededRNG) -> TensorOf {
        let n = checkedCount(shape)
        var v = [Scalar](repeating: 0, count: n)
        for i in 0..<n { v[i] = Scalar(rng.normal()) * std }
        return TensorOf(shape: shape, storage: v)
    }

    /// Entries drawn uniformly from [lo, hi).
    public static func randomUniform(_ shape: [Int], lo: Scalar, hi: Scalar, rng: inout SeededRNG) -> TensorOf {
        let n = checkedCount(shape)
        var v = [Scalar](repeating: 0, count: n)
        for i in 0..<n { v[i] = lo + (hi - lo) * Scalar(rng.uniform()) }
        return TensorOf(shape: shape, storage: v)
    }
}
