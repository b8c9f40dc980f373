import LigandNumerics

/// One mini-batch: the gathered pixels [B, H, W, C], their labels, and their indices in the source set.
public struct Batch: Sendable {
    public let pixels: Tensor
    public let labels: [Int]
    public let indices: [Int]

    public var count: Int { indices.count }
}

/// One epoch of mini-batches over `indices` of a set; only each batch's rows are copied.
/// With `shuffle`, the order is a permutation drawn from `SeededRNG(seed:, stream: "epoch-<epoch>")`,
/// so every rank given the same seed and epoch sees the same batches.
public struct BatchIterator: Sequence, IteratorProtocol, Sendable {
    public let data: LabeledImages
    public let batchSize: Int
    public let dropLast: Bool
    public let epoch: Int
    /// The visiting order for this epoch.
    public let order: [Int]
    private var position = 0

    public init(data: LabeledImages, indices: [Int]? = nil, batchSize: Int, shuffle: Bool = false,
                seed: UInt64 = 0, epoch: Int = 0, dropLast: Bool = false) {
        precondition(batchSize > 0, "batch size must be positive, got \(batchSize)")
        let base = indices ?? Array(0..<data.count)
        for i in base { precondition(i >= 0 && i < data.count, "index \(i) outside 0..<\(data.count)") }
        if shuffle {
            var rng = SeededRNG(seed: seed, stream: "epoch-\(epoch)")
            order = rng.permutation(base.count).map { base[$0] }
        } else {
            order = base
        }
        self.data = data
        self.batchSize = batchSize
        self.dropLast = dropLast
        self.epoch = epoch
    }

    /// Batches this epoch yields in all.
    public var batchCount: Int {
        dropLast ? order.count / batchSize : (order.count + batchSize - 1) / batchSize
    }

    public mutating func next() -> Batch? {
        let remaining = order.count - position
        guard remaining > 0, !(dropLast && remaining < batchSize) else { return nil }
        let end = position + Swift.min(batchSize, remaining)
        let idx = Array(order[position..<end])
        position = end
        let pixels = Gather.rows(data.pixels, rowSize: data.sampleSize, indices: idx, limit: data.count)
        return Batch(pixels: Tensor(shape: [idx.count, data.height, data.width, data.channels], storage: pixels),
                     labels: idx.map { data.labels[$0] }, indices: idx)
    }
}
