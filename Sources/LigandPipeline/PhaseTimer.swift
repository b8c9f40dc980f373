import Foundation
import LigandCollective

/// Wall seconds (and, given a counter, bytes communicated) per phase of a run: each `lap` charges what passed since
/// the previous lap to its key.
struct PhaseTimer {
    var seconds: [String: Double] = [:]
    private(set) var bytes: [String: Int] = [:]
    private var clock: Date
    private let counter: CountingCommunicator?
    private var lastBytes: Int

    /// Counts bytes when `comm` is a CountingCommunicator (as `ligand run` passes), else times only.
    init(start: Date = Date(), counting comm: Communicator? = nil) {
        clock = start; counter = comm as? CountingCommunicator; lastBytes = counter?.bytes ?? 0
    }

    /// Bytes per phase, nil when nothing was counted.
    var counted: [String: Int]? { counter == nil ? nil : bytes }

    mutating func lap(_ key: String) {
        seconds[key, default: 0] += Date().timeIntervalSince(clock); clock = Date()
        if let counter { bytes[key, default: 0] += counter.bytes - lastBytes; lastBytes = counter.bytes }
    }
}
