import LigandNumerics

/// Learning-rate schedule: linear warm-up, then constant, cosine or linear decay to `floor`·base.
public struct LRSchedule: Codable, Equatable, Sendable {
    public enum Decay: String, Codable, Sendable, CaseIterable { case constant, cosine, linear }
    public var base: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var decay: Decay
    public var floor: Double

    public init(base: Double, warmupSteps: Int = 0, totalSteps: Int, decay: Decay = .cosine, floor: Double = 0) {
        self.base = base; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.decay = decay; self.floor = floor
    }

    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return base * Double(step + 1) / Double(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let t = min(1, Double(step - warmupSteps) / Double(span))
        switch decay {
        case .constant: return base
        case .cosine: return base * (floor + (1 - floor) * 0.5 * (1 + _cos(Double.pi * t)))
        case .linear: return base * (floor + (1 - floor) * (1 - t))
        }
    }
}

import Foundation
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }

public enum OptimizerKind: String, Codable, Sendable, CaseIterable { case sgd, adam, adamw }

/// SGD (momentum, Nesterov, L2 weight decay), Adam (L2) and AdamW (decoupled decay), one state slot per parameter.
public final class Optimizer<S: FloatScalar> {
    public let kind: OptimizerKind
    public var momentum: Double, nesterov: Bool, weightDecay: Double
    public var beta1: Double, beta2: Double, eps: Double
    public private(set) var step = 0
    /// First and second moments per parameter; owned here (freed in deinit) so one loop can hold all of them.
    private var m: [UnsafeMutableBufferPointer<S>] = [], v: [UnsafeMutableBufferPointer<S>] = []

    deinit { (m + v).forEach { $0.deallocate() } }

    private static func zeroed(_ count: Int) -> UnsafeMutableBufferPointer<S> {
        let b = UnsafeMutableBufferPointer<S>.allocate(capacity: count)
        b.initialize(repeating: 0)
        return b
    }

    public init(_ kind: OptimizerKind, momentum: Double = 0.9, nesterov: Bool = false, weightDecay: Double = 0,
                beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        self.kind = kind; self.momentum = momentum; self.nesterov = nesterov; self.weightDecay = weightDecay
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
    }

    @_specialize(exported: true, where S == Float)
    public func update(_ params: [Parameter<S>], lr: Double) {
        if m.isEmpty {
            m = params.map { Self.zeroed($0.value.count) }
            if kind != .sgd { v = params.map { Self.zeroed($0.value.count) } }
        }
        precondition(m.count == params.count, "optimizer was created for \(m.count) parameters, got \(params.count)")
        step += 1
        let lrS = S(lr), wd = S(weightDecay), mu = S(momentum)
        let b1 = S(beta1), b2 = S(beta2), e = S(eps)
        let c1 = S(1 - pow(beta1, Double(step))), c2 = S(1 - pow(beta2, Double(step)))
        let kind = kind, nesterov = nesterov, span = 16_384
        // Every element updates on its own, so spans of them (across all parameters: one parallel loop per step)
        // run in parallel with the same result.
        var spans: [(parameter: Int, lo: Int, hi: Int)] = []
        for (i, p) in params.enumerated() {
            precondition(m[i].count == p.value.count, "\(p.name): optimizer state has \(m[i].count) values, the parameter \(p.value.count)")
            for lo in stride(from: 0, to: p.value.count, by: span) { spans.append((i, lo, min(p.value.count, lo + span))) }
        }
        // Each parameter's value and gradient stay in scope for the whole loop: withBuffers nests one closure per parameter.
        var slots: [Slot] = []
        withBuffers(params, from: 0, &slots) { slots in
            Parallel.forEach(spans.count) { s in
                let (i, lo, hi) = spans[s]
                guard let w = slots[i].w, let g = slots[i].g, let m = self.m[i].baseAddress else { return }
                let decay = params[i].decays ? wd : 0
                switch kind {
                case .sgd:
                    for j in lo..<hi {
                        let gj = g[j] + decay * w[j]
                        m[j] = mu * m[j] + gj
                        w[j] -= lrS * (nesterov ? gj + mu * m[j] : m[j])
                    }
                case .adam, .adamw:
                    let v = self.v[i].baseAddress!, coupled = kind == .adam
                    for j in lo..<hi {
                        let gj = coupled ? g[j] + decay * w[j] : g[j]
                        m[j] = b1 * m[j] + (1 - b1) * gj
                        v[j] = b2 * v[j] + (1 - b2) * gj * gj
                        let upd = (m[j] / c1) / ((v[j] / c2).squareRoot() + e)
                        w[j] -= lrS * (upd + (coupled ? 0 : decay * w[j]))
                    }
                }
            }
        }
    }

    private typealias Slot = (w: UnsafeMutablePointer<S>?, g: UnsafePointer<S>?)

    /// body(slots) with every parameter's value and gradient buffers in scope (slots[i] for params[i]).
    private func withBuffers(_ params: [Parameter<S>], from i: Int, _ slots: inout [Slot], _ body: ([Slot]) -> Void) {
        guard i < params.count else { body(slots); return }
        params[i].value.withUnsafeMutableBufferPointer { pw in params[i].grad.withUnsafeBufferPointer { pg in
            slots.append((pw.baseAddress, pg.baseAddress))
            withBuffers(params, from: i + 1, &slots, body)
        } }
    }
}
