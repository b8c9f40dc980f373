import Foundation
import LigandData
import LigandFormats
import LigandModels
import LigandNN
import LigandZoo

/// Model files a user trained (instead of a zoo suite): checked and named for a same-task merge.
public enum ModelFiles {
    /// The calibration hold-out of model files when none is given: as many images as `ligand train --calibration` holds out.
    public static let defaultCalibrationHoldout = 5000

    /// The architecture every file declares. The error names the file that is missing, unreadable, not a Ligand
    /// model file, listed twice, or of another architecture than the first.
    public static func architecture(of urls: [URL]) throws -> Architecture {
        guard urls.count >= 2 else {
            throw PipelineError("a merge needs at least two model files, got \(urls.count)\(urls.first.map { " (\($0.path))" } ?? "")")
        }
        try refuseListedTwice(urls)
        var first: Architecture?
        for u in urls {
            let a: Architecture
            do { a = try ModelFile.architecture(of: try SafeTensorsFile(url: u)) } catch { throw PipelineError(wrapping: error) }
            if let f = first, f != a {
                throw PipelineError("\(u.path): holds a \(a), but \(urls[0].path) holds a \(f) (models of different architectures cannot be merged)")
            }
            if first == nil { first = a }
        }
        return first!
    }

    /// One file reached through two paths (a symlink, a hard link) is still one model: device and inode compared.
    static func refuseListedTwice(_ urls: [URL]) throws {
        var seen: [FileIdentity: String] = [:]
        for u in urls {
            if let id = FileIdentity.of(u.path), let earlier = seen.updateValue(u.path, forKey: id) {
                throw PipelineError("\(u.path): listed twice (it is the same file as \(earlier); each model file merges once)")
            }
        }
    }

    /// The calibration hold-out of a user's data set for `model` (the `ligand split` indices): refused, naming both,
    /// when the model's image size or classes differ from the data set's, or the hold-out does not fit it.
    static func holdout(_ data: ZooData, for arch: Architecture, model: URL, holdout: Int, seed: UInt64, role: String = "the data set") throws -> (train: [Int], calibration: [Int]) {
        let shape = [data.train.height, data.train.width, data.train.channels]
        guard arch.input == shape && arch.classes == data.train.classCount else {
            throw PipelineError("\(model.path): holds a \(arch) for \(arch.input.map(String.init).joined(separator: "×")) images and \(arch.classes) classes, "
                             + "but \(role) in \(data.directory.path) has \(shape.map(String.init).joined(separator: "×")) images and \(data.train.classCount) classes")
        }
        let n = data.train.count
        guard holdout >= 2 && holdout < n else {
            throw PipelineError("--calibration-holdout must be in 2..<\(n) (the training images of \(data.directory.path)), got \(holdout)")
        }
        return try DataSplits.trainCalibration(stratifiedBy: data.train.labels, calibration: holdout, seed: seed)
    }

    /// The models' names in reports: the file names without `.safetensors` when those are distinct, else the paths as given.
    public static func names(_ urls: [URL]) -> [String] {
        let base = urls.map { u -> String in
            let n = u.lastPathComponent
            return n.hasSuffix(".safetensors") ? String(n.dropLast(".safetensors".count)) : n
        }
        return Set(base).count == base.count ? base : urls.map(\.relativePath)
    }
}

/// Where a same-task merge takes its models from.
public enum SameTaskOrigin {
    /// A seeds or splits suite of the zoo cache: its spec's calibration split, its training images.
    case suite(directory: URL, manifest: ZooManifest)
    /// Model files: a stratified, seeded hold-out of the training images (`calibrationHoldout`, `calibrationSeed`)
    /// is the calibration split, the rest the BatchNorm images.
    case files([URL])
}

