import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What each rank used over one piece of work (a run of `ligand run`): CPU seconds (user + system, every thread) and
/// peak resident memory, so a report shows how the cost per rank grows with K and with the rank count (docs/scale.md).
public struct ResourceMark {
    let cpu: Double

    /// Starts a measurement. On Linux the kernel's peak-RSS mark is reset first (`/proc/self/clear_refs` ← 5), so the
    /// peak read at the end is this work's own, not the process's since it began; before that the allocator hands the
    /// memory earlier work freed back to the kernel (`malloc_trim`), which would otherwise count as resident here.
    public static func start() -> ResourceMark {
        #if canImport(Glibc)
        // glibc's malloc_trim is not in the Glibc module map; look it up (RTLD_DEFAULT is the null handle on glibc).
        if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            _ = unsafeBitCast(sym, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        #endif
        if let f = fopen("/proc/self/clear_refs", "w") { fputs("5", f); fclose(f) }
        return ResourceMark(cpu: cpuSeconds())
    }

    /// CPU seconds since `start` and peak resident bytes since then on every rank (index = rank), from one all-reduce
    /// of a 2·size vector on `comm`; the peaks are nil when a rank cannot read its own.
    public func gathered(_ comm: Communicator) throws -> (cpuSeconds: [Double], peakResidentBytes: [Int]?) {
        let n = comm.size
        var v = [Double](repeating: 0, count: 2 * n)
        v[comm.rank] = Self.cpuSeconds() - cpu
        v[n + comm.rank] = Self.peakResidentBytes().map(Double.init) ?? -1
        try comm.allreduce(&v, op: .sum)
        let peaks = v[n...].map { Int($0) }
        return (Array(v[..<n]), peaks.contains { $0 < 0 } ? nil : peaks)
    }

    /// User + system CPU seconds of this process (every thread) so far.
    public static func cpuSeconds() -> Double {
        var u = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u) == 0 else { return 0 }
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return s(u.ru_utime) + s(u.ru_stime)
    }

    /// The process's peak resident set (`VmHWM` of /proc/self/status) in bytes; nil where the kernel does not say.
    public static func peakResidentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 3, fields[2] == "kB", let kb = Int(fields[1]) else { return nil }
        return kb * 1024
    }
}
