import Foundation

/// Time and FLOP counters of the convolutions, for the benchmark's "fraction of GEMM peak" figure.
public enum ConvProfiler {
    public struct Counter: Sendable { public var seconds = 0.0; public var flops = 0.0 }
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public static var forward = Counter()
    nonisolated(unsafe) public static var backward = Counter()

    public static func reset() { forward = Counter(); backward = Counter() }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    @inline(__always) static func record(forward isForward: Bool, since start: UInt64, flops: Double) {
        let s = Double(now() - start) * 1e-9
        if isForward { forward.seconds += s; forward.flops += flops } else { backward.seconds += s; backward.flops += flops }
    }
}
