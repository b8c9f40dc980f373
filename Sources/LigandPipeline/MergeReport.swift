import Foundation

/// The report of one merge: chosen hyper-parameters, the calibration score of every candidate, test accuracy
/// of the fused model beside the ensemble and the single models.
public struct MergeReport: Codable, Sendable {
    public var method: String
    public var suite: String
    public var suiteKind: String
    public var architecture: String
    /// Task names (tasks suite) or ["accuracy"].
    public var columns: [String]
    public var models: [String]
    public var ranks: Int
    public var reference: String?
    public var referenceRule: String?
    public var split = "test"
    public var calibrationSamples: Int
    public var hyperparameters: [String: String]
    /// Mean calibration accuracy of each candidate of the grid search, keyed by its settings.
    public var calibrationScores: [String: Double]
    public var rows: [ReportRow]
    public var fusedFile: String?
    public var seconds: [String: Double]
    /// Payload bytes rank 0 moved per phase, when the run counted them (`ligand run`).
    public var bytes: [String: Int]? = nil

    public func table() -> String {
        let nameWidth = max(36, (rows.map(\.name.count).max() ?? 0) + 2)
        var s = "\(method) on suite '\(suite)' (\(architecture)), K = \(models.count) models over \(ranks) rank(s), \(split) accuracy %\n"
        if let r = reference { s += "reference: \(r) (rule: \(referenceRule ?? "-"))\n" }
        if !hyperparameters.isEmpty {
            s += "chosen on calibration (\(calibrationSamples) images): " + hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        }
        let multi = columns.count > 1
        s += "".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
        s += (multi ? columns.indices.map { "T\($0 + 1)".padding(toLength: 7, withPad: " ", startingAt: 0) }.joined() + "mean" : "accuracy") + "\n"
        for r in rows {
            s += r.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            if multi { s += r.accuracies.map { String(format: "%-7.2f", 100 * $0) }.joined() }
            s += String(format: "%.2f", 100 * r.mean)
            if !r.hyperparameters.isEmpty { s += "   " + r.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
            s += "\n"
        }
        if multi { s += "tasks: " + columns.enumerated().map { "T\($0.offset + 1) = \($0.element)" }.joined(separator: ", ") + "\n" }
        return s
    }
}
