import Foundation
import LigandData
import LigandZoo

/// The run's evaluator (fusion_bench's taskpool): the data set is read once, each task's test images are made once,
/// and the logits of each (backbone, head, image set) and the features of each (backbone, image set) are computed
/// once, all shared by every method, baseline and ensemble of a `ligand run` (every K, subset and method).
/// Each rank keeps only what it computed; a cached entry is the exact array a recomputation would give, so results
/// are unchanged and stay bitwise identical for any rank count. Fused models are never keyed: they differ per run.
public final class Evaluator {
    /// What a set of logits is of: a backbone, the head read on it, the images (a path or a description each).
    public struct Key: Hashable, Sendable {
        public var model: String, head: String, data: String
        public init(model: String, head: String, data: String) { self.model = model; self.head = head; self.data = data }
    }

    /// Logits, features and test images kept per rank at most (bytes); past it, they are computed and not kept, so
    /// memory stays bounded. Features (the largest, the least reused) take at most half, so the rest keeps its room.
    public static let defaultBudget = 1 << 30
    public let budget: Int
    private var store: [Key: [Float]] = [:]
    private var testSets: [String: LabeledImages] = [:]
    private var featureStore: [Key: [Float]] = [:]
    private var bytes = 0, featureBytes = 0
    private var loaded: ZooData?
    public private(set) var computed = 0, reused = 0

    public init(budget: Int = Evaluator.defaultBudget) { self.budget = budget }

    /// The data set in `directory`, read once per run (a lone merge's evaluator, budget 0, reads it every time).
    public func data(_ directory: URL) throws -> ZooData {
        if let loaded, loaded.directory == directory { return loaded }
        let d = try ZooData.load(directory: directory)
        if budget > 0 { loaded = d }
        return d
    }

    /// Task `task`'s test images of `data`, made once and kept under the budget.
    public func testSet(_ task: TaskTransform, of data: ZooData) throws -> LabeledImages {
        let key = TasksKeys.testSet(task, directory: data.directory)
        if let kept = testSets[key] { return kept }
        let set = try task.apply(data.test)
        if keep(set.pixels.count, of: Float.self) { testSets[key] = set }
        return set
    }

    /// The feature rows (the head's input) of the backbone `model` on the images `data`, computed the first time;
    /// kept under the budget beside the logits (a NeuLig of a larger K reads the features a smaller K computed).
    public func features(model: String?, data: String, _ compute: () throws -> [Float]) rethrows -> [Float] {
        let key = model.map { Key(model: $0, head: "", data: data) }
        if let key, let kept = featureStore[key] { return kept }
        let f = try compute()
        if let key, featureBytes <= budget / 2 - f.count * MemoryLayout<Float>.size, keep(f.count, of: Float.self) {
            featureStore[key] = f
            featureBytes += f.count * MemoryLayout<Float>.size
        }
        return f
    }

    /// Whether `count` values of `T` fit in what is left of the budget (and are now counted against it).
    private func keep<T>(_ count: Int, of: T.Type) -> Bool {
        let size = count.multipliedReportingOverflow(by: MemoryLayout<T>.size)
        guard !size.overflow, size.partialValue <= budget - bytes else { return false }
        bytes += size.partialValue
        return true
    }

    /// The logits under `key`, computed by `compute` the first time (always, when `key` is nil).
    public func logits(_ key: Key?, _ compute: () throws -> [Float]) rethrows -> [Float] {
        if let key, let kept = store[key] { reused += 1; return kept }
        let l = try compute()
        computed += 1
        if let key, keep(l.count, of: Float.self) { store[key] = l }
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

    /// The keys of a zoo tasks suite: the zoo's files never change within a run, so a file's path names its tensors,
    /// and a task with the data directory names its test set.
    public init(experts: [(task: TaskTransform, url: URL)], pretrained: URL, dataDirectory: URL) {
        self.init(experts: experts.map { $0.url.standardizedFileURL.path }, pretrained: pretrained.standardizedFileURL.path,
                  test: experts.map { Self.testSet($0.task, directory: dataDirectory) })
    }

    static func testSet(_ task: TaskTransform, directory: URL) -> String { "\(task.rawValue) test set of \(directory.standardizedFileURL.path)" }

    /// The backbone of expert `model` (or a named backbone) read by task `task`'s head on task `task`'s test images.
    func test(model: String, task: Int) -> Evaluator.Key { Evaluator.Key(model: model, head: experts[task], data: test[task]) }
    /// The experts' plain average: the same bits whichever method or rank count computes it.
    var average: String { "average of " + experts.joined(separator: ", ") }
}
