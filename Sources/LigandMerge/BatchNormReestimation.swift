import LigandCollective
import LigandNN
import LigandNumerics

/// Per-channel input sums of every BatchNorm of a network over training-mode forwards (n, Σx, Σx² in Float64).
/// Sums, so shares of the data computed elsewhere (other ranks) combine by addition / all-reduce of `packed`.
public struct BatchNormStatistics: Equatable, Sendable {
    public let names: [String]
    public let channels: [Int]
    public private(set) var count: [Double]
    public private(set) var sum: [[Double]]
    public private(set) var sumOfSquares: [[Double]]
    public private(set) var batches: Int

    public init(_ net: Network<Float>) {
        names = net.batchNorms.map(\.name)
        channels = net.batchNorms.map(\.channels)
        count = names.map { _ in 0 }
        sum = channels.map { [Double](repeating: 0, count: $0) }
        sumOfSquares = sum
        batches = 0
    }

    /// Runs a training-mode forward over `batch` and adds each BatchNorm's input sums. Every BN normalises
    /// with its batch statistics during the pass, as in PyTorch's re-estimation; the running buffers
    /// are touched by the momentum update and must be replaced with `apply(to:)` afterwards.
    /// With `training: false` the forward is in eval mode (running statistics normalise), for the input
    /// statistics a trained model's BNs see at inference (REPAIR's targets).
    public mutating func accumulate(_ net: Network<Float>, batch: Tensor, training: Bool = true) throws {
        let bns = net.batchNorms
        guard bns.map(\.name) == names else { throw MergeError.architectureMismatch("BatchNorm statistics belong to another network") }
        do { try net.validateInput(batch) } catch { throw MergeError.invalidInput("BatchNorm re-estimation batch: \(error)") }
        var local = self
        for (i, bn) in bns.enumerated() {
            bn.statisticsObserver = { s1, s2, rows in
                local.count[i] += Double(rows)
                for j in 0..<s1.count { local.sum[i][j] += s1[j]; local.sumOfSquares[i][j] += s2[j] }
            }
        }
        defer { for bn in bns { bn.statisticsObserver = nil } }
        _ = net.features(batch, training: training)
        local.batches += 1
        self = local
    }

    /// Per BN, per channel: the mean and the standard deviation (population) of the inputs seen.
    public func moments() throws -> (mean: [[Double]], std: [[Double]]) {
        var means: [[Double]] = [], stds: [[Double]] = []
        for i in names.indices {
            let n = count[i]
            guard n >= 1 else { throw MergeError.invalidInput("BatchNorm '\(names[i])' saw no input") }
            let m = sum[i].map { $0 / n }
            means.append(m)
            stds.append(zip(sumOfSquares[i], m).map { max($0 / n - $1 * $1, 0).squareRoot() })
        }
        return (means, stds)
    }

    public var packedCount: Int { 1 + names.count + 2 * channels.reduce(0, +) }
    /// [batches, n per BN, Σx per BN, Σx² per BN].
    public var packed: [Double] { [Double(batches)] + count + sum.flatMap { $0 } + sumOfSquares.flatMap { $0 } }

    public func unpacked(_ v: [Double]) throws -> BatchNormStatistics {
        guard v.count == packedCount else { throw MergeError.invalidInput("packed BatchNorm statistics hold \(v.count) values, expected \(packedCount)") }
        var s = self
        s.batches = Int(v[0])
        s.count = Array(v[1...names.count])
        var o = 1 + names.count
        for i in names.indices { s.sum[i] = Array(v[o..<(o + channels[i])]); o += channels[i] }
        for i in names.indices { s.sumOfSquares[i] = Array(v[o..<(o + channels[i])]); o += channels[i] }
        return s
    }

    public func merged(with o: BatchNormStatistics) throws -> BatchNormStatistics {
        guard o.names == names, o.channels == channels else { throw MergeError.architectureMismatch("BatchNorm statistics of different networks") }
        return try unpacked(zip(packed, o.packed).map { $0 + $1 })
    }

    public func allreduced(_ comm: Communicator) throws -> BatchNormStatistics {
        var buf = packed
        try comm.allreduce(&buf, op: .sum)
        return try unpacked(buf)
    }

    /// Sets every running mean to the mean over all samples and every running variance to the unbiased
    /// pooled variance (n − 1 denominator, as PyTorch's running_var), and num_batches_tracked to the batch count.
    public func apply(to net: Network<Float>) throws {
        let bns = net.batchNorms
        guard bns.map(\.name) == names else { throw MergeError.architectureMismatch("BatchNorm statistics belong to another network") }
        for (i, bn) in bns.enumerated() {
            let n = count[i]
            guard n >= 2 else { throw MergeError.invalidInput("BatchNorm '\(names[i])': re-estimation saw \(Int(n)) values per channel, needs at least 2") }
            var mean = [Float](repeating: 0, count: channels[i]), variance = mean
            for j in 0..<channels[i] {
                let m = sum[i][j] / n
                let v = max(sumOfSquares[i][j] - n * m * m, 0) / (n - 1)
                guard m.isFinite && v.isFinite else {
                    throw MergeError.nonFiniteStatistics(point: names[i], field: "BatchNorm input sums of channel \(j)")
                }
                mean[j] = Float(m); variance[j] = Float(v)
            }
            bn.runningMean.value = Tensor(shape: [channels[i]], storage: mean)
            bn.runningVar.value = Tensor(shape: [channels[i]], storage: variance)
            bn.numBatchesTracked = Int64(batches)
        }
    }
}

/// Recomputes every BatchNorm's running mean and variance exactly (Float64 sums over all samples of all
/// batches, each normalised by its batch statistics in a training-mode forward), replacing the old ones.
public func reestimateBatchNorm(_ net: Network<Float>, batches: [Tensor]) throws {
    var stats = BatchNormStatistics(net)
    if stats.names.isEmpty { return }
    guard !batches.isEmpty else { throw MergeError.invalidInput("BatchNorm re-estimation needs at least one batch") }
    for b in batches { try stats.accumulate(net, batch: b) }
    try stats.apply(to: net)
}
