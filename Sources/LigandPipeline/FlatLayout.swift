import LigandMerge
import LigandNumerics

/// The tensors of a state dict as one Float64 vector, in a fixed (state-dict) order.
struct FlatLayout {
    let names: [String]
    let shapes: [[Int]]
    let total: Int

    init(_ entries: [(name: String, value: Tensor)]) {
        names = entries.map(\.name); shapes = entries.map(\.value.shape)
        total = entries.reduce(0) { $0 + $1.value.count }
    }

    func flatten(_ d: StateDict) -> [Double] {
        var out = [Double](); out.reserveCapacity(total)
        for n in names { out += d[n]!.storage.map(Double.init) }
        return out
    }

    func floats(_ d: StateDict) -> [Float] { names.flatMap { d[$0]!.storage } }

    /// Each tensor with its offset in the flat vector, in order.
    var tensors: [FlatTensor] {
        var offset = 0
        return zip(names, shapes).map { name, shape in
            defer { offset += shape.reduce(1, *) }
            return FlatTensor(name: name, shape: shape, offset: offset)
        }
    }

    /// Each tensor's name and element count, in order.
    var entries: [(name: String, count: Int)] { zip(names, shapes).map { ($0, $1.reduce(1, *)) } }

    /// Float(v / divisor) per element (the division of `averageStateDicts`), split back into named tensors.
    func unflatten(_ v: [Double], divisor: Double = 1) -> StateDict {
        var out: StateDict = [:], o = 0
        for (n, s) in zip(names, shapes) {
            let c = s.reduce(1, *)
            out[n] = Tensor(shape: s, storage: (o..<(o + c)).map { Float(v[$0] / divisor) })
            o += c
        }
        return out
    }

    func unflatten(_ v: [Float]) -> StateDict {
        var out: StateDict = [:], o = 0
        for (n, s) in zip(names, shapes) {
            let c = s.reduce(1, *)
            out[n] = Tensor(shape: s, storage: Array(v[o..<(o + c)]))
            o += c
        }
        return out
    }
}
