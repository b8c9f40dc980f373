import Foundation
import LigandMerge
import LigandNN
import LigandZoo

/// CCA Merge (Horoi et al., "Harmony in Diversity: Merging Neural Networks with Canonical Correlation Analysis",
/// ICML 2024, Sec. 3.2, Eq. 3-5): per merge point, the canonical directions of reference and model activations
/// (ridge γ, relative to tr(Σ)/C) give the dense map T = U_ref V_kᵀ-style transform (CCAMapper); γ on calibration.
/// On a ViT the dense maps act on the MLP hidden layers; the residual stream and the attention heads, where a dense map
/// cannot cross a LayerNorm or a head's scores, take activation matching's permutation (CCAMapper.permutations);
/// `stream: dense` maps the stream densely too, every LayerNorm's γ and β folded into its reader first, the normalisation
/// left approximate (the ablation of docs/alignment.md).
public enum CCA: SameTaskAlignment {
    public static let name = "cca"
    public static let summary = "aligns every model into a reference's feature space at each merge point by canonical correlation analysis of their activations (ridge γ fitted on calibration), then averages"
    public static let paper = "Horoi et al., \"Harmony in Diversity: Merging Neural Networks with Canonical Correlation Analysis\", ICML 2024"
    public static let accepts: Set<SuiteKind> = [.seeds, .splits]
    public static let family = MethodFamily.alignment
    public static let aligns = true
    public static let parameters = CommonParameters.alignment + [gammas, stream]

    /// The reference code's grid: 1e-6 … 1e7, one value per decade.
    public static let gammas = MethodParameter(
        "gammas", .numbers(check: { $0 > 0 }, scale: 1), default: .numbers((-6...7).map { pow(10, Double($0)) }),
        help: "relative ridges γ of CCA to choose from on calibration (fractions of the mean unit variance)",
        requirement: "every γ must be finite and > 0 (it is a ridge relative to the mean unit variance)")

    public static let stream = MethodParameter(
        "stream", .choice(["permute", "dense"]), default: .text("permute"),
        help: "a ViT's residual stream: permute (exact through its LayerNorms) or dense (CCA's map, every LayerNorm's γ and β folded into the layer it feeds; the normalisation no longer commutes with the map, so each mapped model is an approximation)",
        requirement: "must be permute or dense", tag: "stream")

    public static func align(_ c: AlignmentContext) throws -> AlignmentOutcome {
        let dense = c.parameters.text(stream) == "dense"
        guard !dense || c.graph.architecture.kind == .vit else {
            throw PipelineError("cca: stream: dense applies to a ViT's residual stream; this is a \(c.graph.architecture.kind.rawValue)")
        }
        if dense { do { try c.graph.requireFoldableLayerNorms(model: "cca: stream: dense") } catch { throw PipelineError(wrapping: error) } }
        let stats = try c.pairStatistics()
        c.lap("statistics")
        // One statistics pass, many γ: eigendecompositions once per model, one SVD per γ and point.
        let mappers = try MergeRun.agreeing(c.comm, "CCA") {
            try Dictionary(uniqueKeysWithValues: stats.map { i, s in
                do { return (i, try CCAMapper(s, denseStream: dense)) } catch { throw PipelineError("\(c.names[i]): \(error)") }
            })
        }
        var best: (gamma: Double, hits: Double, net: Network<Float>, aligned: [StateDict])?
        var scores: [String: Double] = [:]
        let n = Double(c.calibration.count)
        for g in c.parameters.numbers(gammas) {
            let aligned = try c.applying("CCA maps at γ = \(MergeRun.formatted(g))", denseStream: dense) { i in i == c.reference ? nil : try mappers[i]!.maps(gamma: g) }
            let candidate = try c.fuse(aligned)
            let h = try c.calibrationHits(candidate)
            scores["gamma=\(MergeRun.formatted(g))"] = h / n
            c.log(String(format: "γ = %@: calibration accuracy %.2f%%", MergeRun.formatted(g), 100 * h / n))
            if best == nil || h > best!.hits { best = (g, h, candidate, aligned) }
        }
        c.lap("gamma-grid")
        // What the chosen maps cost each model on its own (a permutation costs nothing; a ridge or a dense stream map does).
        scores.merge(try c.alignedAccuracies(best!.aligned)) { a, _ in a }
        c.lap("aligned-models")
        return AlignmentOutcome(fused: best!.net, aligned: best!.aligned,
                                hyperparameters: ["gamma": MergeRun.formatted(best!.gamma), "gamma_scale": "relative to tr(Σ)/C"].merging(dense ? ["stream": "dense"] : [:]) { a, _ in a },
                                calibrationScores: scores)
    }
}