extension MergeRun {
    /// The inputs of a same-task merge (and the held-out images regmean and progressive choose their settings on),
    /// from a suite or from model files, for `MergeRun.run` and `NeuLigRun` alike: the models `o.subset` or the
    /// first `o.models` name, the calibration split (cut to `o.calibrationSamples`), the first `o.bnSamples`
    /// training images and the official test set of `o.dataDirectory`. Every check runs on every rank alike.
    static func sameTaskInputs(_ o: MergeOptions, origin: SameTaskOrigin, cacheLogits: Bool) throws -> (input: SameTaskInputs, selection: LabeledImages) {
        func header(_ url: URL) throws -> Architecture {
            do { return try ModelFile.architecture(of: try SafeTensorsFile(url: url)) } catch { throw PipelineError(wrapping: error) }
        }
        func choose(_ count: Int, _ subject: String, _ noun: String) throws -> [Int] {
            if let s = o.subset {
                if let bad = s.first(where: { $0 >= count }) { throw PipelineError("subset index \(bad) is out of range: \(subject) has \(count) \(noun)") }
                return s
            }
            if let n = o.models {
                guard n <= count else { throw PipelineError("--models \(n): \(subject) has only \(count) \(noun)") }
                return Array(0..<n)
            }
            return Array(0..<count)
        }
        let urls: [URL], names: [String], kind: String, archs: [Architecture]
        var cache: URL?
        switch origin {
        case .suite(let dir, let manifest):
            let labels = Array(Set(manifest.models.map(\.architecture))).sorted()
            let archLabel = o.architecture ?? labels.first!
            guard labels.contains(archLabel) else { throw PipelineError("suite '\(o.suite)' has no \(archLabel) models (it has \(labels.joined(separator: ", ")))") }
            guard o.architecture != nil || labels.count == 1 else {
                throw PipelineError("suite '\(o.suite)' holds several architectures (\(labels.joined(separator: ", "))): choose one with --arch")
            }
            let all = manifest.models.filter { $0.architecture == archLabel }
            let models = try choose(all.count, "suite '\(o.suite)'", "\(archLabel) models").map { all[$0] }
            urls = models.map { dir.appendingPathComponent($0.file) }
            archs = try urls.map { try header($0) }
            names = models.map(\.name)
            kind = manifest.kind.rawValue
            cache = dir
        case .files(let all):
            if let a = o.architecture { throw PipelineError("--arch \(a) chooses among a suite's architectures; model files declare their own") }
            // Every file's header was read and checked against the first: one architecture for all.
            let arch = try ModelFiles.architecture(of: all)
            let chosen = try choose(all.count, "the list", "model files")
            let allNames = ModelFiles.names(all)
            urls = chosen.map { all[$0] }
            archs = Array(repeating: arch, count: urls.count)
            names = chosen.map { allNames[$0] }
            kind = "models"
        }
        let data: ZooData
        do { data = try (o.evaluator ?? Evaluator(budget: 0)).data(o.dataDirectory) } catch { throw PipelineError(wrapping: error) }
        let calIdx: [Int], train: [Int]
        switch origin {
        case .suite(_, let manifest):
            let splits: SuiteSplits
            do { splits = try SuitePlan.splits(manifest.spec, labels: data.train.labels) } catch { throw PipelineError(wrapping: error) }
            (train, calIdx) = (splits.train, splits.calibration)
        case .files:
            (train, calIdx) = try ModelFiles.holdout(data, for: archs[0], model: urls[0], holdout: o.calibrationHoldout, seed: o.calibrationSeed)
        }
        let (statIdx, selectionIdx) = o.cutCalibration(calIdx)
        var input = SameTaskInputs(suite: o.suite, suiteKind: kind, names: names, architectures: archs,
                                   load: { try ModelFile.load(urls[$0], expecting: archs[0]).network },
                                   calibration: data.train.subset(statIdx), test: data.test,
                                   train: data.train.subset(Array(train.prefix(o.bnSamples))))
        // Zoo files never change; a user's files may, so their logits are not cached.
        if cacheLogits, let dir = cache {
            input.logitsCache = { i, split, n in dir.appendingPathComponent("logits/\(names[i]).\(split)-\(n).f32") }
        }
        return (input, data.train.subset(selectionIdx))
    }
}
