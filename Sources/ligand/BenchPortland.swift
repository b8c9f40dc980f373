import ArgumentParser
import Foundation
import LigandNeuLig

struct BenchPortland: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portland",
        abstract: "Portland (NeuLig) training time on cached synthetic features, with the in-process communicator.",
        discussion: "One task per model, each with --samples calibration samples; tasks are visited round-robin with batch 128 (the paper's protocol).")
    @Option(help: "Collaborating models K (one task per model).")
    var models = 5
    @Option(help: "Feature width d.")
    var width = 512
    @Option(help: "Calibration samples per task.")
    var samples = 1000
    @Option(help: "Portland epochs.")
    var epochs = 1000
    @Option(help: "In-process ranks the models are spread over.")
    var ranks = 1
    @OptionGroup var output: BenchOutput

    func run() throws {
        let r = try PortlandBenchmark.run(models: models, width: width, samplesPerTask: samples, epochs: epochs, ranks: ranks)
        print("Portland: K=\(r.models) d=\(r.width) \(r.samplesPerTask) samples/task, \(r.ranks) rank(s): \(r.epochs) epochs "
              + "(\(r.stepsPerEpoch) steps each) in \(fixed(r.seconds, 2)) s; \(r.valuesPerStep) Float64 values summed across models per step")
        try output.emit(BenchReport(benchmark: "portland", method: "wall time of all epochs, slowest rank", host: localHostName(), results: [
            BenchResult(benchmark: "portland", ranks: r.ranks, repeats: r.epochs, seconds: r.seconds, value: r.seconds, unit: "s"),
        ]))
    }
}
