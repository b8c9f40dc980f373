import Foundation
import LigandCollective
import LigandData
import LigandFormats
import LigandModels
import LigandNN
import LigandNumerics

/// One built model as the manifest lists it.
public struct ManifestModel: Codable, Equatable, Sendable {
    public var name: String
    public var file: String
    public var architecture: String
    public var role: ModelRole
    public var task: String?
    public var trainImages: Int
    public var testAccuracy: Double
    public var calibrationAccuracy: Double?
}

/// What a finished build leaves beside its models; its presence means "complete".
public struct ZooManifest: Codable, Equatable, Sendable {
    public var suite: String
    public var kind: SuiteKind
    public var hash: String
    public var recipe: String
    public var dataIdentity: String
    public var spec: SuiteSpec
    public var models: [ManifestModel]

    public static let fileName = "manifest.json"

    public static func read(_ url: URL) throws -> ZooManifest {
        // A FIFO named manifest.json would block the read below forever; only a regular file is read.
        if FileManager.default.fileExists(atPath: url.path) { close(try FileChecks.openRegularForReading(url.path)) }
        guard let data = FileManager.default.contents(atPath: url.path) else { throw ZooError("\(url.path): cannot be read") }
        let manifest: ZooManifest
        do { manifest = try JSONDecoder().decode(ZooManifest.self, from: data) } catch {
            throw ZooError("\(url.path): not a zoo manifest: \(error)")
        }
        // Model files are joined to the suite directory: only plain relative paths may stay inside the cache.
        for m in manifest.models {
            let parts = m.file.split(separator: "/", omittingEmptySubsequences: false)
            guard !m.file.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                throw ZooError("\(url.path): model '\(m.name)' names the file '\(m.file)', which is not a plain relative path inside the suite directory")
            }
        }
        return manifest
    }
}

public enum ZooCache {
    public static let environmentVariable = "LIGAND_ZOO_CACHE"

    /// `$LIGAND_ZOO_CACHE`, else cache/zoo under the working directory.
    public static var defaultRoot: URL {
        if let v = ProcessInfo.processInfo.environment[environmentVariable], !v.isEmpty { return URL(fileURLWithPath: v, isDirectory: true) }
        return URL(fileURLWithPath: "cache/zoo", isDirectory: true)
    }

    public static func directory(root: URL, suite: String, hash: String) -> URL {
        root.appendingPathComponent("\(suite)-\(hash)", isDirectory: true)
    }

    /// Every suite directory under `root` with its manifest (nil while incomplete), sorted by name.
    public static func entries(root: URL) -> [(directory: URL, manifest: ZooManifest?, modelFiles: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.sorted().compactMap { name in
            let dir = root.appendingPathComponent(name, isDirectory: true)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else { return nil }
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".safetensors") }
            let m = try? ZooManifest.read(dir.appendingPathComponent(ZooManifest.fileName))
            return (dir, m, files.count)
        }
    }

    /// The newest complete build of a suite name under `root`.
    public static func find(suite: String, root: URL) throws -> (directory: URL, manifest: ZooManifest) {
        let candidates = entries(root: root).filter { $0.manifest?.suite == suite }
        func modified(_ u: URL) -> Date {
            ((try? FileManager.default.attributesOfItem(atPath: u.appendingPathComponent(ZooManifest.fileName).path))?[.modificationDate] as? Date) ?? .distantPast
        }
        guard let best = candidates.max(by: { modified($0.directory) < modified($1.directory) }) else {
            throw ZooError("no complete build of suite '\(suite)' under \(root.path) (run `ligand zoo build RECIPE --suite \(suite)` first; `ligand zoo list` shows what is cached)")
        }
        return (best.directory, best.manifest!)
    }
}

/// Builds a suite over the ranks of a communicator (one rank per model, blockRange over the models).
public enum ZooBuilder {
    public enum Key {
        static let hash = "ligand.zoo.suite_hash"
        static let model = "ligand.zoo.model"
        static let test = "ligand.test_accuracy"
        static let calibration = "ligand.calibration_accuracy"
        static let trainImages = "ligand.zoo.train_images"
        public static let task = "ligand.zoo.task"
    }

    /// The manifest of an up-to-date build, or nil when something must be built.
    public static func upToDate(_ spec: SuiteSpec, hash: String, root: URL) -> ZooManifest? {
        let url = ZooCache.directory(root: root, suite: spec.name, hash: hash).appendingPathComponent(ZooManifest.fileName)
        guard let m = try? ZooManifest.read(url), m.hash == hash else { return nil }
        return m
    }

