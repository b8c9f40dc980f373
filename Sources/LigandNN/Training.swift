import Foundation
import LigandData
import LigandNumerics

/// Everything that decides a training run; stored in the model file so a result can be traced back.
public struct TrainingConfig: Codable, Equatable, Sendable {
    public var epochs: Int = 10
    public var batchSize: Int = 128
    public var optimizer: OptimizerKind = .sgd
    public var learningRate: Double = 0.05
    public var momentum: Double = 0.9
    public var nesterov: Bool = true
    public var weightDecay: Double = 5e-4
    public var warmupEpochs: Double = 0.5
    public var decay: LRSchedule.Decay = .cosine
    /// Random horizontal flips and shifts of up to `shift` pixels, drawn from the seed.
    public var flip: Bool = false
    public var shift: Int = 0
    /// Label smoothing ε of the cross-entropy (nil: none; kept optional so configurations without it encode as before).
    public var labelSmoothing: Double?
    public var seed: UInt64 = 0
    /// Parameter names left untouched by the optimiser (e.g. a frozen classification head).
    public var frozen: Set<String> = []

    public init() {}

    public func validationErrors() -> [String] {
        var e: [String] = []
        if epochs < 1 { e.append("epochs must be at least 1, got \(epochs)") }
        if batchSize < 1 { e.append("batch size must be at least 1, got \(batchSize)") }
        if !(learningRate > 0) || !learningRate.isFinite { e.append("learning rate must be positive, got \(learningRate)") }
        if !(0..<1).contains(momentum) { e.append("momentum must be in [0, 1), got \(momentum)") }
        if weightDecay < 0 { e.append("weight decay must be non-negative, got \(weightDecay)") }
        if warmupEpochs < 0 { e.append("warm-up epochs must be non-negative, got \(warmupEpochs)") }
        if shift < 0 { e.append("shift must be non-negative, got \(shift)") }
        if let ls = labelSmoothing, !(ls >= 0 && ls < 1) { e.append("label smoothing must be in [0, 1), got \(ls)") }
        return e
    }
}

public struct EpochReport: Codable, Sendable {
    public let epoch: Int
    public let trainLoss: Double
    public let trainAccuracy: Double
    public let evalAccuracy: Double?
    public let seconds: Double
    public var imagesPerSecond: Double
}

public enum TrainingError: Error, CustomStringConvertible {
    case invalidConfig([String])
    case dataMismatch(String)
    case diverged(epoch: Int, step: Int)
    public var description: String {
        switch self {
        case .invalidConfig(let e): return "invalid training configuration: " + e.joined(separator: "; ")
        case .dataMismatch(let m): return m
        case .diverged(let e, let s): return "training diverged (non-finite loss) at epoch \(e), step \(s): lower the learning rate"
        }
    }
}

/// Feature distillation on reference images, as ZSCL (Zheng et al., ICCV 2023) keeps fine-tuned CLIP models zero-shot,
/// with an L2 distance on the features: every step also pulls the features of a batch of reference images towards fixed
/// targets, loss weight · mean_i ‖f(x_i) − t_i‖², so that fine-tuning changes less what the backbone computes for
/// inputs other than its task's.
public struct FeatureAnchor {
    /// The reference images (labels unused) and their targets [images.count, featureWidth].
    public let images: LabeledImages
    public let targets: Tensor
    public let weight: Double
    public init(images: LabeledImages, targets: Tensor, weight: Double) {
        precondition(targets.shape.count == 2 && targets.shape[0] == images.count && images.count > 0, "one target row per reference image")
        self.images = images; self.targets = targets; self.weight = weight
    }

