import LigandNN
import LigandNumerics

/// A model's tensors by PyTorch state_dict name.
public typealias StateDict = [String: Tensor]

extension Network where S == Float {
    /// The state dict as a dictionary (parameters and BN running statistics).
    public func stateDictionary() -> StateDict {
        Dictionary(uniqueKeysWithValues: stateDict().map { ($0.name, $0.value) })
    }
}

/// How one state-dict tensor relates to the merge points: which point its axis 0 (output units) and its
/// axis 1 (input units of a Linear/Conv weight) belong to; nil for the network input and the head's output.
public struct TensorRole: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case linearWeight, convWeight, bias, bnWeight, bnBias, runningMean, runningVar
        /// A LayerNorm's γ and β, a transformer's class token and position embedding.
        case normWeight, normBias, embedding
    }
    public let name: String
    public let kind: Kind
    public let shape: [Int]
    public let outPoint: String?
    public let inPoint: String?
    /// Part of the classification head (frozen in the multi-task setting).
    public let isHead: Bool
    /// Axis 0 cut into equal segments, each on its point (a ViT's qkv: [qk, qk, v]); nil: `outPoint` covers axis 0.
    public var outSegments: [String]? = nil

    public var isRunningStatistic: Bool { kind == .runningMean || kind == .runningVar }
    /// The axis of `outPoint`'s units: 0, or the last for an embedding ([1, T, d]).
    public var unitAxis: Int { kind == .embedding ? shape.count - 1 : 0 }
    public var isWeightMatrix: Bool { kind == .linearWeight || kind == .convWeight }
}

/// The merge graph of an architecture: its merge points and the role of every state-dict tensor.
public struct MergeGraph: Sendable {
    public let architecture: Architecture
    public let points: [MergePoint]
    /// Points where only a permutation keeps the function, with why: a ViT's residual stream passes through LayerNorms,
    /// which normalise over its units (a permutation commutes with that, a dense map does not).
    public let permutationOnly: [String: String]
    /// Taps whose activations belong to another point (`Network.tapPoints`).
    public let tapPoints: [String: String]
    /// A ViT's attention points (heads matched as wholes), in block order.
    public let attention: [AttentionPoints]
    /// Each LayerNorm's reader, the linear layer its output alone feeds (`Network.layerNormReaders`).
    public let layerNormReaders: [String: String]
    /// In state_dict order.
    public let tensors: [TensorRole]
    private let index: [String: Int]

    public init(_ architecture: Architecture) throws {
        let net: Network<Float>
        do { net = try Network<Float>(architecture, seed: 0) } catch { throw MergeError.invalidInput("\(error)") }
        self.architecture = architecture
        points = net.mergePoints
        tapPoints = net.tapPoints
        attention = net.attention
        layerNormReaders = net.layerNormReaders
        let qkvSegments = Dictionary(uniqueKeysWithValues: net.attention.map { ($0.qkv, [$0.qk, $0.qk, $0.v]) })
        let pointChannels = Dictionary(uniqueKeysWithValues: net.mergePoints.map { ($0.name, $0.channels) })
        let stream = Network<Float>.vitStream
        var only: [String: String] = [:]
        if architecture.kind == .vit {
            only[stream] = "the residual stream passes through LayerNorms, which a permutation of its units commutes with and a dense map does not"
        }
        for a in net.attention {
            only[a.qk] = "a head's scores q·k are kept by permuting its query and key units alike, not by a dense map"
            only[a.v] = "a head's value units are matched with its query and key units as one head"
        }
        permutationOnly = only
        let rules = Self.pointRules(net.layerMap)
        let headPrefix = String(net.head.weight.name.dropLast(".weight".count)) + "."
        let state = net.stateDict()
        let names = Set(state.map(\.name))
        let norms = Set(net.layerNorms.map(\.name))
        var roles: [TensorRole] = []
        for (name, value) in state {
            let kind: TensorRole.Kind
            let rule: (out: String?, in: String?)
            if !name.contains("."), value.rank == 3 {
                // cls_token [1, 1, d], pos_embed [1, T, d]: residual-stream vectors, the unit axis last.
                kind = .embedding; rule = (stream, nil)
            } else {
                guard let dot = name.lastIndex(of: ".") else { throw MergeError.invalidInput("merge graph: tensor '\(name)' has no layer prefix") }
                let layer = String(name[..<dot]), field = String(name[name.index(after: dot)...])
                let isBN = names.contains(layer + ".running_mean"), isNorm = norms.contains(layer)
                switch (field, value.rank, isBN, isNorm) {
                case ("weight", 2, false, false): kind = .linearWeight
                case ("weight", 4, false, false): kind = .convWeight
                case ("weight", 1, true, false): kind = .bnWeight
                case ("bias", 1, true, false): kind = .bnBias
                case ("bias", 1, false, false): kind = .bias
                case ("running_mean", 1, true, false): kind = .runningMean
                case ("running_var", 1, true, false): kind = .runningVar
                case ("weight", 1, false, true): kind = .normWeight
                case ("bias", 1, false, true): kind = .normBias
                default: throw MergeError.invalidInput("merge graph: cannot classify tensor '\(name)' of shape \(value.shape)")
                }
                // Every LayerNorm of a ViT normalises the residual stream (its γ and β are stream vectors).
                if isNorm { rule = (architecture.kind == .vit ? stream : nil, nil) } else {
                    guard let r = rules[layer] else { throw MergeError.invalidInput("merge graph: no rule for layer '\(layer)'") }
                    rule = r
                }
            }
            var role = TensorRole(name: name, kind: kind, shape: value.shape, outPoint: rule.out,
                                  inPoint: (kind == .linearWeight || kind == .convWeight) ? rule.in : nil,
                                  isHead: name.hasPrefix(headPrefix))
            if let dot = name.lastIndex(of: "."), let segments = qkvSegments[String(name[..<dot])] {
                role.outSegments = segments
                let each = value.shape[0] / segments.count
                if let p = segments.first(where: { each * segments.count != value.shape[0] || pointChannels[$0] != each }) {
                    throw MergeError.invalidInput("merge graph: '\(name)' axis 0 (\(value.shape[0])) is not \(segments.count) segments of merge point '\(p)'")
                }
            }
            // The rules and the network must agree on every axis size.
            if let p = role.outPoint, pointChannels[p] != value.shape[role.unitAxis] {
                throw MergeError.invalidInput("merge graph: '\(name)' axis \(role.unitAxis) (\(value.shape[role.unitAxis])) does not match merge point '\(p)'")
            }
            if let p = role.inPoint, points.first(where: { $0.name == p })?.channels != value.shape[1] {
                throw MergeError.invalidInput("merge graph: '\(name)' axis 1 (\(value.shape[1])) does not match merge point '\(p)'")
            }
            roles.append(role)
        }
        tensors = roles
        index = Dictionary(uniqueKeysWithValues: roles.enumerated().map { ($1.name, $0) })
    }

