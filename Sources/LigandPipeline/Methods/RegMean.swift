import LigandZoo

/// RegMean (Jin et al., "Dataless Knowledge Fusion by Merging Weights of Language Models", ICLR 2023, Eq. 4):
/// per linear layer W = (Σ_k W_k G_k)(Σ_k G_k)⁻¹, G_k the Gram matrix of expert k's layer inputs with its
/// off-diagonal scaled by α; α and the ridge chosen on held-out calibration images (FusionRun).
public enum RegMean: MergeMethod {
    public static let name = "regmean"
    public static let summary = "per layer, W = (Σ_k W_k G_k)(Σ_k G_k)⁻¹ with G_k the Gram matrix of expert k's inputs (off-diagonals scaled by α)"
    public static let paper = "Jin et al., \"Dataless Knowledge Fusion by Merging Weights of Language Models\", ICLR 2023"
    public static let accepts: Set<SuiteKind> = [.tasks, .seeds, .splits]
    public static let family = MethodFamily.leastSquares
    public static let parameters = Progressive.leastSquares + [alphas]

    public static let alphas = MethodParameter(
        "alphas", .numbers(check: { $0 >= 0 && $0 <= 1 }, scale: 1), default: .numbers((0...10).map { Double($0) / 10 }),
        help: "scales α of the Gram matrices' off-diagonal entries to choose from on calibration",
        requirement: "every α must be in [0, 1]")
}