    /// The loss and dL/dfeatures of `features` [B, d] against the targets of `rows`.
    public func loss(_ features: Tensor, rows: [Int]) -> (loss: Double, gradient: Tensor) {
        let d = targets.shape[1], b = rows.count
        var grad = Tensor(zeros: features.shape)
        var sum = 0.0
        features.withUnsafeBufferPointer { f in targets.withUnsafeBufferPointer { t in grad.withUnsafeMutableBufferPointer { g in
            for (i, r) in rows.enumerated() { for j in 0..<d {
                let diff = Double(f[i * d + j]) - Double(t[r * d + j])
                sum += diff * diff
                g[i * d + j] = Float(2 * weight * diff / Double(b))
            } }
        } } }
        return (weight * sum / Double(b), grad)
    }
}

/// Minibatch training with deterministic shuffling and augmentation for a seed.
public enum Trainer {
    /// Checks that a data set fits a network's input and label space.
    public static func validate(_ data: LabeledImages, for net: Network<Float>) throws {
        let arch = net.architecture
        guard [data.height, data.width, data.channels] == arch.input else {
            throw TrainingError.dataMismatch("data images are \(data.height)×\(data.width)×\(data.channels), the architecture's input is \(arch.input)")
        }
        guard data.classCount <= arch.classes else {
            throw TrainingError.dataMismatch("data has \(data.classCount) classes, the architecture has \(arch.classes) outputs")
        }
    }

    public static func train(_ net: Network<Float>, data: LabeledImages, indices: [Int], config: TrainingConfig,
                             evaluation: (data: LabeledImages, indices: [Int])? = nil,
                             progressStyle: PhaseProgress.Style = PhaseProgress.defaultStyle, anchor: FeatureAnchor? = nil,
                             onEpoch: (EpochReport) -> Void = { _ in }) throws -> [EpochReport] {
        let problems = config.validationErrors()
        guard problems.isEmpty else { throw TrainingError.invalidConfig(problems) }
        try validate(data, for: net)
        let stepsPerEpoch = (indices.count + config.batchSize - 1) / config.batchSize
        let schedule = LRSchedule(base: config.learningRate, warmupSteps: Int(config.warmupEpochs * Double(stepsPerEpoch)),
                                  totalSteps: config.epochs * stepsPerEpoch, decay: config.decay)
        let opt = Optimizer<Float>(config.optimizer, momentum: config.momentum, nesterov: config.nesterov, weightDecay: config.weightDecay)
        let unknown = config.frozen.subtracting(net.parameters.map(\.name))
        guard unknown.isEmpty else { throw TrainingError.invalidConfig(["frozen parameters not in the network: \(unknown.sorted().joined(separator: ", "))"]) }
        let params = net.parameters.filter { !config.frozen.contains($0.name) }
        if let anchor {
            guard [anchor.images.height, anchor.images.width, anchor.images.channels] == net.architecture.input,
                  anchor.targets.shape[1] == net.featureWidth else {
                throw TrainingError.dataMismatch("the reference images or their targets do not fit the network")
            }
        }
        // The reference rows, visited in one seeded order, a batch per step, wrapping around.
        var anchorOrder: [Int] = []
        if let anchor { var rng = SeededRNG(seed: config.seed, stream: "anchor"); anchorOrder = rng.permutation(anchor.images.count) }
        var reports: [EpochReport] = []
        var step = 0
        for epoch in 0..<config.epochs {
            let progress = PhaseProgress("epoch \(epoch + 1)/\(config.epochs)", total: stepsPerEpoch, style: progressStyle)
            let start = Date()
            var lossSum = 0.0, correct = 0, seen = 0
            var augRNG = SeededRNG(seed: config.seed, stream: "augment-\(epoch)")
            for (b, batch) in BatchIterator(data: data, indices: indices, batchSize: config.batchSize, shuffle: true,
                                            seed: config.seed, epoch: epoch).enumerated() {
                var x = batch.pixels
                if config.flip || config.shift > 0 { augment(&x, flip: config.flip, shift: config.shift, rng: &augRNG) }
                net.zeroGrad()
                let logits = net.forward(x, training: true)
                let (loss, grad) = Loss.crossEntropy(logits, labels: batch.labels, smoothing: config.labelSmoothing ?? 0)
                guard loss.isFinite else { throw TrainingError.diverged(epoch: epoch + 1, step: b + 1) }
                net.backwardParameters(grad)
                if let anchor {
                    let rows = (0..<config.batchSize).map { anchorOrder[(step * config.batchSize + $0) % anchorOrder.count] }
                    let (anchorLoss, dF) = anchor.loss(net.features(anchor.images.subset(rows).tensor(), training: true), rows: rows)
                    guard anchorLoss.isFinite else { throw TrainingError.diverged(epoch: epoch + 1, step: b + 1) }
                    net.backwardParameters(features: dF)
                }
                opt.update(params, lr: schedule.rate(at: step))
                step += 1
                lossSum += loss * Double(batch.count); seen += batch.count
                correct += zip(logits.argmaxRows(), batch.labels).filter { $0 == $1 }.count
                progress.update(b + 1, detail: String(format: "loss %.4f acc %.2f%%", lossSum / Double(seen), 100 * Double(correct) / Double(seen)))
            }
            let seconds = Date().timeIntervalSince(start)
            let evalAcc = try evaluation.map { try accuracy(net, data: $0.data, indices: $0.indices) }
            let report = EpochReport(epoch: epoch + 1, trainLoss: lossSum / Double(seen), trainAccuracy: Double(correct) / Double(seen),
                                     evalAccuracy: evalAcc, seconds: seconds, imagesPerSecond: Double(seen) / seconds)
            progress.finish(String(format: "loss %.4f train %.2f%%", report.trainLoss, 100 * report.trainAccuracy)
                            + (evalAcc.map { String(format: " eval %.2f%%", 100 * $0) } ?? "")
                            + String(format: " %.0f img/s", report.imagesPerSecond))
            reports.append(report)
            onEpoch(report)
        }
        // BN running statistics are left as training accumulated them, as PyTorch does.
        return reports
    }

