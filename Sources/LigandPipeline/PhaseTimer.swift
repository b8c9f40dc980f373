import Foundation

/// Wall seconds (and, given a counter, bytes communicated) per phase of a run: each `lap` charges what passed since
/// the previous lap to its key.
struct PhaseTimer {
    var seconds: [String: Double] = [:]
    private(set) var bytes: [String: Int] = [:]
    private var clock: Date
    private let counter: CountingCommunicator?
    private var lastBytes: Int

    init(start: Date = Date(), counting counter: CountingCommunicator? = nil) {
        clock = start; self.counter = counter; lastBytes = counter?.bytes ?? 0
    }

    mutating func lap(_ key: String) {
        seconds[key, default: 0] += Date().timeIntervalSince(clock); clock = Date()
        if let counter { bytes[key, default: 0] += counter.bytes - lastBytes; lastBytes = counter.bytes }
    }
}
