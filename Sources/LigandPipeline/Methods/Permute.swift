import LigandMerge
import LigandZoo

/// Permutation alignment by activation matching (Ainsworth et al., "Git Re-Basin", ICLR 2023, Sec. 3.1): at each
/// merge point the permutation maximising Σ corr(ref unit, model unit), a linear assignment on the calibration
/// cross-correlations; then averaging.
public enum Permute: SameTaskAlignment {
    public static let name = "permute"
    public static let summary = "aligns hidden units by activation correlation and a linear assignment, then averages"
    public static let paper = "Ainsworth et al., \"Git Re-Basin\", ICLR 2023 (activation matching)"
    public static let accepts: Set<SuiteKind> = [.seeds, .splits]
    public static let family = MethodFamily.alignment
    public static let aligns = true
    public static let parameters = CommonParameters.alignment

    public static func align(_ c: AlignmentContext) throws -> AlignmentOutcome {
        let stats = try c.pairStatistics()
        c.lap("statistics")
        let aligned = try c.applying("permutation maps") { i in i == c.reference ? nil : try permutationMaps(stats[i]!) }
        c.lap("maps")
        return AlignmentOutcome(fused: try c.fuse(aligned), aligned: aligned)
    }
}
