import Foundation

/// Progress of a long phase on stderr: a live line on a terminal, plain periodic lines in a log, nothing when quiet.
public final class PhaseProgress: @unchecked Sendable {
    public enum Style: Sendable { case live, periodic, quiet }
    public let label: String
    public let total: Int
    public let style: Style
    private let started = Date()
    private var lastPrint = Date.distantPast
    private let interval: TimeInterval

    public static var defaultStyle: Style {
        if ProcessInfo.processInfo.environment["LIGAND_QUIET"] != nil { return .quiet }
        return isatty(2) != 0 ? .live : .periodic
    }

    public init(_ label: String, total: Int, style: Style = PhaseProgress.defaultStyle, interval: TimeInterval? = nil) {
        self.label = label; self.total = total; self.style = style
        self.interval = interval ?? (style == .live ? 0.2 : 10)
    }

    public var elapsed: TimeInterval { Date().timeIntervalSince(started) }

    /// Reports `done` of `total`, with an optional detail such as the running loss.
    public func update(_ done: Int, detail: @autoclosure () -> String = "") {
        guard style != .quiet else { return }
        let now = Date()
        guard done >= total || now.timeIntervalSince(lastPrint) >= interval else { return }
        lastPrint = now
        let pct = total > 0 ? 100 * Double(done) / Double(total) : 100
        let eta = done > 0 && done < total ? String(format: " eta %.0fs", elapsed / Double(done) * Double(total - done)) : ""
        let d = detail()
        let line = String(format: "%@ %d/%d (%.0f%%) %.1fs%@", label, done, total, pct, elapsed, eta) + (d.isEmpty ? "" : "  " + d)
        if style == .live { FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8)) } else { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    /// Ends the phase with a closing line.
    public func finish(_ detail: String = "") {
        guard style != .quiet else { return }
        let line = String(format: "%@ done in %.1fs", label, elapsed) + (detail.isEmpty ? "" : "  " + detail)
        FileHandle.standardError.write(Data(((style == .live ? "\r\u{1B}[K" : "") + line + "\n").utf8))
    }

    /// A one-off message in the same style.
    public static func note(_ message: String, style: Style = PhaseProgress.defaultStyle) {
        guard style != .quiet else { return }
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