    /// Random horizontal flip and zero-padded shift per image, in place.
    static func augment(_ x: inout Tensor, flip: Bool, shift: Int, rng: inout SeededRNG) {
        let n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
        let size = h * w * c
        var scratch = [Float](repeating: 0, count: size)
        x.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let f = flip && rng.int(below: 2) == 1
                let dy = shift > 0 ? rng.int(below: 2 * shift + 1) - shift : 0
                let dx = shift > 0 ? rng.int(below: 2 * shift + 1) - shift : 0
                if !f && dy == 0 && dx == 0 { continue }
                let img = p.baseAddress! + i * size
                for r in 0..<h { for col in 0..<w {
                    let sr = r - dy, sc0 = col - dx
                    let sc = f ? w - 1 - sc0 : sc0
                    for ch in 0..<c {
                        scratch[(r * w + col) * c + ch] = (sr >= 0 && sr < h && sc0 >= 0 && sc0 < w) ? img[(sr * w + sc) * c + ch] : 0
                    }
                } }
                scratch.withUnsafeBufferPointer { s in img.update(from: s.baseAddress!, count: size) }
            }
        }
    }

    /// Logits [count, classes] for the given rows, in evaluation mode.
    public static func logits(_ net: Network<Float>, data: LabeledImages, indices: [Int], batchSize: Int = 500) -> Tensor {
        var out = [Float]()
        out.reserveCapacity(indices.count * net.classes)
        for batch in BatchIterator(data: data, indices: indices, batchSize: batchSize) {
            out += net.forward(batch.pixels, training: false).storage
        }
        return Tensor(shape: [indices.count, net.classes], storage: out)
    }

    /// Top-1 accuracy on the given rows, in evaluation mode.
    public static func accuracy(_ net: Network<Float>, data: LabeledImages, indices: [Int]) throws -> Double {
        try validate(data, for: net)
        guard !indices.isEmpty else { return 0 }
        let preds = logits(net, data: data, indices: indices).argmaxRows()
        return Double(zip(preds, indices).filter { $0 == data.labels[$1] }.count) / Double(indices.count)
    }
}
