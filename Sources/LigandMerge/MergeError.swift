import Foundation

/// Everything a merge refuses, each naming the model, tensor, merge point or hyper-parameter at fault.
public enum MergeError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// Models that cannot be merged because their architectures differ.
    case architectureMismatch(String)
    /// A state dict lacks a tensor the architecture (or the first model) has.
    case missingTensor(model: String, tensor: String)
    /// A state dict holds a tensor the architecture does not know.
    case unexpectedTensor(model: String, tensor: String)
    case shapeMismatch(model: String, tensor: String, expected: [Int], found: [Int])
    case nonFiniteTensor(model: String, tensor: String, index: Int)
    /// A map or statistic names a merge point the architecture lacks, or its size disagrees with the point's.
    case unknownMergePoint(String)
    case mapShape(point: String, expected: Int, found: String)
    case hyperparameter(name: String, value: Double, requirement: String)
    /// Statistics that hold a NaN or infinity (e.g. a diverged model), by merge point and block.
    case nonFiniteStatistics(point: String, field: String)
    /// Statistics that cannot give a map (no samples, every unit constant, mismatched sizes).
    case degenerateStatistics(point: String, reason: String)
    /// A linear-algebra step failed at a merge point.
    case linalg(point: String, message: String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .architectureMismatch(let m): return "models of different architectures cannot be merged: \(m)"
        case let .missingTensor(model, t): return "\(model): tensor '\(t)' is missing"
        case let .unexpectedTensor(model, t): return "\(model): tensor '\(t)' does not belong to the architecture"
        case let .shapeMismatch(model, t, e, f): return "\(model): tensor '\(t)' has shape \(f), expected \(e)"
        case let .nonFiniteTensor(model, t, i): return "\(model): tensor '\(t)' holds a NaN or infinite value at element \(i)"
        case .unknownMergePoint(let p): return "merge point '\(p)' does not exist in this architecture"
        case let .mapShape(p, e, f): return "merge point '\(p)' has \(e) channels but its map is \(f)"
        case let .hyperparameter(n, v, r): return "\(n) = \(v) is invalid: \(r)"
        case let .nonFiniteStatistics(p, f): return "merge point '\(p)': statistics \(f) hold a NaN or infinite value (a diverged model or bad calibration data)"
        case let .degenerateStatistics(p, r): return "merge point '\(p)': \(r)"
        case let .linalg(p, m): return "merge point '\(p)': \(m)"
        case .invalidInput(let m): return m
        }
    }
    public var errorDescription: String? { description }
}
