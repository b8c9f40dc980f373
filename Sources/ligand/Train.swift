import ArgumentParser
import Foundation
import LigandData
import LigandModels
import LigandNN
import LigandNumerics
import LigandZoo

/// Architecture options shared by every command that builds a network.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Architecture: mlp, vgg, resnet20 or vit.")
    var arch: Architecture.Kind = .mlp
    @Option(help: "MLP hidden widths, comma-separated.")
    var hidden: String = "512,512"
    @Option(help: "VGG layers: channel counts and M for a 2×2 max-pool, comma-separated.")
    var vggConfig: String = "32,32,M,64,64,M,128,128,M"
    @Flag(help: "VGG: a BatchNorm after every convolution (torchvision's vgg*_bn layout; default: none).")
    var batchNorm = false
    @Option(parsing: .unconditional, help: "ResNet-20 width multiplier (1 → 16/32/64 channels; default 1); ViT embedding width d (default \(Architecture.vit().width!)).")
    var width: Int?
    @Option(parsing: .unconditional, help: "ViT: side of the square patches (default \(Architecture.vit().patch!); must divide the image side).")
    var patch: Int?
    @Option(parsing: .unconditional, help: "ViT: transformer blocks (default \(Architecture.vit().depth!)).")
    var depth: Int?
    @Option(parsing: .unconditional, help: "ViT: attention heads (default \(Architecture.vit().heads!); must divide --width).")
    var heads: Int?
    @Option(parsing: .unconditional, help: "ViT: MLP hidden width as a multiple of --width (default \(String(format: "%g", Architecture.vit().mlpRatio!))).")
    var mlpRatio: Double?

    func validate() throws {
        try CountOption.check(width, "--width", min: 1, max: arch == .vit ? RecipeLimits.maxWidth : RecipeLimits.maxResNetWidth)
        try CountOption.check(patch, "--patch", min: 1, max: RecipeLimits.maxWidth)
        try CountOption.check(depth, "--depth", min: 1, max: RecipeLimits.maxLayers)
        try CountOption.check(heads, "--heads", min: 1, max: RecipeLimits.maxWidth)
        if let r = mlpRatio, !(r.isFinite && r > 0 && r <= 64) { throw ValidationError("--mlp-ratio must be in (0, 64], got \(r)") }
    }

    /// The smallest image the architecture accepts (a ViT's one patch, a VGG's 2^pools side, ResNet-20's 4×4): the
    /// lower bound of its size for any data set.
    var smallestInput: [Int] {
        switch arch {
        case .mlp: return [1, 1, 1]
        case .resnet20: return [4, 4, 1]
        case .vit: return Array(repeating: patch ?? Architecture.vit().patch!, count: 2) + [1]
        case .vgg:
            let pools = min(vggConfig.split(separator: ",").filter { $0.trimmingCharacters(in: .whitespaces) == "M" }.count, 20)
            return [1 << pools, 1 << pools, 1]
        }
    }

    func architecture(input: [Int], classes: Int) throws -> Architecture {
        let arch = try parsedArchitecture(input: input, classes: classes)
        // Sizes are checked before any weight is allocated: --hidden 100000,100000 would ask for 40 GB.
        let weights = RecipeLimits.weightCount(arch)
        guard let weights, weights <= RecipeLimits.maxWeights else {
            throw ValidationError("\(arch) has \(weights.map(RecipeLimits.grouped) ?? "too many") weights, more than the limit of \(RecipeLimits.grouped(RecipeLimits.maxWeights))")
        }
        return arch
    }

    private func parsedArchitecture(input: [Int], classes: Int) throws -> Architecture {
        if batchNorm && arch != .vgg { throw ValidationError("--batch-norm applies to --arch vgg only (resnet20 always has BatchNorm, mlp and vit have none)") }
        if arch != .vit, patch != nil || depth != nil || heads != nil || mlpRatio != nil {
            throw ValidationError("--patch, --depth, --heads and --mlp-ratio apply to --arch vit only")
        }
        if width != nil && ![.resnet20, .vit].contains(arch) { throw ValidationError("--width applies to --arch resnet20 or vit only") }
        switch arch {
        case .mlp:
            let h = try hidden.split(separator: ",").map { s -> Int in
                guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v > 0 else { throw ValidationError("--hidden: '\(s)' is not a positive width") }
                guard v <= RecipeLimits.maxWidth else { throw ValidationError("--hidden: a width must be at most \(RecipeLimits.maxWidth), got \(v)") }
                return v
            }
            guard h.count <= RecipeLimits.maxLayers else { throw ValidationError("--hidden: at most \(RecipeLimits.maxLayers) layers, got \(h.count)") }
            return .mlp(hidden: h, input: input, classes: classes)
        case .vgg:
            let items = try vggConfig.split(separator: ",").map { s -> Architecture.VGGItem in
                let t = s.trimmingCharacters(in: .whitespaces)
                if t == "M" { return .pool }
                guard let v = Int(t), v > 0 else { throw ValidationError("--vgg-config: '\(t)' is neither a positive channel count nor M") }
                guard v <= RecipeLimits.maxWidth else { throw ValidationError("--vgg-config: a channel count must be at most \(RecipeLimits.maxWidth), got \(v)") }
                return .conv(v)
            }
            guard items.count <= RecipeLimits.maxLayers else { throw ValidationError("--vgg-config: at most \(RecipeLimits.maxLayers) items, got \(items.count)") }
            return .vgg(items, input: input, classes: classes, batchNorm: batchNorm)
        case .resnet20:
            return .resnet20(width: width ?? 1, input: input, classes: classes)
        case .vit:
            let d = Architecture.vit()
            let a = Architecture.vit(patch: patch ?? d.patch!, width: width ?? d.width!, depth: depth ?? d.depth!, heads: heads ?? d.heads!,
                                     mlpRatio: mlpRatio ?? d.mlpRatio!, input: input, classes: classes)
            let problems = a.validationErrors()
            guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
            return a
        }
    }
}

