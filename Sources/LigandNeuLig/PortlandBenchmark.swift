import Foundation
import LigandCollective
import LigandNumerics

/// Portland epochs on cached synthetic features: the cost NeuLig adds once features are cached.
public enum PortlandBenchmark {
    public struct Result: Codable, Sendable {
        public let models: Int, width: Int, samplesPerTask: Int, classes: Int, ranks: Int, epochs: Int
        public let seconds: Double
        public let stepsPerEpoch: Int
        /// Float64 values each rank contributes to cross-rank sums per step.
        public let valuesPerStep: Int
    }

    public static func run(models k: Int, width d: Int, samplesPerTask n: Int, classes c: Int = 10, epochs: Int,
                           ranks: Int, config base: PortlandConfig = PortlandConfig()) throws -> Result {
        var config = base
        config.epochs = epochs
        let out = try InProcessCommunicator.run(size: ranks) { comm -> (Double, Int, Int) in
            let local = ModelShard(total: k, comm: comm).local
            let tasks = (0..<k).map { t -> PortlandTask in
                var rng = SeededRNG(seed: 9, stream: "bench-task-\(t)")
                let head = (0..<(c * d)).map { _ in rng.normal() / Double(d).squareRoot() }
                let labels = (0..<n).map { _ in rng.int(below: c) }
                let feats = local.map { m -> [Float] in
                    var r = SeededRNG(seed: 9, stream: "bench-f-\(t)-\(m)")
                    return (0..<(n * d)).map { _ in Float(r.normal()) }
                }
                return PortlandTask(name: "t\(t)", headWeight: head, headBias: [Double](repeating: 0, count: c), labels: labels, features: feats)
            }
            let p = try Portland(comm: comm, totalModels: k, localModels: local, width: d, tasks: tasks,
                                 regularizer: (0..<k).map { Double($0) - Double(k - 1) / 2 }, config: config)
            let start = Date()
            for _ in 0..<epochs { try p.trainEpoch() }
            let seconds = Date().timeIntervalSince(start)
            return (seconds, p.step / max(1, epochs), p.floatsPerStep / max(1, p.step))
        }
        return Result(models: k, width: d, samplesPerTask: n, classes: c, ranks: ranks, epochs: epochs,
                      seconds: out.map(\.0).max() ?? 0, stepsPerEpoch: out[0].1, valuesPerStep: out[0].2)
    }
}
