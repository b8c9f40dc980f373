import ArgumentParser
import Foundation

/// Checks of `ligand report`'s paths before anything is read, so a directory or a huge file gets one plain message
/// (reading them gave NSCocoaErrorDomain text or exhausted memory). Kept apart from Run.swift, which declares the command.
extension ReportCommand {
    /// A report.json of 10,000 runs is a few MB; anything near this is not one.
    static let maxReportBytes = 64 << 20

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: json, isDirectory: &isDirectory) else { throw ValidationError("\(json): no such file") }
        if isDirectory.boolValue {
            let inside = URL(fileURLWithPath: json).appendingPathComponent("report.json").path
            let hint = FileManager.default.fileExists(atPath: inside) ? " (did you mean \(inside)?)" : ""
            throw ValidationError("\(json): is a directory, not a report.json written by `ligand run`\(hint)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: json)[.size] as? NSNumber)?.intValue ?? 0
        if size > Self.maxReportBytes {
            throw ValidationError("\(json): \(size) bytes is larger than the \(Self.maxReportBytes >> 20) MB limit for a run report")
        }
        if let out { try checkOutputDirectory(out, flag: "--out") }
    }
}

/// Refuses an output directory that exists as something else: createDirectory's own error reads "The operation
/// could not be completed. (NSCocoaErrorDomain error 512.)" (`ligand report`, `run` and `merge` call this).
func checkOutputDirectory(_ path: String, flag: String) throws {
    // The nearest existing ancestor decides: a file there means no directory can be created below it.
    var url = URL(fileURLWithPath: path).standardizedFileURL
    while true {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                let which = url.path == URL(fileURLWithPath: path).standardizedFileURL.path ? "exists" : "is below \(url.path), which exists"
                throw ValidationError("\(flag) \(path): \(which) and is not a directory")
            }
            return
        }
        let parent = url.deletingLastPathComponent()
        if parent.path == url.path { return }
        url = parent
    }
}
