import Foundation
import LigandData
import LigandNN
import LigandNumerics

/// A suite that cannot be planned on the data at hand (sizes that do not fit, …).
public struct ZooError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The Fashion-MNIST files a suite is built from, and their identity for the cache key.
public struct ZooData {
    public let directory: URL
    public let train: LabeledImages
    public let test: LabeledImages

    /// The data set's files and sizes (cheap: nothing is read); a missing file is an error naming it.
    public static func identity(directory: URL) throws -> String { try ImageDataset.identity(directory: directory) }

    public static func load(directory: URL) throws -> ZooData {
        ZooData(directory: directory, train: try ImageDataset.load(directory: directory, split: .train),
                test: try ImageDataset.load(directory: directory, split: .test))
    }
}

/// What one model of a suite is.
public enum ModelRole: Codable, Equatable, Sendable {
    case seed(UInt64)
    /// Part `part` of partition `partition` (an index into the suite's partitions).
    case shard(partition: Int, part: Int)
    case pretrained
    case expert(task: TaskTransform)
}

/// One model of a suite: its file name and how it is trained.
public struct ModelJob: Equatable, Sendable {
    public let name: String
    public let architecture: ArchitectureSpec
    public let role: ModelRole
    /// Jobs of phase 1 start from phase-0 files (experts from their pretrained backbone).
    public let phase: Int
    public var file: String { name + ".safetensors" }

    public var task: TaskTransform? { if case .expert(let t) = role { return t }; return nil }
}

/// The index sets of a suite over the official training set (all sorted, pairwise disjoint).
public struct SuiteSplits: Equatable, Sendable {
    /// The images models train on (for a tasks suite: the experts' pool).
    public let train: [Int]
    public let calibration: [Int]
    /// tasks only: the backbone's pretraining images, which no expert sees.
    public let pretrain: [Int]
}

public enum SuitePlan {
    /// Every model of the suite in build order (phase 0 first).
    public static func jobs(_ s: SuiteSpec) -> [ModelJob] {
        var jobs: [ModelJob] = []
        for a in s.architectures {
            switch s.kind {
            case .seeds:
                for i in 0..<(s.models ?? 0) {
                    jobs.append(ModelJob(name: "\(a.label)-seed\(i)", architecture: a, role: .seed(s.seed &+ UInt64(i)), phase: 0))
                }
            case .splits:
                for (p, part) in (s.partitions ?? []).enumerated() {
                    for k in 0..<part.parts {
                        jobs.append(ModelJob(name: "\(a.label)-p\(p)-\(part.type.rawValue)\(part.parts)-part\(k)", architecture: a,
                                             role: .shard(partition: p, part: k), phase: 0))
                    }
                }
            case .tasks:
                jobs.append(ModelJob(name: "\(a.label)-pretrained", architecture: a, role: .pretrained, phase: 0))
            }
        }
        if s.kind == .tasks {
            for a in s.architectures {
                for t in s.tasks ?? [] {
                    jobs.append(ModelJob(name: "\(a.label)-\(t)", architecture: a, role: .expert(task: TaskTransform(rawValue: t)!), phase: 1))
                }
            }
        }
        return jobs
    }

    /// Seeded subset of `pool` of size n (sorted).
    static func subset(_ pool: [Int], _ n: Int, seed: UInt64, stream: String) -> (chosen: [Int], rest: [Int]) {
        var rng = SeededRNG(seed: seed, stream: stream)
        let perm = rng.permutation(pool.count)
        return (perm[..<n].map { pool[$0] }.sorted(), perm[n...].map { pool[$0] }.sorted())
    }

    public static func splits(_ s: SuiteSpec, labels: [Int]) throws -> SuiteSplits {
        guard s.calibration < labels.count else {
            throw ZooError("suite \(s.name): calibration (\(s.calibration)) must be smaller than the training set (\(labels.count) images)")
        }
        let base = try DataSplits.trainCalibration(stratifiedBy: labels, calibration: s.calibration, seed: s.seed)
        var train = base.train
        if let n = s.trainImages {
            guard n <= train.count else {
                throw ZooError("suite \(s.name): train_images (\(n)) exceeds the \(train.count) training images left after calibration")
            }
            train = subset(train, n, seed: s.seed, stream: "train-images").chosen
        }
        var pretrain: [Int] = []
        if s.kind == .tasks, let p = s.pretrain {
            guard p.images < train.count else {
                throw ZooError("suite \(s.name): pretrain.images (\(p.images)) must leave training images for the experts (there are \(train.count))")
            }
            (pretrain, train) = subset(train, p.images, seed: s.seed, stream: "pretrain")
            if let n = s.expertImages {
                guard n <= train.count else {
                    throw ZooError("suite \(s.name): expert_images (\(n)) exceeds the \(train.count) images left for the experts")
                }
                train = subset(train, n, seed: s.seed, stream: "expert-images").chosen
            }
        }
        return SuiteSplits(train: train, calibration: base.calibration, pretrain: pretrain)
    }

