/// Which of K collaborating models this rank holds: the one place that answers "where does model i live".
/// Ranks hold contiguous, balanced blocks (`blockRange`), so a sum in model order is a left fold carried rank to
/// rank and bitwise the same for any rank count. Serial is this over a one-rank communicator.
public struct ModelShard {
    public let comm: Communicator
    /// K, the number of models.
    public let total: Int
    /// The models this rank holds.
    public let local: Range<Int>

    public init(total: Int, comm: Communicator) {
        self.comm = comm; self.total = total
        local = blockRange(count: total, parts: comm.size, part: comm.rank)
    }

    /// The rank that holds model i.
    public func owner(of i: Int) -> Int {
        precondition(i >= 0 && i < total, "model \(i) of \(total)")
        let base = total / comm.size, extra = total % comm.size
        // The first `extra` ranks hold base + 1 models each.
        return i < extra * (base + 1) ? i / (base + 1) : extra + (i - extra * (base + 1)) / max(base, 1)
    }

    public func holds(_ i: Int) -> Bool { local.contains(i) }

    /// Σ_k over every model of one vector per local model (in `local` order), rank-count independent (`deterministicSum`).
    public func sum(_ localVectors: [[Double]]) throws -> [Double] {
        precondition(localVectors.count == local.count, "\(localVectors.count) vectors for \(local.count) local models")
        return try deterministicSum(contributions: zip(local, localVectors).map { (index: $0, values: $1) }, total: total, comm: comm)
    }

    /// Every model's vector on every rank, in model order (one vector per local model given, any lengths): copies,
    /// no arithmetic, so the result is the same for any rank count.
    public func gather(_ localVectors: [[Double]]) throws -> [[Double]] {
        precondition(localVectors.count == local.count, "\(localVectors.count) vectors for \(local.count) local models")
        // Each rank sends [length, values…] per local model; the blocks arrive in rank order, i.e. model order.
        let send = localVectors.flatMap { [Double($0.count)] + $0 }
        var out: [[Double]] = []
        out.reserveCapacity(total)
        for block in try comm.allgatherv(send) {
            var i = 0
            while i < block.count {
                let n = Int(block[i])
                out.append(Array(block[(i + 1)..<(i + 1 + n)]))
                i += 1 + n
            }
        }
        precondition(out.count == total, "gathered \(out.count) vectors for \(total) models")
        return out
    }

    /// Model i's values (given on its owner, ignored elsewhere) on every rank.
    public func broadcast(_ values: inout [Float], from model: Int) throws {
        try comm.broadcast(&values, root: owner(of: model))
    }
}
