import Foundation
import LigandCollective
import LigandData
import LigandMerge
import LigandNN
import LigandNumerics

/// A same-task method (seeds, splits, model files): each rank maps its models into the reference's space; the
/// pipeline averages the aligned models with the rank-count-independent sum (MergeRun.mergeSameTask).
public protocol SameTaskAlignment: MergeMethod {
    static func align(_ c: AlignmentContext) throws -> AlignmentOutcome
}

/// What an alignment returns: the fused network, this rank's aligned models, what it chose and how candidates scored.
public struct AlignmentOutcome {
    public var fused: Network<Float>
    public var aligned: [StateDict]
    public var hyperparameters: [String: String] = [:]
    public var calibrationScores: [String: Double] = [:]
}

/// This rank's share of a same-task merge, handed to `SameTaskAlignment.align`.
public final class AlignmentContext {
    public let comm: Communicator
    public let shard: ModelShard
    public let names: [String]
    /// This rank's models (shard.local order), and their state dicts (BN folded when the handling folds).
    public let nets: [Network<Float>]
    public let states: [StateDict]
    public let reference: Int
    /// The reference network on the rank that holds it (nil elsewhere).
    public let referenceNet: Network<Float>?
    public let graph: MergeGraph
    let layout: FlatLayout
    public let frozen: Set<TensorRole.Kind>
    public let parameters: ParameterValues
    public let seed: UInt64
    public let calibration: LabeledImages
    public let batchSize: Int
    public let quiet: Bool
    public let log: (String) -> Void
    /// The plain average of the models (what `average` returns, and the baseline row).
    public let averaged: Network<Float>
    let fuseAligned: ([StateDict]) throws -> Network<Float>
    var timer: PhaseTimer

    init(comm: Communicator, shard: ModelShard, names: [String], nets: [Network<Float>], states: [StateDict], reference: Int,
         referenceNet: Network<Float>?, graph: MergeGraph, layout: FlatLayout, frozen: Set<TensorRole.Kind>, parameters: ParameterValues,
         seed: UInt64, calibration: LabeledImages, batchSize: Int, quiet: Bool, log: @escaping (String) -> Void, averaged: Network<Float>,
         fuse: @escaping ([StateDict]) throws -> Network<Float>, timer: PhaseTimer) {
        self.comm = comm; self.shard = shard; self.names = names; self.nets = nets; self.states = states; self.reference = reference
        self.referenceNet = referenceNet; self.graph = graph; self.layout = layout; self.frozen = frozen; self.parameters = parameters
        self.seed = seed; self.calibration = calibration; self.batchSize = batchSize; self.quiet = quiet; self.log = log
        self.averaged = averaged; self.fuseAligned = fuse; self.timer = timer
    }

    /// Averages the aligned models over every rank (and re-estimates or repairs BatchNorm as the handling says).
    public func fuse(_ aligned: [StateDict]) throws -> Network<Float> { try fuseAligned(aligned) }

    /// Charges the wall time since the last lap to `phase` of the report.
    public func lap(_ phase: String) { timer.lap(phase) }

    /// Correct predictions of `net` on the calibration split, rows spread over the ranks (exact integer sums).
    public func calibrationHits(_ net: Network<Float>) throws -> Double { try MergeRun.hits(net, calibration, comm: comm) }

    /// Each mapped model's own calibration accuracy before averaging, keyed "aligned <name>" (the reference left out):
    /// how far a map that is not exact (a ridge, a dense map through a LayerNorm) moves a model from itself. Each rank
    /// evaluates its own models on the whole split, so the figures do not depend on the rank count.
    public func alignedAccuracies(_ aligned: [StateDict]) throws -> [String: Double] {
        var acc = [Double](repeating: 0, count: names.count)
        try MergeRun.agreeing(comm, "evaluating the aligned models") {
            for (i, s) in zip(shard.local, aligned) where i != reference {
                let net = try Network<Float>.loaded(graph.architecture, s)
                acc[i] = try MergeRun.hits(net, calibration, comm: InProcessCommunicator.single()) / Double(max(calibration.count, 1))
            }
        }
        try comm.allreduce(&acc, op: .sum)
        return Dictionary(uniqueKeysWithValues: names.indices.filter { $0 != reference }.map { ("aligned \(names[$0])", acc[$0]) })
    }

