import Foundation
import LigandZoo

/// A method parameter's value, typed by its declaration.
public enum ParameterValue: Equatable, Sendable, CustomStringConvertible {
    case numbers([Double])
    case integer(Int)
    /// A choice or a rule (e.g. `reference: best`).
    case text(String)
    case flag(Bool)

    public var description: String {
        switch self {
        case .numbers(let v): return v.map { MethodParameter.format($0) }.joined(separator: ",")
        case .integer(let n): return "\(n)"
        case .text(let s): return s
        case .flag(let b): return b ? "true" : "false"
        }
    }
}

/// A value a method parameter refuses: which parameter, what was given, what it must be.
public struct ParameterError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let parameter: String
    public let message: String
    public var description: String { "\(parameter): \(message)" }
    public var errorDescription: String? { description }
}

/// One hyper-parameter of a merge method, declared ONCE (mergekit's `ConfigParameterDef`): its recipe key (the CLI flag
/// is the key with '-' for '_'), type, default, help and check. `ligand merge`, `ligand run` recipes, `ligand help merge`
/// and docs/run.md's method table all read these declarations (MethodRegistry).
public struct MethodParameter: Sendable, Hashable {
    public enum Kind: Sendable {
        /// A comma-separated list (CLI) or YAML list of numbers, each passing `check`; `scale` converts what the user
        /// writes to what the method uses (ties_k: percentages → fractions).
        case numbers(check: @Sendable (Double) -> Bool, scale: Double)
        /// One number passing `check`.
        case number(check: @Sendable (Double) -> Bool)
        case integer(min: Int)
        case choice([String])
        case flag
        /// Free text accepted by `accepts` (e.g. the reference rule).
        case text(accepts: @Sendable (String) -> Bool)
    }

    public let key: String
    public let kind: Kind
    /// nil: unset means "none" (for example no alignment before a least-squares fusion).
    public let defaultValue: ParameterValue?
    public let help: String
    /// What a value must be, in the words of the error message ("every γ must be finite and > 0").
    public let requirement: String
    /// A parameter that makes a different variant of the method: a value other than its default names the run's series
    /// in `ligand run` reports ("cca (bn fold)", "progressive (start iso-c)").
    public let tag: String?
    /// Numbers: whether +inf (written `inf`) is a value, e.g. a ridge's limit, the prior itself; never NaN or -inf.
    public let acceptsInfinity: Bool

    public init(_ key: String, _ kind: Kind, default value: ParameterValue?, help: String, requirement: String, tag: String? = nil,
                acceptsInfinity: Bool = false) {
        self.key = key; self.kind = kind; self.defaultValue = value; self.help = help; self.requirement = requirement; self.tag = tag
        self.acceptsInfinity = acceptsInfinity
    }

    public var flag: String { "--" + key.replacingOccurrences(of: "_", with: "-") }
    public static func == (a: MethodParameter, b: MethodParameter) -> Bool { a.key == b.key }
    public func hash(into h: inout Hasher) { h.combine(key) }

    /// The default as the help and docs print it.
    public var defaultText: String {
        guard let v = defaultValue else { return "none" }
        if case .numbers(let xs) = v, case .numbers(_, let scale) = kind, scale != 1 { return xs.map { Self.format($0 * scale) }.joined(separator: ",") }
        return v.description
    }

    /// 1e-06 → "1e-6", 0.25 → "0.25": short, exact for the grids in use.
    public static func format(_ x: Double) -> String {
        guard x.isFinite else { return "\(x)" }
        if x != 0, abs(x) < 1e-3 || abs(x) >= 1e5 {
            let e = log10(abs(x))
            if e == e.rounded() { return (x < 0 ? "-" : "") + "1e\(Int(e))" }
        }
        return String(format: "%g", x)
    }

    func refuse(_ message: String) -> ParameterError { ParameterError(parameter: flag, message: message) }

    /// The declaration's checks, one place for the CLI and recipes alike: what is wrong with a value (nil: nothing);
    /// `shown` is the value as the user wrote it.
    func problem(number v: Double, _ check: (Double) -> Bool, shown: String) -> String? {
        (v.isFinite || (acceptsInfinity && v == .infinity)) && check(v) ? nil : "\(requirement), got \(shown)"
    }
    func problem(choice s: String, _ options: [String]) -> String? {
        options.contains(s) ? nil : "\(requirement.isEmpty ? "must be one of \(options.joined(separator: ", "))" : requirement), got '\(s)'"
    }
    func problem(text s: String, _ accepts: (String) -> Bool) -> String? { accepts(s) ? nil : "\(requirement), got '\(s)'" }

