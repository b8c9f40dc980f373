import ArgumentParser
import Foundation
import LigandNN
import LigandNumerics
import LigandZoo

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training-step throughput (images/s) per architecture, and the fraction of sgemm peak the step and its convolutions reach.",
        discussion: """
        A step is forward, cross-entropy, backward and an SGD update on a synthetic batch. The step's GFLOP/s count \
        the FLOPs it performs: 3× the forward pass's multiply-adds (weight layers and attention products), less \
        the first weight layer's input gradient, which training skips. The convolutions' GFLOP/s count \
        2·rows·patch·out FLOPs forward and twice that backward (once for the first layer), im2col/col2im time included; \
        the peak is the best sgemm GFLOP/s at n = 1024 with the same threads.
        """)

    @Option(help: "Architectures, comma-separated (mlp = 784-512-512-10, vgg = the default VGG-style net, resnet20 = width 1, vit = patch 4 (50 tokens: the network of benchmarks/jax_bench.py), width 64, depth 4, 4 heads, MLP ×2).")
    var archs: String = "mlp,vgg,resnet20"
    @Option(parsing: .unconditional, help: "OpenBLAS thread counts, comma-separated.")
    var threads = PositiveIntList([1, 2])
    @Option(parsing: .unconditional, help: "Mini-batch size.")
    var batchSize = 128
    @Option(parsing: .unconditional, help: "Timed steps per configuration (after 3 warm-up steps).")
    var steps = 20
    @OptionGroup var output: BenchOutput

    func validate() throws {
        try CountOption.check(threads, "--threads", max: CountOption.maxThreads)
        try CountOption.check(batchSize, "--batch-size", min: 1, max: RecipeLimits.maxBatchSize)
        try CountOption.check(steps, "--steps", min: 1, max: 10_000)
    }

    func run() throws {
        try ThroughputBench.run(mode: .train, archs: archs, threads: threads, batchSizes: [batchSize], steps: steps, output: output)
    }
}

/// `ligand bench forward`: the evaluation-mode forward pass alone, as every fusion method runs it.
struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Forward-pass throughput (images/s, evaluation mode) per architecture, batch size and thread count, and the fraction of sgemm peak.",
        discussion: """
        The pass every fusion method spends its time in: features and statistics on calibration images, each \
        candidate scored, the test evaluation. GFLOP/s count the forward pass's FLOPs (weight layers and attention \
        products); the peak is the best sgemm GFLOP/s at n = 1024 with the same threads.
        """)

    @Option(help: "Architectures, comma-separated (as `bench train`: mlp = 784-512-512-10, vgg, resnet20 = width 1, vit = patch 4, width 64, depth 4, 4 heads).")
    var archs: String = "mlp,vgg,resnet20,vit"
    @Option(parsing: .unconditional, help: "OpenBLAS thread counts, comma-separated.")
    var threads = PositiveIntList([1, 2])
    @Option(parsing: .unconditional, help: "Batch sizes, comma-separated.")
    var batchSizes = PositiveIntList([128, 1024])
    @Option(parsing: .unconditional, help: "Timed passes per configuration (after 3 warm-up passes).")
    var steps = 20
    @OptionGroup var output: BenchOutput

    func validate() throws {
        try CountOption.check(threads, "--threads", max: CountOption.maxThreads)
        try CountOption.check(batchSizes, "--batch-sizes", max: RecipeLimits.maxBatchSize)
        try CountOption.check(steps, "--steps", min: 1, max: 10_000)
    }

    func run() throws {
        try ThroughputBench.run(mode: .forward, archs: archs, threads: threads, batchSizes: batchSizes.values, steps: steps, output: output)
    }
}

