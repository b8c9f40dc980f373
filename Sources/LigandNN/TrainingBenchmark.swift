import Foundation
import LigandNumerics

/// Training-step throughput on synthetic batches (the cost of a step does not depend on pixel values).
public enum TrainingBenchmark {
    public struct Result: Codable, Sendable {
        public let architecture: String
        public let batchSize: Int
        public let threads: Int
        public let steps: Int
        public let imagesPerSecond: Double
        /// Achieved GFLOP/s inside the convolutions (im2col/col2im included), nil for an MLP.
        public let convForwardGFLOPS: Double?
        public let convBackwardGFLOPS: Double?
        /// Share of a step's time spent in convolutions.
        public let convTimeShare: Double?
        /// The whole step's GFLOP/s: the FLOPs it performs (`Network.trainingFLOPs`, or `forwardFLOPs` for the forward pass).
        public let modelGFLOPS: Double
    }

    /// What a timed step is: a training step (forward, loss, backward, SGD update) or an evaluation-mode forward pass,
    /// the pass every fusion method spends its time in (features, statistics, candidates scored on calibration).
    public enum Mode: String, Sendable { case train, forward }

    public static func run(_ arch: Architecture, batchSize: Int = 128, steps: Int = 20, warmup: Int = 3, threads: Int, mode: Mode = .train) throws -> Result {
        _ = BLAS.configured
        let saved = Parallel.workers
        Parallel.setWorkers(threads)
        defer { Parallel.workers = saved; ConvProfiler.enabled = false }
        let net = try Network<Float>(arch, seed: 1)
        var rng = SeededRNG(seed: 2)
        let x = Tensor.randomUniform([batchSize] + arch.input, lo: 0, hi: 1, rng: &rng)
        let labels = (0..<batchSize).map { _ in rng.int(below: arch.classes) }
        let opt = Optimizer<Float>(.sgd, momentum: 0.9, nesterov: true, weightDecay: 5e-4)
        let params = net.parameters
        func step() {
            if mode == .forward { _ = net.forward(x, training: false); return }
            net.zeroGrad()
            let logits = net.forward(x, training: true)
            net.backwardParameters(Loss.crossEntropy(logits, labels: labels).grad)
            opt.update(params, lr: 0.01)
        }
        for _ in 0..<warmup { step() }
        // Only the convolutional networks are profiled per convolution (a ViT's one patch projection is not worth a column).
        let conv = arch.kind == .vgg || arch.kind == .resnet20
        ConvProfiler.reset()
        ConvProfiler.enabled = conv
        let start = Date()
        for _ in 0..<steps { step() }
        let seconds = Date().timeIntervalSince(start)
        let f = ConvProfiler.forward, b = ConvProfiler.backward
        return Result(architecture: arch.description, batchSize: batchSize, threads: threads, steps: steps,
                      imagesPerSecond: Double(steps * batchSize) / seconds,
                      convForwardGFLOPS: conv ? f.flops / f.seconds / 1e9 : nil,
                      convBackwardGFLOPS: conv ? b.flops / b.seconds / 1e9 : nil,
                      convTimeShare: conv ? (f.seconds + b.seconds) / seconds : nil,
                      modelGFLOPS: (mode == .train ? net.trainingFLOPs : net.forwardFLOPs) * Double(steps * batchSize) / seconds / 1e9)
    }
}
