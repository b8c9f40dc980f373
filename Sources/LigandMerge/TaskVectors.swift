import LigandCollective

/// Task arithmetic's maths (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023, Eq. 1) on backbones
/// flattened to Float64 in one fixed order: τ_k = θ_k − θ_pre summed over every model, θ = θ_pre + λ·Σ_k τ_k.
/// Every task-vector merge (task arithmetic, TIES, DARE) and every task-arithmetic baseline (`ligand merge`,
/// `ligand run`, `ligand eval`) goes through it; serial is a one-rank shard.
public enum TaskVectors {
    /// Σ_k (θ_k − θ_pre) over this rank's experts (in `shard.local` order) and every other rank's, rank-count independent.
    public static func sum(_ localExperts: [[Double]], pretrained: [Double], shard: ModelShard) throws -> [Double] {
        try shard.sum(localExperts.map { e in (0..<e.count).map { e[$0] - pretrained[$0] } })
    }

    /// (1/K) Σ_k θ_k, rank-count independent.
    public static func average(_ localExperts: [[Double]], shard: ModelShard) throws -> [Double] {
        try shard.sum(localExperts).map { $0 / Double(shard.total) }
    }

    /// θ_pre + λ·δ where `isParameter`, `average` elsewhere (BatchNorm running statistics describe data, not training).
    public static func combine(pretrained: [Double], delta: [Double], lambda: Double, isParameter: [Bool], average: [Double]) -> [Double] {
        (0..<pretrained.count).map { isParameter[$0] ? pretrained[$0] + lambda * delta[$0] : average[$0] }
    }

    /// Which coordinates of a flattened backbone are parameters: every element except BatchNorm running statistics.
    public static func parameterMask(_ entries: [(name: String, count: Int)]) -> [Bool] {
        entries.flatMap { e in [Bool](repeating: !(e.name.hasSuffix(".running_mean") || e.name.hasSuffix(".running_var")), count: e.count) }
    }
}