    /// Reads a model file's build metadata; nil unless it is a complete model of this build.
    static func reusable(_ url: URL, job: ModelJob, hash: String) -> [String: String]? {
        guard FileManager.default.fileExists(atPath: url.path), let f = try? SafeTensorsFile(url: url) else { return nil }
        let m = f.metadata
        guard m[Key.hash] == hash, m[Key.model] == job.name, m[Key.test] != nil else { return nil }
        return m
    }

    public static func build(spec: SuiteSpec, recipePath: String, data: ZooData, dataIdentity: String, root: URL,
                             comm: Communicator, quiet: Bool = false, log: (String) -> Void) throws -> ZooManifest {
        let hash = SuiteHash.compute(spec, dataIdentity: dataIdentity)
        let dir = ZooCache.directory(root: root, suite: spec.name, hash: hash)
        if comm.isRoot { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        try comm.barrier()
        let input = [data.train.height, data.train.width, data.train.channels]
        let splits = try SuitePlan.splits(spec, labels: data.train.labels)
        let jobs = SuitePlan.jobs(spec)
        // A fine_tune entry that names no parameter is a typo: refuse it before anything trains.
        if let only = spec.fineTune {
            for arch in spec.architectures {
                _ = try expertFrozen(try Network<Float>(arch.architecture(input: input, classes: 10), seed: 0), fineTune: only, suite: spec.name)
            }
        }
        // Rank 0 speaks for the job: its models' epochs stand for every rank's.
        let style: PhaseProgress.Style = (quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle
        // Task data sets are built once per rank, only for the tasks this rank trains.
        var taskSets: [TaskTransform: (train: LabeledImages, calibration: LabeledImages, test: LabeledImages)] = [:]
        func taskData(_ t: TaskTransform) throws -> (train: LabeledImages, calibration: LabeledImages, test: LabeledImages) {
            if let d = taskSets[t] { return d }
            let d = (train: try t.apply(data.train.subset(splits.train)), calibration: try t.apply(data.train.subset(splits.calibration)),
                     test: try t.apply(data.test))
            taskSets[t] = d
            return d
        }
        // The anchor's reference set and targets depend only on the architecture's backbone: built once per rank.
        var anchors: [String: FeatureAnchor] = [:]
        func anchorFor(_ a: AnchorSpec, architecture: String, pretrained: Network<Float>) throws -> FeatureAnchor {
            if let kept = anchors[architecture] { return kept }
            let made = try featureAnchor(a, pretrained: pretrained, data: data.train, spec: spec, splits: splits)
            anchors[architecture] = made
            return made
        }

        for phase in 0...1 {
            let phaseJobs = jobs.filter { $0.phase == phase }
            guard !phaseJobs.isEmpty else { continue }
            let mine = blockRange(count: phaseJobs.count, parts: comm.size, part: comm.rank)
            for job in phaseJobs[mine] {
                let url = dir.appendingPathComponent(job.file)
                if reusable(url, job: job, hash: hash) != nil {
                    log("rank \(comm.rank): \(job.name): reusing the complete file")
                    continue
                }
                let start = Date()
                var meta: [String: String] = [Key.hash: hash, Key.model: job.name]
                let net: Network<Float>
                let config: TrainingConfig
                let testAcc: Double, calAcc: Double?
                let trainCount: Int
                switch job.role {
                case .seed(let seed):
                    config = spec.trainingConfig(for: job.architecture, seed: seed)
                    net = try Network<Float>(job.architecture.architecture(input: input, classes: 10), seed: seed)
                    let idx = try SuitePlan.trainingIndices(spec, job: job, splits: splits, labels: data.train.labels)
                    trainCount = idx.count
                    _ = try Trainer.train(net, data: data.train, indices: idx, config: config, progressStyle: style)
                    testAcc = try Trainer.accuracy(net, data: data.test, indices: Array(0..<data.test.count))
                    calAcc = splits.calibration.isEmpty ? nil : try Trainer.accuracy(net, data: data.train, indices: splits.calibration)
                case .shard, .pretrained:
                    let seed = spec.seed &+ 1000 &* UInt64(jobs.firstIndex(of: job)! + 1)
                    config = job.role == .pretrained ? spec.pretrainingConfig(for: job.architecture, seed: seed)
                                                     : spec.trainingConfig(for: job.architecture, seed: seed)
                    net = try Network<Float>(job.architecture.architecture(input: input, classes: 10), seed: seed)
                    let idx = try SuitePlan.trainingIndices(spec, job: job, splits: splits, labels: data.train.labels)
                    trainCount = idx.count
                    if job.role == .pretrained, let views = spec.pretrain?.views {
                        let mixed = try pretrainingViews(data.train, indices: idx, views: views.compactMap(TaskTransform.init(rawValue:)))
                        _ = try Trainer.train(net, data: mixed, indices: Array(0..<mixed.count), config: config, progressStyle: style)
                    } else {
                        _ = try Trainer.train(net, data: data.train, indices: idx, config: config, progressStyle: style)
                    }
                    testAcc = try Trainer.accuracy(net, data: data.test, indices: Array(0..<data.test.count))
                    calAcc = splits.calibration.isEmpty ? nil : try Trainer.accuracy(net, data: data.train, indices: splits.calibration)
                case .expert(let task):
                    let sets = try taskData(task)
                    let preURL = dir.appendingPathComponent("\(job.architecture.label)-pretrained.safetensors")
                    let pre = try ModelFile.load(preURL).network
                    let shots = SuitePlan.shotIndices(labels: sets.train.labels, classes: task.classes, shots: spec.shots ?? 10,
                                                      seed: spec.seed, task: task.rawValue)
                    let head = try PrototypeHead.fit(backbone: pre, images: sets.train.subset(shots), logitScale: spec.logitScale ?? 10)
                    net = try expertNetwork(pretrained: pre, head: head)
                    var c = spec.trainingConfig(for: job.architecture, seed: spec.seed &+ 100 &+ UInt64(jobs.firstIndex(of: job)!))
                    c.frozen = try expertFrozen(net, fineTune: spec.fineTune, suite: spec.name)
                    if let probe = spec.probe { try fitProbe(net, data: sets.train, config: c, probe: probe, progressStyle: style) }
                    config = c
                    trainCount = sets.train.count
                    let anchor = try spec.anchor.map { try anchorFor($0, architecture: job.architecture.label, pretrained: pre) }
                    if let a = spec.anchor { meta["ligand.anchor"] = "\(a.images) images, weight \(a.weight)" }
                    _ = try Trainer.train(net, data: sets.train, indices: Array(0..<sets.train.count), config: config, progressStyle: style,
                                          anchor: anchor)
                    testAcc = try Trainer.accuracy(net, data: sets.test, indices: Array(0..<sets.test.count))
                    calAcc = sets.calibration.count == 0 ? nil : try Trainer.accuracy(net, data: sets.calibration, indices: Array(0..<sets.calibration.count))
                    meta[Key.task] = task.rawValue
                }
                let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
                // A Set encodes in a per-process order: the frozen names go in their own sorted entry.
                var plain = config
                plain.frozen = []
                meta["ligand.training"] = String(decoding: try enc.encode(plain), as: UTF8.self)
                if !config.frozen.isEmpty { meta["ligand.frozen"] = config.frozen.sorted().joined(separator: ",") }
                meta["ligand.zoo.role"] = String(decoding: try enc.encode(job.role), as: UTF8.self)
                meta[Key.test] = String(format: "%.6f", testAcc)
                if let calAcc { meta[Key.calibration] = String(format: "%.6f", calAcc) }
                meta[Key.trainImages] = String(trainCount)
                try ModelFile.save(net, to: url, metadata: meta)
                log(String(format: "rank %d: %@: test %.2f%%%@ (%d images, %.0fs)", comm.rank, job.name, 100 * testAcc,
                           calAcc.map { String(format: ", calibration %.2f%%", 100 * $0) } ?? "", trainCount, Date().timeIntervalSince(start)))
            }
            try comm.barrier()
        }

        var models: [ManifestModel] = []
        for job in jobs {
            let url = dir.appendingPathComponent(job.file)
            guard let m = reusable(url, job: job, hash: hash) else { throw ZooError("\(url.path): missing or incomplete after the build") }
            models.append(ManifestModel(name: job.name, file: job.file, architecture: job.architecture.label, role: job.role,
                                        task: job.task?.rawValue, trainImages: Int(m[Key.trainImages] ?? "") ?? 0,
                                        testAccuracy: Double(m[Key.test] ?? "") ?? .nan,
                                        calibrationAccuracy: m[Key.calibration].flatMap(Double.init)))
        }
        let manifest = ZooManifest(suite: spec.name, kind: spec.kind, hash: hash, recipe: recipePath, dataIdentity: dataIdentity,
                                   spec: spec, models: models)
        if comm.isRoot {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            try AtomicFile.write(try enc.encode(manifest), to: dir.appendingPathComponent(ZooManifest.fileName))
        }
        try comm.barrier()
        return manifest
    }

    /// The pretraining images dealt round-robin over the original view and `views` (image j gets view j mod (n + 1)),
    /// each transformed, in view order: as many images as `indices`, each seen in one view.
    static func pretrainingViews(_ data: LabeledImages, indices: [Int], views: [TaskTransform]) throws -> LabeledImages {
        var pixels: [Float] = [], labels: [Int] = []
        for v in 0...views.count {
            let mine = stride(from: v, to: indices.count, by: views.count + 1).map { indices[$0] }
            let part = v == 0 ? data.subset(mine) : try views[v - 1].apply(data.subset(mine))
            pixels += part.pixels; labels += part.labels
        }
        return LabeledImages(height: data.height, width: data.width, channels: data.channels, pixels: pixels, labels: labels,
                             classCount: data.classCount)
    }

    /// The reference set of `anchor`: the first `images` pretraining images, in the backbone's pretraining views, with
    /// the pretrained backbone's features as targets.
    static func featureAnchor(_ anchor: AnchorSpec, pretrained: Network<Float>, data: LabeledImages, spec: SuiteSpec,
                              splits: SuiteSplits) throws -> FeatureAnchor {
        let idx = Array(splits.pretrain.prefix(anchor.images))
        let views = (spec.pretrain?.views ?? []).compactMap(TaskTransform.init(rawValue:))
        let images = views.isEmpty ? data.subset(idx) : try pretrainingViews(data, indices: idx, views: views)
        var targets: [Float] = []
        targets.reserveCapacity(images.count * pretrained.featureWidth)
        for batch in BatchIterator(data: images, indices: Array(0..<images.count), batchSize: 500) {
            targets += pretrained.features(batch.pixels).storage
        }
        return FeatureAnchor(images: images, targets: Tensor(shape: [images.count, pretrained.featureWidth], storage: targets),
                             weight: anchor.weight)
    }

    /// LP-FT's first step: the head alone trained on the frozen backbone (`config`'s optimiser and schedule, the probe's
    /// epochs and learning rate), so that fine-tuning has less to change in the shared features.
    static func fitProbe(_ net: Network<Float>, data: LabeledImages, config: TrainingConfig, probe: ProbeSpec,
                         progressStyle: PhaseProgress.Style) throws {
        var c = config
        c.epochs = probe.epochs; c.learningRate = probe.lr
        c.frozen = Set(net.parameters.map(\.name)).subtracting(net.head.parameters.map(\.name))
        _ = try Trainer.train(net, data: data, indices: Array(0..<data.count), config: c, progressStyle: progressStyle)
    }

    /// What an expert leaves untouched: its head, and with `fine_tune` every backbone parameter whose name contains
    /// none of the entries. Throws when an entry matches no backbone parameter.
    static func expertFrozen(_ net: Network<Float>, fineTune: [String]?, suite: String) throws -> Set<String> {
        let head = Set(net.head.parameters.map(\.name))
        guard let only = fineTune else { return head }
        let backbone = net.parameters.map(\.name).filter { !head.contains($0) }
        for entry in only where !backbone.contains(where: { $0.contains(entry) }) {
            throw ZooError("suite \(suite): fine_tune entry '\(entry)' matches no backbone parameter (they are named like \(backbone.prefix(4).joined(separator: ", ")), …)")
        }
        return head.union(backbone.filter { name in !only.contains(where: { name.contains($0) }) })
    }

    /// The pretrained backbone under a new head (its class count the head's).
    public static func expertNetwork(pretrained: Network<Float>, head: (weight: Tensor, bias: Tensor)) throws -> Network<Float> {
        var backbone: [String: Tensor] = [:]
        for (name, value) in pretrained.backboneStateDict() { backbone[name] = value }
        return try pretrained.with(backbone: backbone, head: head)
    }
}