    /// The training images of a seeds or splits model.
    public static func trainingIndices(_ s: SuiteSpec, job: ModelJob, splits: SuiteSplits, labels: [Int]) throws -> [Int] {
        switch job.role {
        case .seed: return splits.train
        case .pretrained: return splits.pretrain
        case .expert: return splits.train
        case let .shard(p, k):
            let part = s.partitions![p]
            switch part.type {
            case .classes:
                let classes = classSubsets(classes: 10, parts: part.parts, seed: s.seed &+ UInt64(p))
                return DataSplits.shards(labels: splits.train.map { labels[$0] }, classSubsets: [classes[k]]).first!.map { splits.train[$0] }
            case .dirichlet:
                let shards = try DataSplits.dirichletShards(labels: splits.train.map { labels[$0] }, shards: part.parts,
                                                            alpha: part.alpha ?? 0.5, seed: s.seed &+ UInt64(p))
                return shards[k].map { splits.train[$0] }
            }
        }
    }

    /// Disjoint class subsets covering 0..<classes: a seeded shuffle dealt round-robin.
    public static func classSubsets(classes: Int, parts: Int, seed: UInt64) -> [[Int]] {
        var rng = SeededRNG(seed: seed, stream: "class-subsets")
        let perm = rng.permutation(classes)
        var out = [[Int]](repeating: [], count: parts)
        for (j, c) in perm.enumerated() { out[j % parts].append(c) }
        return out.map { $0.sorted() }
    }

    /// `shots` examples per class of `labels` (rows of a task's training set), seeded.
    public static func shotIndices(labels: [Int], classes: Int, shots: Int, seed: UInt64, task: String) -> [Int] {
        var rng = SeededRNG(seed: seed, stream: "shots-\(task)")
        let perm = rng.permutation(labels.count)
        var taken = [Int](repeating: 0, count: classes)
        var out: [Int] = []
        for i in perm where taken[labels[i]] < shots {
            taken[labels[i]] += 1
            out.append(i)
        }
        return out.sorted()
    }
}

/// The zero-shot-like head of design.md: class prototypes of a backbone's features.
public enum PrototypeHead {
    /// W[c] = (τ / m) · p_c, b = 0, where p_c is the normalised mean of the normalised features of
    /// class c's examples and m their mean feature norm, so logits are ≈ τ × cosine similarity.
    public static func fit(backbone: Network<Float>, images: LabeledImages, logitScale: Double) throws -> (weight: Tensor, bias: Tensor) {
        let classes = images.classCount
        let f = Trainer.featureRows(backbone, data: images)
        let d = backbone.featureWidth
        var sums = [[Double]](repeating: [Double](repeating: 0, count: d), count: classes)
        var counts = [Int](repeating: 0, count: classes)
        var normSum = 0.0
        for i in 0..<images.count {
            let row = f[(i * d)..<((i + 1) * d)]
            var n2 = 0.0
            for v in row { n2 += Double(v) * Double(v) }
            let n = n2.squareRoot()
            normSum += n
            let c = images.labels[i]
            counts[c] += 1
            if n > 0 { for (j, v) in row.enumerated() { sums[c][j] += Double(v) / n } }
        }
        if let missing = counts.firstIndex(of: 0) { throw ZooError("prototype head: no example of class \(missing)") }
        let meanNorm = normSum / Double(images.count)
        guard meanNorm > 0 else { throw ZooError("prototype head: the backbone's features are all zero") }
        var w = [Float](repeating: 0, count: classes * d)
        for c in 0..<classes {
            let norm = sums[c].reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else { continue }
            for j in 0..<d { w[c * d + j] = Float(logitScale / meanNorm * sums[c][j] / norm) }
        }
        return (Tensor(shape: [classes, d], storage: w), Tensor(zeros: [classes]))
    }
}

extension Trainer {
    /// Head inputs [count × featureWidth] of every image, in evaluation mode.
    public static func featureRows(_ net: Network<Float>, data: LabeledImages, batchSize: Int = 500) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(data.count * net.featureWidth)
        for batch in BatchIterator(data: data, batchSize: batchSize) {
            out += net.features(batch.pixels, training: false).storage
        }
        return out
    }

    /// Logits [count × classes] of `head` on feature rows, in `logits(_:data:indices:)`'s batches, so the bits are
    /// those of the forward pass of `like`'s backbone with this head.
    public static func headLogits(_ features: [Float], head: (weight: Tensor, bias: Tensor), like: Network<Float>, batchSize: Int = 500) -> [Float] {
        let d = like.featureWidth, c = head.weight.shape[0]
        var rng = SeededRNG.drawless
        let linear = Linear<Float>(name: like.head.weight.name, inFeatures: d, outFeatures: c, bias: like.head.bias != nil, rng: &rng)
        linear.weight.value = head.weight
        linear.bias?.value = head.bias
        let n = features.count / d
        var out = [Float]()
        out.reserveCapacity(n * c)
        for lo in stride(from: 0, to: n, by: batchSize) {
            let rows = min(batchSize, n - lo)
            out += linear.forward(Tensor(shape: [rows, d], storage: Array(features[(lo * d)..<((lo + rows) * d)])), training: false).storage
        }
        return out
    }
}
