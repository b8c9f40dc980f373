import LigandCollective
import LigandNN
import LigandNumerics

/// Activation sums of one merge point between the reference model (x, C₁ units) and model k (y, C_k units):
/// n, Σx, Σy, Σxxᵀ, Σyyᵀ, Σxyᵀ in Float64. Every field is a plain sum, so statistics from disjoint data
/// (other batches, other ranks) combine by addition: `merged(with:)` here, an all-reduce of `packed` across ranks.
public struct PairStatistics: Equatable, Sendable {
    public let point: String
    public let c1: Int, ck: Int
    public var count: Double
    public var sumX: [Double], sumY: [Double]
    /// Row-major C₁×C₁, C_k×C_k and C₁×C_k.
    public var sumXX: [Double], sumYY: [Double], sumXY: [Double]

    public init(point: String, c1: Int, ck: Int) {
        self.point = point; self.c1 = c1; self.ck = ck; count = 0
        sumX = .init(repeating: 0, count: c1); sumY = .init(repeating: 0, count: ck)
        sumXX = .init(repeating: 0, count: c1 * c1); sumYY = .init(repeating: 0, count: ck * ck); sumXY = .init(repeating: 0, count: c1 * ck)
    }

    /// Adds a batch: x [samples, C₁] from the reference and y [samples, C_k] from model k, row for row the same samples.
    public mutating func accumulate(x: Tensor, y: Tensor) throws {
        guard x.rank == 2, y.rank == 2, x.shape[1] == c1, y.shape[1] == ck, x.shape[0] == y.shape[0] else {
            throw MergeError.degenerateStatistics(point: point, reason: "activations \(x.shape) and \(y.shape) do not fit [samples, \(c1)] and [samples, \(ck)]")
        }
        let n = x.shape[0]
        if n == 0 { return }
        let xd = x.storage.map(Double.init), yd = y.storage.map(Double.init)
        Self.addColumnSums(xd, rows: n, cols: c1, into: &sumX)
        Self.addColumnSums(yd, rows: n, cols: ck, into: &sumY)
        Self.addCrossProducts(xd, xd, rows: n, c1, c1, into: &sumXX)
        Self.addCrossProducts(yd, yd, rows: n, ck, ck, into: &sumYY)
        Self.addCrossProducts(xd, yd, rows: n, c1, ck, into: &sumXY)
        count += Double(n)
    }

    static func addColumnSums(_ a: [Double], rows: Int, cols: Int, into s: inout [Double]) {
        for r in 0..<rows { for j in 0..<cols { s[j] += a[r * cols + j] } }
    }