    /// Output and input merge point of every layer and its BatchNorm (by state-dict prefix), read off the layer map.
    static func pointRules(_ map: LayerMap) -> [String: (out: String?, in: String?)] {
        var r: [String: (out: String?, in: String?)] = [:]
        for l in map.body + [map.head] {
            r[l.name] = (l.outPoint, l.inPoint)
            if let bn = l.batchNorm { r[bn] = (l.outPoint, nil) }
        }
        return r
    }

    public func role(named name: String) -> TensorRole? { index[name].map { tensors[$0] } }

    /// The merge point a tap's activations belong to: itself, the point it is an alias of, or nil (no statistic uses it).
    public func point(ofTap tap: String) -> String? {
        if let p = tapPoints[tap] { return p }
        return points.contains { $0.name == tap } ? tap : nil
    }

    public func channels(of point: String) -> Int? { points.first { $0.name == point }?.channels }

    /// The attention block a point belongs to (its `qk` or `v`), nil for other points.
    public func attentionGroup(of point: String) -> AttentionPoints? { attention.first { $0.qk == point || $0.v == point } }

    /// Every tensor with an axis on `point`, with that axis (0 = output units, 1 = input units); qkv's segmented rows
    /// are left out (weight matching keeps the attention points as they are).
    public func touching(_ point: String) -> [(role: TensorRole, axis: Int)] {
        var out: [(TensorRole, Int)] = []
        for t in tensors {
            if t.outPoint == point { out.append((t, 0)) }
            if t.inPoint == point { out.append((t, 1)) }
        }
        return out
    }

    /// Refuses a state dict that is not exactly this architecture's: missing, extra, mis-shaped or non-finite tensors.
    public func validate(_ state: StateDict, model: String) throws {
        for t in tensors {
            guard let v = state[t.name] else { throw MergeError.missingTensor(model: model, tensor: t.name) }
            guard v.shape == t.shape else { throw MergeError.shapeMismatch(model: model, tensor: t.name, expected: t.shape, found: v.shape) }
            if let i = v.firstNonFinite { throw MergeError.nonFiniteTensor(model: model, tensor: t.name, index: i) }
        }
        if let extra = state.keys.sorted().first(where: { index[$0] == nil }) {
            throw MergeError.unexpectedTensor(model: model, tensor: extra)
        }
    }
}

/// Refuses a set of models whose architectures differ, naming the first that does.
public func requireSameArchitecture(_ architectures: [Architecture], names: [String]? = nil) throws {
    guard let first = architectures.first else { return }
    for (i, a) in architectures.enumerated() where a != first {
        let name = names?[i] ?? "model \(i)", ref = names?[0] ?? "model 0"
        throw MergeError.architectureMismatch("\(name) is \(a) but \(ref) is \(first)")
    }
}
