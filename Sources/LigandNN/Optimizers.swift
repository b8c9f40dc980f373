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
    private var m: [[S]] = [], v: [[S]] = []

    public init(_ kind: OptimizerKind, momentum: Double = 0.9, nesterov: Bool = false, weightDecay: Double = 0,
                beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) {
        self.kind = kind; self.momentum = momentum; self.nesterov = nesterov; self.weightDecay = weightDecay
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
    }

    @_specialize(exported: true, where S == Float)
    public func update(_ params: [Parameter<S>], lr: Double) {
        if m.isEmpty {
            m = params.map { [S](repeating: 0, count: $0.value.count) }
            if kind != .sgd { v = m }
        }
        precondition(m.count == params.count, "optimizer was created for \(m.count) parameters, got \(params.count)")
        step += 1
        let lrS = S(lr), wd = S(weightDecay), mu = S(momentum)
        let b1 = S(beta1), b2 = S(beta2), e = S(eps)
        let c1 = S(1 - pow(beta1, Double(step))), c2 = S(1 - pow(beta2, Double(step)))
        let kind = kind, nesterov = nesterov, span = 16_384
        for (i, p) in params.enumerated() {
            let decay = p.decays ? wd : 0
            p.value.withUnsafeMutableBufferPointer { pw in p.grad.withUnsafeBufferPointer { pg in m[i].withUnsafeMutableBufferPointer { pm in
                guard let w = pw.baseAddress, let g = pg.baseAddress, let mb = pm.baseAddress else { return }
                let count = pw.count
                // Every element updates on its own, so spans of them run in parallel with the same result.
                let update = { (vb: UnsafeMutablePointer<S>?) in
                    Parallel.forEach((count + span - 1) / span) { chunk in
                        let lo = chunk * span, hi = min(count, lo + span)
                        switch kind {
                        case .sgd:
                            for j in lo..<hi {
                                let gj = g[j] + decay * w[j]
                                mb[j] = mu * mb[j] + gj
                                w[j] -= lrS * (nesterov ? gj + mu * mb[j] : mb[j])
                            }
                        case .adam, .adamw:
                            let vb = vb!, coupled = kind == .adam
                            for j in lo..<hi {
                                let gj = coupled ? g[j] + decay * w[j] : g[j]
                                mb[j] = b1 * mb[j] + (1 - b1) * gj
                                vb[j] = b2 * vb[j] + (1 - b2) * gj * gj
                                let upd = (mb[j] / c1) / ((vb[j] / c2).squareRoot() + e)
                                w[j] -= lrS * (upd + (coupled ? 0 : decay * w[j]))
                            }
                        }
                    }
                }
                if kind == .sgd { update(nil) } else { v[i].withUnsafeMutableBufferPointer { update($0.baseAddress) } }
            } } }
        }
    }
}