    /// s += aᵀ·b for a [rows, ca], b [rows, cb].
    static func addCrossProducts(_ a: [Double], _ b: [Double], rows: Int, _ ca: Int, _ cb: Int, into s: inout [Double]) {
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in s.withUnsafeMutableBufferPointer { ps in
            BLAS.dgemm(transA: true, m: ca, n: cb, k: rows, a: pa.baseAddress!, lda: ca, b: pb.baseAddress!, ldb: cb,
                       beta: 1, c: ps.baseAddress!, ldc: cb)
        } } }
    }

    /// Number of Doubles in `packed`.
    public var packedCount: Int { 1 + c1 + ck + c1 * c1 + ck * ck + c1 * ck }

    /// [n, Σx, Σy, Σxx, Σyy, Σxy]: sums only, so an element-wise all-reduce of packed vectors is their merge.
    public var packed: [Double] { [count] + sumX + sumY + sumXX + sumYY + sumXY }

    /// Statistics of this point's sizes from a packed vector (e.g. after an all-reduce).
    public func unpacked(_ v: ArraySlice<Double>) throws -> PairStatistics {
        guard v.count == packedCount else {
            throw MergeError.degenerateStatistics(point: point, reason: "packed statistics hold \(v.count) values, expected \(packedCount)")
        }
        var s = PairStatistics(point: point, c1: c1, ck: ck)
        var i = v.startIndex
        func take(_ n: Int) -> [Double] { defer { i += n }; return Array(v[i..<(i + n)]) }
        s.count = take(1)[0]
        s.sumX = take(c1); s.sumY = take(ck); s.sumXX = take(c1 * c1); s.sumYY = take(ck * ck); s.sumXY = take(c1 * ck)
        return s
    }

    /// The statistics of the union of both sample sets.
    public func merged(with o: PairStatistics) throws -> PairStatistics {
        guard o.point == point, o.c1 == c1, o.ck == ck else {
            throw MergeError.degenerateStatistics(point: point, reason: "cannot merge with statistics of '\(o.point)' (\(o.c1)×\(o.ck) units, these are \(c1)×\(ck))")
        }
        return try unpacked(ArraySlice(zip(packed, o.packed).map { $0 + $1 }))
    }

    /// Refuses statistics with no samples or a NaN/infinity, naming the field.
    public func validate() throws {
        guard count.isFinite else { throw MergeError.nonFiniteStatistics(point: point, field: "count") }
        guard count >= 2 else { throw MergeError.degenerateStatistics(point: point, reason: "needs at least 2 samples, has \(count)") }
        for (field, v) in [("Σx", sumX), ("Σy", sumY), ("Σxxᵀ", sumXX), ("Σyyᵀ", sumYY), ("Σxyᵀ", sumXY)] where v.contains(where: { !$0.isFinite }) {
            throw MergeError.nonFiniteStatistics(point: point, field: field)
        }
    }

    public var meanX: [Double] { sumX.map { $0 / count } }
    public var meanY: [Double] { sumY.map { $0 / count } }

    /// Centred covariance (normalised by n) of Σ_ab from the raw sums.
    private func centred(_ s: [Double], _ ma: [Double], _ mb: [Double]) -> Matrix {
        var m = Matrix(rows: ma.count, cols: mb.count, data: s)
        for i in 0..<ma.count { for j in 0..<mb.count { m.data[i * mb.count + j] = s[i * mb.count + j] / count - ma[i] * mb[j] } }
        return m
    }
    /// Σ_11: covariance of the reference's units (normalised by n).
    public var covarianceXX: Matrix { centred(sumXX, meanX, meanX).symmetrized }
    /// Σ_kk: covariance of model k's units.
    public var covarianceYY: Matrix { centred(sumYY, meanY, meanY).symmetrized }
    /// Σ_1k: cross-covariance, rows reference units, columns model-k units.
    public var covarianceXY: Matrix { centred(sumXY, meanX, meanY) }
}

/// The activations of every tap that feeds a merge point of `graph`, under that point's name, in call order (a ResNet
/// stream appears once per block, a ViT's residual stream as "stream" after every block); other taps are dropped.
/// A ViT block's query and key rows are computed from its qkv input and pooled as samples of the `qk` point.
public func captureActivations(_ net: Network<Float>, _ x: Tensor, for graph: MergeGraph) -> [(point: String, activation: Tensor)] {
    var out: [(String, Tensor)] = []
    let qkvInputs = Dictionary(uniqueKeysWithValues: graph.attention.map { ($0.input, $0) })
    let parameters = qkvInputs.isEmpty ? [:] : Dictionary(uniqueKeysWithValues: net.parameters.map { ($0.name, $0.value) })
    _ = net.features(x, training: false) { name, a in
        if let p = graph.point(ofTap: name) { out.append((p, a)) }
        if let att = qkvInputs[name], let w = parameters[att.qkv + ".weight"] {
            out.append((att.qk, queriesAndKeys(a, weight: w, bias: parameters[att.qkv + ".bias"], width: att.width)))
        }
    }
    return out
}