    /// The value of CLI text (`--gammas 1e-3,1e-1`); `present` flags pass "true".
    public func parse(_ text: String) throws -> ParameterValue {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .numbers(let check, let scale):
            let parts = t.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !t.isEmpty else { throw refuse("is empty") }
            return .numbers(try parts.map { p in
                guard let v = Double(p) else { throw refuse("'\(p)' is not a number") }
                if let why = problem(number: v, check, shown: p) { throw refuse(why) }
                return v / scale
            })
        case .number(let check):
            guard let v = Double(t) else { throw refuse("'\(t)' is not a number") }
            if let why = problem(number: v, check, shown: t) { throw refuse(why) }
            return .numbers([v])
        case .integer(let min):
            guard let n = Int(t) else { throw refuse("must be an integer, got '\(t)'") }
            guard n >= min else { throw refuse("\(requirement), got \(n)") }
            return .integer(n)
        case .choice(let options):
            if let why = problem(choice: t, options) { throw refuse(why) }
            return .text(t)
        case .flag:
            switch t { case "true", "": return .flag(true); case "false": return .flag(false)
            default: throw refuse("must be true or false, got '\(t)'") }
        case .text(let accepts):
            if let why = problem(text: t, accepts) { throw refuse(why) }
            return .text(t)
        }
    }

    /// The value of a recipe entry's key, errors naming the key's path; nil when the key is absent.
    public func read(_ f: Fields) throws -> ParameterValue? {
        guard f.values[key] != nil, !(f.values[key] is NSNull) else { _ = try f.string(key); return nil }
        switch kind {
        case .numbers(let check, let scale):
            let items = try f.list(key)!
            guard !items.isEmpty else { throw f.error(key, "must not be empty") }
            return .numbers(try items.enumerated().map { i, item in
                let d: Double
                if let x = item as? Double { d = x } else if !(item is Bool), let n = item as? Int { d = Double(n) } else {
                    throw RecipeError(file: f.file, path: f.sub("\(key)[\(i)]"), message: "must be a number, got \(Fields.describeValue(item))")
                }
                if let why = problem(number: d, check, shown: "\(item)") { throw RecipeError(file: f.file, path: f.sub("\(key)[\(i)]"), message: why) }
                return d / scale
            })
        case .number(let check):
            let d = try f.double(key)!
            if let why = problem(number: d, check, shown: "\(f.values[key]!)") { throw f.error(key, why) }
            return .numbers([d])
        case .integer(let min):
            return .integer(try f.int(key, min: min)!)
        case .choice(let options):
            let s = try f.string(key)!
            if let why = problem(choice: s, options) { throw f.error(key, why) }
            return .text(s)
        case .flag:
            return .flag(try f.bool(key)!)
        case .text(let accepts):
            let s = try f.string(key)!
            if let why = problem(text: s, accepts) { throw f.error(key, why) }
            return .text(s)
        }
    }
}

/// The parameters a merge runs with: what the user set, the declarations' defaults for the rest.
public struct ParameterValues: Sendable, Equatable {
    private(set) var given: [String: ParameterValue] = [:]
    public init() {}

    /// Sets a value, checking it against the declaration (programmatic use: tests, other tools).
    public mutating func set(_ p: MethodParameter, _ value: ParameterValue) throws {
        _ = try p.parse(Self.cliText(value, p))
        given[p.key] = value
    }

    /// Sets a value already checked by its declaration (`parse`, `read`).
    public mutating func store(_ p: MethodParameter, _ value: ParameterValue) { given[p.key] = value }
    /// Back to the declaration's default.
    public mutating func remove(_ p: MethodParameter) { given[p.key] = nil }
    public mutating func set(_ p: MethodParameter, numbers: [Double]) throws { try set(p, .numbers(numbers)) }
    public mutating func set(_ p: MethodParameter, text: String) throws { try set(p, .text(text)) }
    public mutating func set(_ p: MethodParameter, integer: Int) throws { try set(p, .integer(integer)) }
    public mutating func set(_ p: MethodParameter, flag: Bool) throws { try set(p, .flag(flag)) }

    static func cliText(_ v: ParameterValue, _ p: MethodParameter) -> String {
        if case .numbers(let xs) = v, case .numbers(_, let scale) = p.kind { return xs.map { "\($0 * scale)" }.joined(separator: ",") }
        return v.description
    }

    public func isSet(_ p: MethodParameter) -> Bool { given[p.key] != nil }
    // The common parameters as every pipeline reads them.
    /// Calibration images (per task) for statistics and fitted choices (nil: the whole calibration split).
    public var calibrationSamples: Int? { integer(CommonParameters.calibrationSamples) }
    /// The alignment run first (multi-level fusion), nil: none.
    public var align: (any MergeMethod.Type)? { text(CommonParameters.align).flatMap(MethodRegistry.method(named:)) }
    public var bnSamples: Int { integer(CommonParameters.bnSamples) ?? 5000 }

    public func value(_ p: MethodParameter) -> ParameterValue? { given[p.key] ?? p.defaultValue }
    public func numbers(_ p: MethodParameter) -> [Double] { if case .numbers(let v)? = value(p) { return v }; return [] }
    public func number(_ p: MethodParameter) -> Double { numbers(p).first ?? .nan }
    public func integer(_ p: MethodParameter) -> Int? { if case .integer(let n)? = value(p) { return n }; return nil }
    public func text(_ p: MethodParameter) -> String? { if case .text(let s)? = value(p) { return s }; return nil }
    public func flag(_ p: MethodParameter) -> Bool { if case .flag(let b)? = value(p) { return b }; return false }
    /// A choice parameter as its enumeration.
    public func choice<T: RawRepresentable>(_ p: MethodParameter) -> T? where T.RawValue == String { text(p).flatMap(T.init(rawValue:)) }
}
