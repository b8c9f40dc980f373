import Foundation

/// The run's evaluator (fusion_bench's taskpool): the logits of each (backbone, head, image set) are computed once
/// and shared by every method, baseline and ensemble of a `ligand run` (every K, subset and method).
/// Each rank keeps only what it computed; a cached entry is the exact array a recomputation would give, so results
/// are unchanged and stay bitwise identical for any rank count. Fused models are never keyed: they differ per run.
public final class Evaluator {
    /// What a set of logits is of: a backbone, the head read on it, the images (a path or a description each).
    public struct Key: Hashable, Sendable {
        public var model: String, head: String, data: String
        public init(model: String, head: String, data: String) { self.model = model; self.head = head; self.data = data }
    }

    /// Logits kept per rank at most (bytes); past it, logits are computed and not kept, so memory stays bounded.
    public static let defaultBudget = 512 << 20
    public let budget: Int
    private var store: [Key: [Float]] = [:]
    private var bytes = 0
    public private(set) var computed = 0, reused = 0

    public init(budget: Int = Evaluator.defaultBudget) { self.budget = budget }

    /// The logits under `key`, computed by `compute` the first time (always, when `key` is nil).
    public func logits(_ key: Key?, _ compute: () throws -> [Float]) rethrows -> [Float] {
        if let key, let kept = store[key] { reused += 1; return kept }
        let l = try compute()
        computed += 1
        let size = l.count.multipliedReportingOverflow(by: MemoryLayout<Float>.size)
        if let key, !size.overflow, size.partialValue <= budget - bytes {
            store[key] = l
            bytes += size.partialValue
        }
        return l
    }
}

/// What a tasks merge's inputs are, for the run's Evaluator: expert i's file (its backbone, and task i's head), the
/// pretrained file, task i's test images. Nil in `TasksInputs`: nothing is shared.
public struct TasksKeys: Sendable {
    public var experts: [String]
    public var pretrained: String
    public var test: [String]

    public init(experts: [String], pretrained: String, test: [String]) { self.experts = experts; self.pretrained = pretrained; self.test = test }

    /// The backbone of expert `model` (or a named backbone) read by task `task`'s head on task `task`'s test images.
    func test(model: String, task: Int) -> Evaluator.Key { Evaluator.Key(model: model, head: experts[task], data: test[task]) }
    /// The experts' plain average: the same bits whichever method or rank count computes it.
    var average: String { "average of " + experts.joined(separator: ", ") }
}
