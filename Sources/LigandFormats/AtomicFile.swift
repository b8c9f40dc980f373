import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where `AtomicFile.write` sends bytes: an open temporary file beside the target.
public struct AtomicFileSink {
    fileprivate let fd: Int32
    /// The final path, for error messages.
    public let path: String

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = posixWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.io(path: path, operation: "write", reason: String(cString: strerror(errno)))
            }
            offset += n
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// The C write(2), which the sink's own `write` methods shadow by name.
@inline(__always)
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, p, n)
}

/// Whole-or-nothing file writes: readers of the target never see a partial file, and a
/// failed write leaves neither the target changed nor a temporary file behind.
public enum AtomicFile {
    /// Runs `body` against a temporary file in the target's directory, then renames it over the target.
    /// The target must be absent or a regular file (a symlink is written through to its target) and
    /// must not be one of `inputs`; these are checked before anything is created.
    public static func write(to url: URL, inputs: [URL] = [], _ body: (AtomicFileSink) throws -> Void) throws {
        let path = url.path
        let target = URL(fileURLWithPath: try FileChecks.resolveOutput(path, inputs: inputs.map(\.path)))
        let dir = target.deletingLastPathComponent().path
        var template = Array(((dir.isEmpty ? "." : dir) + "/.\(target.lastPathComponent).tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw SafeTensorsError.io(path: path, operation: "create a temporary file in \(dir)", reason: String(cString: strerror(errno)))
        }
        let tempPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var closed = false
        do {
            // mkstemp creates 0600; model and report files are meant to be shared.
            _ = fchmod(fd, 0o644)
            try body(AtomicFileSink(fd: fd, path: path))
            guard fsync(fd) == 0 else {
                throw SafeTensorsError.io(path: path, operation: "flush to disk", reason: String(cString: strerror(errno)))
            }
            closed = true
            guard close(fd) == 0 else {
                throw SafeTensorsError.io(path: path, operation: "close", reason: String(cString: strerror(errno)))
            }
            guard rename(tempPath, target.path) == 0 else {
                throw SafeTensorsError.io(path: path, operation: "rename the temporary file into place", reason: String(cString: strerror(errno)))
            }
        } catch {
            if !closed { close(fd) }
            unlink(tempPath)
            throw error
        }
    }

    public static func write(_ bytes: [UInt8], to url: URL, inputs: [URL] = []) throws {
        try write(to: url, inputs: inputs) { try $0.write(bytes) }
    }

    public static func write(_ data: Data, to url: URL, inputs: [URL] = []) throws {
        try write(to: url, inputs: inputs) { sink in try data.withUnsafeBytes { try sink.write($0) } }
    }
}
