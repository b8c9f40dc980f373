import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What is wrong with a path given as an input or an output, before any byte is read or written.
public enum FileAccessError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// An input that is not a regular file (directory, FIFO, device, socket).
    case inputNotRegular(path: String, kind: String)
    /// An output path that exists and is not a regular file (or a symlink to one).
    case outputNotRegular(path: String, kind: String)
    /// An output symlink whose target cannot be resolved.
    case outputDanglingLink(path: String, reason: String)
    /// The output is the same file (same device and inode) as an input of the command.
    case outputIsInput(path: String, input: String)

    public var description: String {
        switch self {
        case let .inputNotRegular(path, kind):
            return "\(path): is \(kind), not a regular file; inputs must be regular files"
        case let .outputNotRegular(path, kind):
            return "\(path): is \(kind), not a regular file; refusing to write an output there"
        case let .outputDanglingLink(path, reason):
            return "\(path): is a symbolic link whose target cannot be resolved (\(reason)); refusing to write an output there"
        case let .outputIsInput(path, input):
            return "\(path): is the same file as the input \(input); refusing to overwrite an input"
        }
    }

    public var errorDescription: String? { description }
}

/// A file's identity on this machine: two paths name one file exactly when these agree.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64

    /// The identity of the file `path` names after following symlinks, or nil when it cannot be stat'ed.
    public static func of(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}

public enum FileChecks {
    /// "a directory", "a FIFO", ... for messages.
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        case S_IFREG: return "a regular file"
        default: return "not a regular file"
        }
    }

    /// Opens `path` read-only, refusing anything but a regular file before a read can block.
    /// O_NONBLOCK makes open() of a FIFO return at once; it is cleared again for the regular file.
    public static func openRegularForReading(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw SafeTensorsError.io(path: path, operation: "open for reading", reason: String(cString: strerror(errno)))
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw SafeTensorsError.io(path: path, operation: "stat", reason: reason)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileAccessError.inputNotRegular(path: path, kind: kindName(st.st_mode))
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// The path to write `path` through: itself when absent or a regular file, the resolved target of
    /// a symlink to a regular file (so the link survives); refuses anything else and any of `inputs`.
    public static func resolveOutput(_ path: String, inputs: [String] = []) throws -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            guard errno == ENOENT else {
                throw SafeTensorsError.io(path: path, operation: "inspect the output path", reason: String(cString: strerror(errno)))
            }
            return path
        }
        var target = path
        if (st.st_mode & S_IFMT) == S_IFLNK {
            guard let resolved = realpath(path, nil) else {
                throw FileAccessError.outputDanglingLink(path: path, reason: String(cString: strerror(errno)))
            }
            target = String(cString: resolved)
            free(resolved)
            guard stat(target, &st) == 0 else {
                throw FileAccessError.outputDanglingLink(path: path, reason: String(cString: strerror(errno)))
            }
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileAccessError.outputNotRegular(path: path, kind: kindName(st.st_mode))
        }
        let out = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        if let input = inputs.first(where: { FileIdentity.of($0) == out }) {
            throw FileAccessError.outputIsInput(path: path, input: input)
        }
        return target
    }
}
