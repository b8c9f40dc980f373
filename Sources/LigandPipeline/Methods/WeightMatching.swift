import LigandCollective
import LigandMerge
import LigandZoo

/// Weight matching (Ainsworth et al., "Git Re-Basin", ICLR 2023, Alg. 1): the permutation of each merge point that
/// maximises Σ ⟨W_ref, P W_k P_prevᵀ⟩, by coordinate descent over the points in a seeded order; data-free.
public enum WeightMatching: SameTaskAlignment {
    public static let name = "weight-matching"
    public static let summary = "the permutations of Git Re-Basin found from the weights alone (data-free), then averaging"
    public static let paper = "Ainsworth et al., \"Git Re-Basin\", ICLR 2023 (weight matching)"
    public static let accepts: Set<SuiteKind> = [.seeds, .splits]
    public static let family = MethodFamily.alignment
    public static let aligns = true
    public static let usesSeed = true
    public static let parameters = CommonParameters.alignment

    public static func align(_ c: AlignmentContext) throws -> AlignmentOutcome {
        // The reference's weights reach every rank once; each rank matches its models to them.
        var flat: [Float] = c.referenceNet.map { c.layout.floats($0.stateDictionary()) } ?? []
        try c.shard.broadcast(&flat, from: c.reference)
        let refState = c.layout.unflatten(flat)
        let aligned = try MergeRun.agreeing(c.comm, "weight matching") {
            try zip(c.shard.local, c.states).map { i, s -> StateDict in
                if i == c.reference { return s }
                let r = try weightMatching(reference: refState, model: s, graph: c.graph, seed: c.seed)
                return try applyMaps(s, maps: r.maps, graph: c.graph, model: c.names[i], frozen: c.frozen)
            }
        }
        c.lap("maps")
        return AlignmentOutcome(fused: try c.fuse(aligned), aligned: aligned, hyperparameters: ["seed": "\(c.seed)"])
    }
}
