import Foundation
import LigandNN
import LigandZoo

/// Fisher merging (Matena & Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS 2022, Eq. 2):
/// θ_j = Σ_k F_k,j·θ_k,j / Σ_k F_k,j, F_k the diagonal Fisher of expert k (with its own head) on its own task's
/// calibration images (`DiagonalFisher`, computed on the rank that holds the expert; the two sums are plain sums over
/// the experts). A coordinate no expert's Fisher weighs, and every BatchNorm running statistic, takes the plain average.
public enum Fisher: TaskVectorMerge {
    public static let name = "fisher"
    public static let summary = "a parameter-wise average weighted by each expert's diagonal Fisher information on its own task's calibration images"
    public static let paper = "Matena & Raffel, \"Merging Models with Fisher-Weighted Averaging\", NeurIPS 2022"
    public static let accepts: Set<SuiteKind> = [.tasks]
    public static let family = MethodFamily.taskVectors
    public static let parameters = [CommonParameters.calibrationSamples, samples]

    public static let samples = MethodParameter(
        "fisher_samples", .integer(min: 1), default: .integer(256),
        help: "calibration images per task the Fisher information is estimated on (each costs one forward and backward per class)",
        requirement: "must be positive")

    public static func merge(_ c: TaskVectorContext) throws -> TaskVectorOutcome {
        guard let data = c.taskData else { throw PipelineError("fisher needs each task's calibration images; run it with `ligand merge` on a tasks suite") }
        let wanted = c.parameters.integer(samples) ?? 256
        let offsets = Dictionary(uniqueKeysWithValues: c.tensors.map { ($0.name, $0) })
        let total = c.pretrained.count
        let local = try zip(c.shard.local, c.experts).map { i, expert -> [Double] in
            let net = try data.network(i, expert)
            let images = data.calibration(i)
            let used = min(wanted, images.count)
            let started = Date()
            let fisher = DiagonalFisher.compute(net, data: images, indices: Array(0..<used))
            data.log(String(format: "fisher: expert %d, %d images, %.1f s", i, used, Date().timeIntervalSince(started)))
            // [F·θ, F] in the backbone's flat order; the head's Fisher is not part of the backbone.
            var v = [Double](repeating: 0, count: 2 * total)
            for (name, f) in fisher {
                guard let t = offsets[name], t.count > 0, c.isParameter[t.offset] else { continue }
                for j in 0..<t.count { v[t.offset + j] = f[j] * expert[t.offset + j]; v[total + t.offset + j] = f[j] }
            }
            return v
        }
        let s = try c.shard.sum(local)
        let backbone = (0..<total).map { j in c.isParameter[j] && s[total + j] > 0 ? s[j] / s[total + j] : c.average[j] }
        let score = try c.score(backbone)
        return TaskVectorOutcome(backbone: backbone, hyperparameters: ["fisher_samples": "\(wanted)"], calibrationScores: ["fisher": score])
    }
}
