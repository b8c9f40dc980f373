/// Tag of the running-sum messages of `deterministicSum`; user point-to-point traffic
/// between the same ranks should avoid it while a sum is under way.
public let deterministicSumTag = 0x4C53

/// Element-wise sum of K contributions (global indices 0..<total, each rank holding one
/// contiguous index range, possibly empty) whose result is bitwise the same for every
/// number of ranks and every contiguous split; every rank receives it.
///
/// Left fold in global index order, ((c0 + c1) + c2) + ..., carried rank to rank in chunks of
/// `chunkElements` so that each rank adds its part while the next chunk is still in flight.
public func deterministicSum(contributions: [(index: Int, values: [Double])], total: Int, comm: Communicator,
                             chunkElements: Int = 1 << 20) throws -> [Double] {
    let op = "deterministicSum"
    guard total >= 0, chunkElements > 0 else {
        throw CollectiveError.invalidInput(operation: op, reason: "total (\(total)) must be ≥ 0 and chunkElements (\(chunkElements)) > 0")
    }
    let local = contributions.sorted { $0.index < $1.index }

    // Local faults are shared as codes so that every rank throws the same error.
    var fault = 0.0
    if let first = local.first {
        if zip(local, local.dropFirst()).contains(where: { $1.index != $0.index + 1 }) { fault = 1 }
        else if first.index < 0 || local.last!.index >= total { fault = 2 }
        else if local.contains(where: { $0.values.count != first.values.count }) { fault = 3 }
    }
    let info = try comm.allgather([Double(local.first?.index ?? -1), Double(local.count),
                                   Double(local.first?.values.count ?? -1), fault])
    var holders: [Int] = []
    var next = 0
    var length = -1
    for r in 0..<comm.size {
        let (first, count, len, f) = (Int(info[4 * r]), Int(info[4 * r + 1]), Int(info[4 * r + 2]), Int(info[4 * r + 3]))
        switch f {
        case 1: throw CollectiveError.invalidInput(operation: op, reason: "rank \(r) holds contribution indices that are not contiguous (or repeat)")
        case 2: throw CollectiveError.invalidInput(operation: op, reason: "rank \(r) holds a contribution index outside 0..<\(total)")
        case 3: throw CollectiveError.invalidInput(operation: op, reason: "rank \(r) holds contributions of different lengths")
        default: break
        }
        guard count > 0 else { continue }
        guard first == next else {
            throw CollectiveError.invalidInput(operation: op, reason: "rank \(r) starts at contribution \(first) but \(next) was expected: ranks must hold contiguous index blocks in rank order")
        }
        if length >= 0 && len != length {
            throw CollectiveError.invalidInput(operation: op, reason: "rank \(r) holds vectors of length \(len), other ranks \(length)")
        }
        length = len
        next += count
        holders.append(r)
    }
    guard next == total else {
        throw CollectiveError.invalidInput(operation: op, reason: "the ranks hold \(next) contributions, \(total) expected")
    }
    guard let last = holders.last else { return [] }

    var result: [Double] = []
    if let position = holders.firstIndex(of: comm.rank) {
        let isLast = comm.rank == last
        if isLast { result = [Double](repeating: 0, count: length) }
        var start = 0
        while start < length {
            let n = Swift.min(chunkElements, length - start)
            var s: [Double]
            var from = 0
            if position == 0 {
                s = Array(local[0].values[start..<(start + n)])
                from = 1
            } else {
                s = try comm.recv(from: holders[position - 1], tag: deterministicSumTag)
                guard s.count == n else {
                    throw CollectiveError.invalidInput(operation: op, reason: "rank \(comm.rank) received a running sum of \(s.count) values, \(n) expected")
                }
            }
            s.withUnsafeMutableBufferPointer { acc in
                for c in local[from...] {
                    c.values.withUnsafeBufferPointer { v in
                        let base = v.baseAddress! + start
                        for j in 0..<n { acc[j] += base[j] }
                    }
                }
            }
            if isLast {
                result.replaceSubrange(start..<(start + n), with: s)
            } else {
                try comm.send(s, to: holders[position + 1], tag: deterministicSumTag)
            }
            start += n
        }
    }
    try comm.broadcast(&result, root: last)
    return result
}

/// Float32 contributions, accumulated in Float64 by the same rank-independent left fold.
public func deterministicSum(contributions: [(index: Int, values: [Float])], total: Int, comm: Communicator,
                             chunkElements: Int = 1 << 20) throws -> [Double] {
    try deterministicSum(contributions: contributions.map { (index: $0.index, values: $0.values.map(Double.init)) },
                         total: total, comm: comm, chunkElements: chunkElements)
}

/// The reference the distributed sum must equal: the same left fold on one rank.
public func serialLeftFoldSum(_ vectors: [[Double]]) -> [Double] {
    guard var s = vectors.first else { return [] }
    for v in vectors.dropFirst() {
        precondition(v.count == s.count, "serialLeftFoldSum of vectors of lengths \(s.count) and \(v.count)")
        for j in 0..<s.count { s[j] += v[j] }
    }
    return s
}

/// FNV-1a (64-bit) over the IEEE bit patterns, little-endian: equal digests mean bitwise equal vectors.
public func bitPatternDigest(_ values: [Double]) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for v in values {
        var bits = v.bitPattern
        for _ in 0..<8 {
            h = (h ^ (bits & 0xFF)) &* 0x0000_0100_0000_01B3
            bits >>= 8
        }
    }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}
