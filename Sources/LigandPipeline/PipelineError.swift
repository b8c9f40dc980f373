import Foundation

/// A failure of a merge run (every method's pipeline). `everyRank` means every rank raised this same error (it was agreed
/// on, or found before any rank-specific work), so the job can end cleanly instead of aborting.
public struct PipelineError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    /// Whether every rank raised this same error (agreed on, or found before any rank-specific work), so the job can end
    /// cleanly with one message; false: only this rank knows, and the job must be aborted.
    public let everyRank: Bool
    /// The typed error this one reports (a format, data, merge or recipe error), when there is one.
    public let underlying: Error?
    public init(_ message: String, everyRank: Bool = true) { self.message = message; self.everyRank = everyRank; underlying = nil }
    /// The error as it is, kept typed; its description is the message.
    public init(wrapping error: Error, everyRank: Bool = true) {
        message = "\(error)"; self.everyRank = everyRank; underlying = error
    }
    public var description: String { message }
    public var errorDescription: String? { message }
}
