import Foundation
import LigandNumerics

/// Deterministic index splits and shardings; every result is a function of its arguments and seed alone.
public enum DataSplits {
    /// A random `calibration`-sized hold-out of 0..<count; both parts sorted, disjoint, covering.
    public static func trainCalibration(count: Int, calibration: Int, seed: UInt64) throws -> (train: [Int], calibration: [Int]) {
        try checkSizes(count: count, calibration: calibration)
        var rng = SeededRNG(seed: seed, stream: "train-calibration")
        let perm = rng.permutation(count)
        return (perm[calibration...].sorted(), perm[..<calibration].sorted())
    }

    /// Like `trainCalibration(count:calibration:seed:)`, but each class gives a share of the hold-out
    /// proportional to its size (largest-remainder rounding, so the total is exact).
    public static func trainCalibration(stratifiedBy labels: [Int], calibration: Int, seed: UInt64) throws
        -> (train: [Int], calibration: [Int]) {
        try checkSizes(count: labels.count, calibration: calibration)
        let groups = groupByLabel(labels)
        let quotas = apportion(calibration, weights: groups.map { $0.indices.count })
        var rng = SeededRNG(seed: seed, stream: "train-calibration-stratified")
        var train: [Int] = []
        var held: [Int] = []
        train.reserveCapacity(labels.count - calibration)
        held.reserveCapacity(calibration)
        for (g, q) in zip(groups, quotas) {
            let perm = rng.permutation(g.indices.count)
            for (j, p) in perm.enumerated() {
                if j < q { held.append(g.indices[p]) } else { train.append(g.indices[p]) }
            }
        }
        return (train.sorted(), held.sorted())
    }

    /// For each subset of classes, the (ascending) indices whose label lies in it.
    public static func shards(labels: [Int], classSubsets: [[Int]]) -> [[Int]] {
        classSubsets.map { subset in
            let s = Set(subset)
            return labels.indices.filter { s.contains(labels[$0]) }
        }
    }

    /// Label-skewed shards: each class is spread over the shards by proportions drawn from
    /// Dirichlet(alpha, …, alpha). Small alpha concentrates each class on few shards; large alpha
    /// approaches an even split. Shards are disjoint, cover every index, and are sorted.
    public static func dirichletShards(labels: [Int], shards: Int, alpha: Double, seed: UInt64) throws -> [[Int]] {
        guard shards > 0 else { throw DataError.invalidArgument(name: "shards", reason: "must be positive, got \(shards)") }
        guard alpha.isFinite, alpha > 0 else {
            throw DataError.invalidArgument(name: "alpha", reason: "must be positive and finite, got \(alpha)")
        }
        var rng = SeededRNG(seed: seed, stream: "dirichlet-shards")
        var out = [[Int]](repeating: [], count: shards)
        for g in groupByLabel(labels) {
            let weights = dirichlet(count: shards, alpha: alpha, rng: &rng)
            let perm = rng.permutation(g.indices.count)
            let sizes = apportion(g.indices.count, weights: weights)
            var next = 0
            for (k, size) in sizes.enumerated() {
                for j in next..<(next + size) { out[k].append(g.indices[perm[j]]) }
                next += size
            }
        }
        return out.map { $0.sorted() }
    }

    // MARK: - Helpers

    static func checkSizes(count: Int, calibration: Int) throws {
        guard count >= 0 else { throw DataError.invalidArgument(name: "count", reason: "must not be negative, got \(count)") }
        guard calibration >= 0, calibration <= count else {
            throw DataError.invalidArgument(name: "calibration", reason: "must be in 0...\(count), got \(calibration)")
        }
    }

    /// Indices grouped by label, groups in ascending label order, indices ascending within each.
    static func groupByLabel(_ labels: [Int]) -> [(label: Int, indices: [Int])] {
        var byLabel: [Int: [Int]] = [:]
        for (i, l) in labels.enumerated() { byLabel[l, default: []].append(i) }
        return byLabel.keys.sorted().map { ($0, byLabel[$0]!) }
    }

    /// Splits `total` into integers proportional to `weights` (largest remainder, ties to the lower index).
    static func apportion<W: BinaryInteger>(_ total: Int, weights: [W]) -> [Int] {
        apportion(total, weights: weights.map { Double($0) })
    }

    static func apportion(_ total: Int, weights: [Double]) -> [Int] {
        let sum = weights.reduce(0, +)
        guard sum > 0, !weights.isEmpty else {
            var r = [Int](repeating: 0, count: weights.count)
            if !r.isEmpty { r[0] = total }
            return r
        }
        let exact = weights.map { Double(total) * $0 / sum }
        var sizes = exact.map { Int($0.rounded(.down)) }
        var remaining = total - sizes.reduce(0, +)
        let order = exact.indices.sorted {
            let a = exact[$0] - exact[$0].rounded(.down), b = exact[$1] - exact[$1].rounded(.down)
            return a != b ? a > b : $0 < $1
        }
        var j = 0
        while remaining > 0 {
            sizes[order[j % order.count]] += 1
            remaining -= 1
            j += 1
        }
        return sizes
    }

    /// One Dirichlet(alpha·1) draw from normalised Gamma(alpha, 1) variates.
    static func dirichlet(count: Int, alpha: Double, rng: inout SeededRNG) -> [Double] {
        var g = (0..<count).map { _ in gamma(shape: alpha, rng: &rng) }
        let s = g.reduce(0, +)
        if s > 0 && s.isFinite { return g.map { $0 / s } }
        // Every variate underflowed (tiny alpha): the limit puts all mass on one shard.
        g = [Double](repeating: 0, count: count)
        g[rng.int(below: count)] = 1
        return g
    }

    /// Gamma(shape, 1) by Marsaglia–Tsang; shapes below 1 use the boost Gamma(a+1)·U^(1/a).
    static func gamma(shape a: Double, rng: inout SeededRNG) -> Double {
        if a < 1 {
            var u = rng.uniform()
            while u <= 0 { u = rng.uniform() }
            return gamma(shape: a + 1, rng: &rng) * Foundation.pow(u, 1 / a)
        }
        let d = a - 1.0 / 3.0
        let c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double
            var v: Double
            repeat {
                x = rng.normal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = rng.uniform()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if u > 0, Foundation.log(u) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }
}