    /// This rank's states with their LayerNorms folded (`foldLayerNorms`), by model index: folded once for a whole γ grid.
    private var layerNormFolded: [Int: StateDict] = [:]

    private func folded(_ i: Int, _ s: StateDict) throws -> StateDict {
        if let f = layerNormFolded[i] { return f }
        let f = try foldLayerNorms(s, graph: graph, model: names[i])
        layerNormFolded[i] = f
        return f
    }

    /// Each local model's state dict mapped by `maps(i)` (nil: unchanged); every rank agrees on failure.
    /// `denseStream`: every model's LayerNorms folded first (the reference's too), then a dense stream map allowed.
    public func applying(_ phase: String, denseStream: Bool = false, _ maps: (Int) throws -> [String: PointMap]?) throws -> [StateDict] {
        try MergeRun.agreeing(comm, phase) {
            try zip(shard.local, states).map { i, s -> StateDict in
                do {
                    let s = denseStream ? try folded(i, s) : s
                    guard let m = try maps(i) else { return s }
                    return try applyMaps(s, maps: m, graph: graph, model: names[i], frozen: frozen, denseStream: denseStream)
                } catch let e as PipelineError { throw e } catch { throw PipelineError("\(names[i]): \(error)") }
            }
        }
    }

    /// One calibration pass: the reference's activations broadcast per batch, paired with each local model's
    /// (algorithms.md, CCA Merge statistics). Keyed by model index; the reference has none.
    public func pairStatistics() throws -> [Int: ModelPairStatistics] {
        let local = shard.local
        var stats = [Int: ModelPairStatistics]()
        for i in local where i != reference { stats[i] = ModelPairStatistics(graph: graph) }
        let nCal = calibration.count
        let calIndices = Array(0..<nCal)
        let progress = PhaseProgress("statistics (calibration)", total: (nCal + batchSize - 1) / batchSize,
                                     style: (quiet || !comm.isRoot) ? .quiet : PhaseProgress.defaultStyle)
        var failure: String?
        let holder = shard.owner(of: reference)
        for (bi, lo) in stride(from: 0, to: nCal, by: batchSize).enumerated() {
            let x = MergeRun.batch(calibration, Array(calIndices[lo..<min(nCal, lo + batchSize)]))
            // Only the reference's activations travel: every rank pairs them with its own models'.
            let refActs = referenceNet.map { captureActivations($0, x, for: graph) }
            var buf: [Float] = refActs.map { $0.flatMap(\.activation.storage) } ?? []
            try comm.broadcast(&buf, root: holder)
            if failure != nil { continue }
            for i in local where i != reference {
                let mine = captureActivations(nets[i - local.lowerBound], x, for: graph)
                var offset = 0
                let theirs = mine.map { tap -> (point: String, activation: Tensor) in
                    let n = tap.activation.count
                    defer { offset += n }
                    return (tap.point, Tensor(shape: tap.activation.shape, storage: offset + n <= buf.count ? Array(buf[offset..<(offset + n)]) : []))
                }
                do {
                    guard offset == buf.count else { throw PipelineError("the reference's activations (\(buf.count) values) do not match \(names[i])'s (\(offset))") }
                    try stats[i]!.accumulate(reference: theirs, model: mine)
                } catch { failure = "\(names[i]): \(error)"; break }
            }
            progress.update(bi + 1)
        }
        progress.finish()
        try MergeRun.agreeing(comm, "statistics") { if let f = failure { throw PipelineError(f) } }
        return stats
    }
}
