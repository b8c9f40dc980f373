import LigandNumerics

/// Losses over a batch of logits [B, C]; each returns the batch-mean loss (Float64) and dL/dlogits.
public enum Loss {
    /// Row-wise softmax in the logits' precision, normalised in Float64.
    @_specialize(exported: true, where S == Float)
    @_specialize(exported: true, where S == Double)
    public static func softmax<S: FloatScalar>(_ logits: TensorOf<S>) -> TensorOf<S> {
        precondition(logits.rank == 2, "softmax expects [batch, classes], got \(logits.shape)")
        let b = logits.shape[0], c = logits.shape[1]
        var p = logits
        p.withUnsafeMutableBufferPointer { q in
            for r in 0..<b {
                let row = q.baseAddress! + r * c
                var m = -S.infinity
                for j in 0..<c where row[j] > m { m = row[j] }
                var z = 0.0
                for j in 0..<c { row[j] = S.exp(row[j] - m); z += Double(row[j]) }
                let inv = 1 / z
                for j in 0..<c { row[j] = S(Double(row[j]) * inv) }
            }
        }
        return p
    }

    /// log-softmax per row, in Float64.
    static func logSoftmaxRow<S: FloatScalar>(_ row: UnsafePointer<S>, _ c: Int) -> [Double] {
        var m = -Double.infinity
        for j in 0..<c { m = max(m, Double(row[j])) }
        var z = 0.0
        for j in 0..<c { z += _exp(Double(row[j]) - m) }
        let lz = m + _log(z)
        return (0..<c).map { Double(row[$0]) - lz }
    }

    /// Mean cross-entropy against integer labels, optionally label-smoothed (Szegedy et al. 2016, §7):
    /// target q_j = (1 − ε)·[j = y] + ε/C, loss = −Σ_j q_j log p_j, dL/dz_j = (p_j − q_j) / B.
    @_specialize(exported: true, where S == Float)
    @_specialize(exported: true, where S == Double)
    public static func crossEntropy<S: FloatScalar>(_ logits: TensorOf<S>, labels: [Int], smoothing: Double = 0) -> (loss: Double, grad: TensorOf<S>) {
        let b = logits.shape[0], c = logits.shape[1]
        precondition(labels.count == b, "cross-entropy: \(labels.count) labels for \(b) rows")
        precondition(smoothing >= 0 && smoothing < 1, "label smoothing must be in [0, 1), got \(smoothing)")
        var grad = TensorOf<S>(zeros: logits.shape)
        var loss = 0.0
        let off = smoothing / Double(c), on = 1 - smoothing + off
        logits.withUnsafeBufferPointer { l in grad.withUnsafeMutableBufferPointer { g in
            for r in 0..<b {
                let ls = logSoftmaxRow(l.baseAddress! + r * c, c)
                precondition(labels[r] >= 0 && labels[r] < c, "label \(labels[r]) out of range 0..<\(c)")
                for j in 0..<c {
                    let q = j == labels[r] ? on : off   // without smoothing 1 and 0: the same bits as −log p_y
                    loss -= q * ls[j]
                    g[r * c + j] = S((_exp(ls[j]) - q) / Double(b))
                }
            }
        } }
        return (loss / Double(b), grad)
    }

    /// Mean Shannon entropy of softmax(logits): NeuLig's label-free `semi` objective.
    @_specialize(exported: true, where S == Float)
    @_specialize(exported: true, where S == Double)
    public static func entropy<S: FloatScalar>(_ logits: TensorOf<S>) -> (loss: Double, grad: TensorOf<S>) {
        let b = logits.shape[0], c = logits.shape[1]
        var grad = TensorOf<S>(zeros: logits.shape)
        var loss = 0.0
        logits.withUnsafeBufferPointer { l in grad.withUnsafeMutableBufferPointer { g in
            for r in 0..<b {
                let ls = logSoftmaxRow(l.baseAddress! + r * c, c)
                let p = ls.map { _exp($0) }
                var h = 0.0
                for j in 0..<c { h -= p[j] * ls[j] }
                loss += h
                // dH/dz_j = -p_j (log p_j + H)
                for j in 0..<c { g[r * c + j] = S(-p[j] * (ls[j] + h) / Double(b)) }
            }
        } }
        return (loss / Double(b), grad)
    }

    /// Mean KL(target ‖ softmax(logits)) with target rows that are probability vectors.
    @_specialize(exported: true, where S == Float)
    @_specialize(exported: true, where S == Double)
    public static func klDivergence<S: FloatScalar>(target: TensorOf<S>, logits: TensorOf<S>) -> (loss: Double, grad: TensorOf<S>) {
        precondition(target.shape == logits.shape, "KL: target \(target.shape) vs logits \(logits.shape)")
        let b = logits.shape[0], c = logits.shape[1]
        var grad = TensorOf<S>(zeros: logits.shape)
        var loss = 0.0
        logits.withUnsafeBufferPointer { l in target.withUnsafeBufferPointer { t in grad.withUnsafeMutableBufferPointer { g in
            for r in 0..<b {
                let ls = logSoftmaxRow(l.baseAddress! + r * c, c)
                for j in 0..<c {
                    let q = Double(t[r * c + j])
                    if q > 0 { loss += q * (_log(q) - ls[j]) }
                    g[r * c + j] = S((_exp(ls[j]) - q) / Double(b))
                }
            }
        } } }
        return (loss / Double(b), grad)
    }
}

import Foundation
@inline(__always) func _exp(_ x: Double) -> Double { Foundation.exp(x) }
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
