import Foundation

/// Buffer sizes of the standard allreduce benchmark: 1 MiB to 64 MiB, doubling.
public let allreduceBenchmarkSizes: [Int] = (0...6).map { (1 << 20) << $0 }

/// Times `repeats` Float32 sum-allreduces per size after one warm-up call. `seconds` is the
/// mean time of one call on the slowest rank (every rank returns the same figures) and
/// `gigabytesPerSecond` is the buffer size (10⁹ bytes) divided by it.
public func benchmarkAllreduce(comm: Communicator, bytes: [Int], repeats: Int) throws -> [(bytes: Int, seconds: Double, gigabytesPerSecond: Double)] {
    guard repeats > 0 else {
        throw CollectiveError.invalidInput(operation: "benchmarkAllreduce", reason: "repeats must be positive, got \(repeats)")
    }
    if let bad = bytes.first(where: { $0 < MemoryLayout<Float>.size }) {
        throw CollectiveError.invalidInput(operation: "benchmarkAllreduce", reason: "a buffer of \(bad) bytes holds no Float")
    }
    return try timedRuns(comm: comm, bytes: bytes, repeats: repeats)
}

private func timedRuns(comm: Communicator, bytes: [Int], repeats: Int) throws -> [(bytes: Int, seconds: Double, gigabytesPerSecond: Double)] {
    var out: [(bytes: Int, seconds: Double, gigabytesPerSecond: Double)] = []
    for b in bytes {
        let n = b / MemoryLayout<Float>.size
        // Zeros keep the repeated sums finite whatever the number of ranks.
        var buf = [Float](repeating: 0, count: n)
        try comm.allreduce(&buf, op: .sum)
        try comm.barrier()
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<repeats { try comm.allreduce(&buf, op: .sum) }
        var elapsed = [Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9]
        try comm.allreduce(&elapsed, op: .max)
        let seconds = elapsed[0] / Double(repeats)
        let moved = Double(n * MemoryLayout<Float>.size)
        out.append((bytes: b, seconds: seconds, gigabytesPerSecond: moved / seconds / 1e9))
    }
    return out
}
