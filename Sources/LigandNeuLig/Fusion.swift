import Foundation
import LigandCollective
import LigandFormats
import LigandNumerics

/// θ_fused = Σ_k β̄_k θ_k (NeuLig's merged parameters): each rank weights its own models, and the
/// rank-count-independent sum lands on every rank, a rank holding no model included.
public enum WeightedFusion {
    /// `localTensors[i]` is local model i's named tensors, in `layout`'s names and shapes (which every rank knows,
    /// so a rank without models receives the fused tensors too).
    public static func fuse(localTensors: [[(name: String, value: Tensor)]], coefficients: [Double], localModels: Range<Int>,
                            layout: [(name: String, shape: [Int])], comm: Communicator) throws -> [(name: String, value: Tensor)] {
        guard coefficients.allSatisfy({ $0.isFinite }) else { throw PortlandError.invalidInput("fusion coefficients must be finite, got \(coefficients)") }
        for (i, tensors) in localTensors.enumerated() {
            guard tensors.map({ $0.name }) == layout.map({ $0.name }), tensors.map({ $0.value.shape }) == layout.map({ $0.shape }) else {
                throw PortlandError.invalidInput("model \(localModels.lowerBound + i) has different tensor names or shapes than the fused model's layout")
            }
        }
        let contributions: [(index: Int, values: [Double])] = localTensors.enumerated().map { (i, tensors) -> (index: Int, values: [Double]) in
            let w = coefficients[localModels.lowerBound + i]
            var v: [Double] = []
            v.reserveCapacity(tensors.reduce(0) { $0 + $1.value.count })
            for t in tensors { for x in t.value.storage { v.append(w * Double(x)) } }
            return (localModels.lowerBound + i, v)
        }
        let sum = try deterministicSum(contributions: contributions, total: coefficients.count, comm: comm)
        var out: [(name: String, value: Tensor)] = []
        var o = 0
        for t in layout {
            let count = t.shape.reduce(1, *)
            guard o + count <= sum.count else { throw PortlandError.invalidInput("the fused sum holds \(sum.count) values, the layout needs more") }
            out.append((t.name, Tensor(shape: t.shape, storage: sum[o..<(o + count)].map { Float($0) })))
            o += count
        }
        return out
    }
}

/// Portland checkpoints: one file per rank (its W blocks and optimiser state), written atomically,
/// tagged with the configuration and the rank layout so a resume under another layout is refused.
public enum PortlandCheckpoint {
    public static func url(directory: URL, rank: Int, size: Int) -> URL {
        directory.appendingPathComponent("portland-rank\(rank)-of\(size).safetensors")
    }

    static func tag(_ p: Portland) -> String {
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        let config = String(decoding: (try? enc.encode(p.config)) ?? Data(), as: UTF8.self)
        return "\(config)|K=\(p.totalModels)|d=\(p.width)|models=\(p.localModels)|tasks=\(p.tasks.map { "\($0.name):\($0.count)" }.joined(separator: ","))"
    }

    public static func save(_ p: Portland, directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let s = p.state
        try SafeTensors.write([("state", .float64(s, shape: [s.count]))], metadata: ["ligand.portland": tag(p), "epoch": String(p.epoch)],
                              to: url(directory: directory, rank: p.comm.rank, size: p.comm.size))
    }

    /// Restores the latest checkpoint when every rank has one that matches; returns the epoch reached (0 when starting fresh).
    public static func resume(_ p: Portland, directory: URL) throws -> Int {
        let file = url(directory: directory, rank: p.comm.rank, size: p.comm.size)
        var epoch = -1.0
        var state: [Double] = []
        if FileManager.default.fileExists(atPath: file.path) {
            let f = try SafeTensorsFile(url: file)
            if f.metadata["ligand.portland"] == tag(p) {
                state = try f.doubles("state").values
                epoch = Double(state.count > 1 ? state[1] : -1)
            }
        }
        // Resume only if every rank holds the same epoch; otherwise all start over.
        var lowest = [epoch], highest = [epoch]
        try p.comm.allreduce(&highest, op: .max)
        lowest[0] = -lowest[0]
        try p.comm.allreduce(&lowest, op: .max)
        guard epoch >= 0, highest[0] == epoch, -lowest[0] == epoch else { return 0 }
        try p.restore(state)
        return p.epoch
    }
}