extension Architecture.Kind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension LRSchedule.Decay: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train one model on an MNIST-family data set and write it as safetensors.",
        discussion: """
        The training split is the official training set minus a stratified, seeded calibration hold-out; \
        test accuracy is measured on the official test set. Defaults per architecture (epochs, learning rate, \
        augmentation) are the ones documented in docs/engine.md; any option given overrides them.
        """)

    @OptionGroup var architecture: ArchitectureOptions
    @Option(help: DataOption.help)
    var data: String?
    @Option(parsing: .unconditional, help: "Training images held out as the calibration split (stratified).")
    var calibration: Int = 5000
    @Option(parsing: .unconditional, help: "Train on only this many images of the training split (a seeded subset; default: all of it).")
    var trainImages: Int?
    @Option(parsing: .unconditional, help: "Measure test and calibration accuracy on only the first N images of each (default: all).")
    var evalImages: Int?
    @Option(parsing: .unconditional, help: "Seed for initialisation, shuffling, augmentation and the split.")
    var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Epochs (default: mlp 12, vgg 12, resnet20 15, vit 45).")
    var epochs: Int?
    @Option(parsing: .unconditional, help: "Mini-batch size.")
    var batchSize: Int = 128
    @Option(help: "Optimiser: sgd, adam or adamw (default: adamw for vit, sgd otherwise).")
    var optimizer: OptimizerKind?
    @Option(parsing: .unconditional, help: "Peak learning rate (default: sgd 0.05, resnet20 0.1, vit 2e-3, adam/adamw 1e-3).")
    var lr: Double?
    @Option(parsing: .unconditional, help: "SGD momentum.")
    var momentum: Double = 0.9
    @Flag(inversion: .prefixedNo, help: "Nesterov momentum for SGD.")
    var nesterov: Bool = true
    @Option(parsing: .unconditional, help: "Weight decay (L2 for sgd/adam, decoupled for adamw; default: 0.05 for vit, 5e-4 otherwise).")
    var weightDecay: Double?
    @Option(parsing: .unconditional, help: "Linear warm-up length in epochs (default: 1 for vit, 0.5 otherwise).")
    var warmup: Double?
    @Option(help: "Learning-rate decay after warm-up: constant, cosine or linear.")
    var schedule: LRSchedule.Decay = .cosine
    @Option(help: "Random horizontal flips (default: on for vgg, resnet20 and vit).")
    var flip: Bool?
    @Option(parsing: .unconditional, help: "Random shifts of up to this many pixels (default: 0 for mlp, 1 for vit, 2 otherwise).")
    var shift: Int?
    @Option(parsing: .unconditional, help: "Label smoothing ε of the cross-entropy, in [0, 1) (default: 0.1 for vit, 0 otherwise).")
    var labelSmoothing: Double?
    @Option(parsing: .unconditional, help: "Worker threads (default: $OPENBLAS_NUM_THREADS or all cores).")
    var threads: Int?
    @Option(help: "Output model file (default: cache/models/ARCH-seedSEED.safetensors).")
    var out: String?
    @Option(help: "Also write the per-epoch log as JSON here (default: no log file).")
    var log: String?
    @Flag(help: "No progress output (default: off, progress on stderr).")
    var quiet = false

    func validate() throws {
        try CountOption.check(calibration, "--calibration", min: 0, max: RecipeLimits.trainingImages - 1)
        try CountOption.check(trainImages, "--train-images", min: 1, max: RecipeLimits.trainingImages)
        try CountOption.check(evalImages, "--eval-images", min: 1)
        try CountOption.check(epochs, "--epochs", min: 1, max: RecipeLimits.maxEpochs)
        try CountOption.check(batchSize, "--batch-size", min: 1, max: RecipeLimits.maxBatchSize)
        try CountOption.check(shift, "--shift", min: 0, max: RecipeLimits.maxShift)
        if let e = labelSmoothing, !(e >= 0 && e < 1) { throw ValidationError("--label-smoothing must be in [0, 1), got \(e)") }
        try CountOption.check(threads, "--threads", min: 1, max: CountOption.maxThreads)
        // Fashion-MNIST's images are 28×28×1 with 10 classes: the network's size is known before the data is read
        // (another data set's image size is known only once it is read, and checked then).
        do { _ = try architecture.architecture(input: [28, 28, 1], classes: 10) } catch {
            // Another data set may have other images: refuse now only what no image size could fix.
            if data == nil || (try? architecture.architecture(input: architecture.smallestInput, classes: 2)) == nil { throw error }
        }
    }

    func run() throws {
        _ = BLAS.configured
        if let threads { Parallel.setWorkers(threads) }
        let dir = data.map { URL(fileURLWithPath: $0) } ?? MNISTFamily.defaultDirectory
        let trainSet = try ImageDataset.load(directory: dir, split: .train)
        let testSet = try ImageDataset.load(directory: dir, split: .test)
        guard calibration >= 0 && calibration < trainSet.count else {
            throw ValidationError("--calibration must be in 0..<\(trainSet.count), got \(calibration)")
        }
        var split = try DataSplits.trainCalibration(stratifiedBy: trainSet.labels, calibration: calibration, seed: seed)
        if let n = trainImages {
            guard n > 0 && n <= split.train.count else { throw ValidationError("--train-images must be in 1...\(split.train.count), got \(n)") }
            var rng = SeededRNG(seed: seed, stream: "train-subset")
            split.train = rng.permutation(split.train.count).prefix(n).map { split.train[$0] }.sorted()
        }
        if let n = evalImages, n <= 0 { throw ValidationError("--eval-images must be positive, got \(n)") }
        let evalLimit = evalImages ?? Int.max
        let arch = try architecture.architecture(input: [trainSet.height, trainSet.width, trainSet.channels], classes: trainSet.classCount)
        var config = TrainingConfig()
        let kind = arch.kind
        // A transformer trains with AdamW, decoupled decay 0.05 and a longer warm-up (timm's recipe, scaled down).
        let vit = kind == .vit
        let opt = optimizer ?? (vit ? .adamw : .sgd)
        config.epochs = epochs ?? (vit ? 45 : kind == .resnet20 ? 15 : 12)
        config.batchSize = batchSize
        config.optimizer = opt
        config.learningRate = lr ?? (opt == .sgd ? (kind == .resnet20 ? 0.1 : 0.05) : vit ? 2e-3 : 1e-3)
        config.momentum = momentum
        config.nesterov = nesterov
        config.weightDecay = weightDecay ?? (vit ? 0.05 : 5e-4)
        config.warmupEpochs = warmup ?? (vit ? 1 : 0.5)
        config.decay = schedule
        config.flip = flip ?? (kind != .mlp)
        // Over 45 epochs the small ViT overfits without shifts and label smoothing (docs/engine.md).
        config.shift = shift ?? (kind == .mlp ? 0 : vit ? 1 : 2)
        config.labelSmoothing = labelSmoothing ?? (vit ? 0.1 : nil)
        config.seed = seed
        let problems = config.validationErrors()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }

        let outURL = URL(fileURLWithPath: out ?? "cache/models/\(kind.rawValue)-seed\(seed).safetensors")
        try FileManager.default.createDirectory(at: outURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        let net = try Network<Float>(arch, seed: seed)
        let style: PhaseProgress.Style = quiet ? .quiet : PhaseProgress.defaultStyle
        PhaseProgress.note("training \(arch) (\(net.parameterCount) parameters) on \(split.train.count) images, \(config.epochs) epochs, \(Parallel.workers) worker threads", style: style)
        let start = Date()
        let reports = try Trainer.train(net, data: trainSet, indices: split.train, config: config, progressStyle: style)
        let seconds = Date().timeIntervalSince(start)
        let testAcc = try Trainer.accuracy(net, data: testSet, indices: Array(0..<min(testSet.count, evalLimit)))
        let calAcc = split.calibration.isEmpty ? nil : try Trainer.accuracy(net, data: trainSet, indices: Array(split.calibration.prefix(evalLimit)))
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let meta: [String: String] = [
            "ligand.training": String(decoding: try enc.encode(config), as: UTF8.self),
            "ligand.data": dir.path,
            "ligand.calibration": String(calibration),
            "ligand.test_accuracy": String(format: "%.4f", testAcc),
        ]
        try ModelFile.save(net, to: outURL, metadata: meta)
        if let log {
            try writeAtomically(Data(try enc.encode(reports)), to: log)
        }
        print(String(format: "%@  test %.2f%%", arch.description, 100 * testAcc)
              + (calAcc.map { String(format: "  calibration %.2f%%", 100 * $0) } ?? "")
              + String(format: "  %d epochs in %.1fs (%.0f img/s)  → %@", config.epochs, seconds,
                       reports.map(\.imagesPerSecond).reduce(0, +) / Double(max(1, reports.count)), outURL.path))
    }
}