/// [q; k] rows [2R, d] of x [R, d]: q = x·W_qᵀ + b_q and k = x·W_kᵀ + b_k, W_q and W_k the first 2d rows of qkv's weight.
func queriesAndKeys(_ x: Tensor, weight w: Tensor, bias b: Tensor?, width d: Int) -> Tensor {
    let r = x.shape[0]
    var y = [Float](repeating: 0, count: 2 * r * d)
    for part in 0..<2 {
        let wq = Array(w.storage[(part * d * d)..<((part + 1) * d * d)])
        let bq = b.map { Array($0.storage[(part * d)..<((part + 1) * d)]) }
        // y_part [R, d] = x [R, d] · W_partᵀ
        x.storage.withUnsafeBufferPointer { px in wq.withUnsafeBufferPointer { pw in y.withUnsafeMutableBufferPointer { py in
            Float.gemm(transA: false, transB: true, m: r, n: d, k: d, alpha: 1, a: px.baseAddress!, lda: d, b: pw.baseAddress!, ldb: d,
                       beta: 0, c: py.baseAddress! + part * r * d, ldc: d)
        } } }
        if let bq { for i in 0..<r { for j in 0..<d { y[part * r * d + i * d + j] += bq[j] } } }
    }
    return Tensor(shape: [2 * r, d], storage: y)
}

/// `PairStatistics` for every merge point of an architecture, in `graph.points` order.
public struct ModelPairStatistics: Equatable, Sendable {
    public private(set) var points: [PairStatistics]
    let graph: MergeGraph

    public init(graph: MergeGraph) {
        self.graph = graph
        points = graph.points.map { PairStatistics(point: $0.name, c1: $0.channels, ck: $0.channels) }
    }

    public static func == (a: ModelPairStatistics, b: ModelPairStatistics) -> Bool { a.points == b.points }

    public subscript(point: String) -> PairStatistics? { points.first { $0.point == point } }

    /// Adds one batch given both models' captured activations (same input, same order of taps).
    public mutating func accumulate(reference: [(point: String, activation: Tensor)], model: [(point: String, activation: Tensor)]) throws {
        guard reference.count == model.count else {
            throw MergeError.architectureMismatch("the reference tapped \(reference.count) activations, the model \(model.count)")
        }
        let slot = Dictionary(uniqueKeysWithValues: points.enumerated().map { ($1.point, $0) })
        for (r, m) in zip(reference, model) {
            guard r.point == m.point else { throw MergeError.architectureMismatch("the reference tapped '\(r.point)' where the model tapped '\(m.point)'") }
            guard let i = slot[r.point] else { throw MergeError.unknownMergePoint(r.point) }
            try points[i].accumulate(x: r.activation, y: m.activation)
        }
    }

    /// Runs both networks on a batch and adds their activations.
    public mutating func accumulate(reference: Network<Float>, model: Network<Float>, batch: Tensor) throws {
        try requireSameArchitecture([reference.architecture, model.architecture], names: ["the reference", "the model"])
        try accumulate(reference: captureActivations(reference, batch, for: graph), model: captureActivations(model, batch, for: graph))
    }

    public var packedCount: Int { points.reduce(0) { $0 + $1.packedCount } }
    public var packed: [Double] { points.flatMap(\.packed) }

    public func unpacked(_ v: [Double]) throws -> ModelPairStatistics {
        guard v.count == packedCount else {
            throw MergeError.invalidInput("packed model statistics hold \(v.count) values, expected \(packedCount)")
        }
        var s = self, offset = 0
        for i in points.indices {
            s.points[i] = try points[i].unpacked(v[offset..<(offset + points[i].packedCount)])
            offset += points[i].packedCount
        }
        return s
    }

    public func merged(with o: ModelPairStatistics) throws -> ModelPairStatistics {
        guard o.points.map(\.point) == points.map(\.point) else { throw MergeError.architectureMismatch("statistics of different merge points") }
        var s = self
        for i in points.indices { s.points[i] = try points[i].merged(with: o.points[i]) }
        return s
    }

    /// Sums the statistics of every rank (each holding its share of the calibration samples).
    public func allreduced(_ comm: Communicator) throws -> ModelPairStatistics {
        var buf = packed
        try comm.allreduce(&buf, op: .sum)
        return try unpacked(buf)
    }
}