/// The table and JSON of `bench train` and `bench forward`, one row per (threads, architecture, batch size).
enum ThroughputBench {
    static func run(mode: TrainingBenchmark.Mode, archs: String, threads: PositiveIntList, batchSizes: [Int], steps: Int, output: BenchOutput) throws {
        let kinds = try archs.split(separator: ",").map { s -> Architecture.Kind in
            guard let k = Architecture.Kind(rawValue: String(s)) else { throw ValidationError("--archs: unknown architecture '\(s)'") }
            return k
        }
        let train = mode == .train
        var results: [BenchResult] = []
        print(pad("architecture", 26) + pad("threads", 9) + (train ? "" : pad("batch", 7)) + pad("img/s", 10) + pad(train ? "step/peak" : "pass/peak", 11)
              + (train ? pad("conv fwd", 10) + pad("conv bwd", 10) + pad("conv/peak", 11) + pad("conv time", 11) : ""))
        for t in threads.values {
            let peak = Benchmarks.benchmarkSgemm(size: 1024, threads: t, repeats: 3)
            for kind in kinds { for batchSize in batchSizes {
                let arch: Architecture
                switch kind { case .mlp: arch = .mlp(); case .vgg: arch = .vgg(); case .resnet20: arch = .resnet20(); case .vit: arch = .vit(patch: 4) }
                let r = try TrainingBenchmark.run(arch, batchSize: batchSize, steps: steps, threads: t, mode: mode)
                if !train {
                    print(pad(String(arch.description.prefix(25)), 26) + pad("\(t)", 9) + pad("\(batchSize)", 7) + pad(fixed(r.imagesPerSecond, 0), 10)
                          + pad(fixed(100 * r.modelGFLOPS / peak, 0) + "%", 11))
                    results.append(BenchResult(benchmark: "forward \(kind.rawValue) batch \(batchSize)", threads: t, repeats: steps,
                                               seconds: Double(batchSize) / r.imagesPerSecond, value: r.imagesPerSecond, unit: "images/s"))
                    results.append(BenchResult(benchmark: "pass \(kind.rawValue) batch \(batchSize)", threads: t, repeats: steps, seconds: 0,
                                               value: r.modelGFLOPS / peak, unit: "fraction of sgemm peak"))
                    continue
                }
                let convAll = r.convForwardGFLOPS.flatMap { f in r.convBackwardGFLOPS.map { b in (f, b) } }
                let frac = convAll.map { (f, b) in "\(fixed(100 * f / peak, 0))/\(fixed(100 * b / peak, 0))%" } ?? "-"
                print(pad(String(arch.description.prefix(25)), 26) + pad("\(t)", 9) + pad(fixed(r.imagesPerSecond, 0), 10) + pad(fixed(100 * r.modelGFLOPS / peak, 0) + "%", 11)
                      + pad(r.convForwardGFLOPS.map { fixed($0, 1) } ?? "-", 10) + pad(r.convBackwardGFLOPS.map { fixed($0, 1) } ?? "-", 10)
                      + pad(frac, 11) + pad(r.convTimeShare.map { fixed(100 * $0, 0) + "%" } ?? "-", 11))
                results.append(BenchResult(benchmark: "train \(kind.rawValue)", threads: t, repeats: steps,
                                           seconds: Double(batchSize) / r.imagesPerSecond, value: r.imagesPerSecond, unit: "images/s"))
                results.append(BenchResult(benchmark: "step \(kind.rawValue)", threads: t, repeats: steps, seconds: 0, value: r.modelGFLOPS / peak, unit: "fraction of sgemm peak"))
                if let f = r.convForwardGFLOPS, let b = r.convBackwardGFLOPS {
                    results.append(BenchResult(benchmark: "conv forward \(kind.rawValue)", threads: t, repeats: steps, seconds: 0, value: f / peak, unit: "fraction of sgemm peak"))
                    results.append(BenchResult(benchmark: "conv backward \(kind.rawValue)", threads: t, repeats: steps, seconds: 0, value: b / peak, unit: "fraction of sgemm peak"))
                }
            } }
            print("  (sgemm peak at n = 1024, \(t) thread\(t == 1 ? "" : "s"): \(fixed(peak, 1)) GFLOP/s)")
        }
        try output.emit(BenchReport(benchmark: mode.rawValue, method: "mean over timed \(train ? "steps" : "passes") after warm-up", host: localHostName(), results: results))
    }
}
