import Foundation
import LigandCollective

/// A Communicator that forwards every call and counts the payload bytes this rank moves, so a report can
/// state its communication volume. Counted per call: the buffer for broadcast, allreduce and reduce, the
/// gathered total for allgather(v) and gather (on the root), the message for send and recv. Nothing is
/// counted on a single rank (no bytes cross ranks there).
public final class CountingCommunicator: Communicator {
    public let base: Communicator
    public private(set) var bytes: Int = 0
    /// Collective and point-to-point calls made.
    public private(set) var calls: Int = 0

    public init(_ base: Communicator) { self.base = base }

    public var rank: Int { base.rank }
    public var size: Int { base.size }

    private func count<T>(_ elements: Int, _: T.Type) {
        calls += 1
        if base.size > 1 { bytes += elements * MemoryLayout<T>.size }
    }

    public func barrier() throws { calls += 1; try base.barrier() }

    public func broadcast(_ buf: inout [Float], root: Int) throws { try base.broadcast(&buf, root: root); count(buf.count, Float.self) }
    public func broadcast(_ buf: inout [Double], root: Int) throws { try base.broadcast(&buf, root: root); count(buf.count, Double.self) }
    public func broadcast(_ buf: inout [UInt8], root: Int) throws { try base.broadcast(&buf, root: root); count(buf.count, UInt8.self) }

    public func allreduce(_ buf: inout [Float], op: ReduceOp) throws { count(buf.count, Float.self); try base.allreduce(&buf, op: op) }
    public func allreduce(_ buf: inout [Double], op: ReduceOp) throws { count(buf.count, Double.self); try base.allreduce(&buf, op: op) }

    public func reduce(_ buf: inout [Float], op: ReduceOp, root: Int) throws { count(buf.count, Float.self); try base.reduce(&buf, op: op, root: root) }
    public func reduce(_ buf: inout [Double], op: ReduceOp, root: Int) throws { count(buf.count, Double.self); try base.reduce(&buf, op: op, root: root) }

    public func allgather(_ send: [Float]) throws -> [Float] { let r = try base.allgather(send); count(r.count, Float.self); return r }
    public func allgather(_ send: [Double]) throws -> [Double] { let r = try base.allgather(send); count(r.count, Double.self); return r }

    public func allgatherv(_ send: [Float]) throws -> [[Float]] {
        let r = try base.allgatherv(send); count(r.reduce(0) { $0 + $1.count }, Float.self); return r
    }
    public func allgatherv(_ send: [Double]) throws -> [[Double]] {
        let r = try base.allgatherv(send); count(r.reduce(0) { $0 + $1.count }, Double.self); return r
    }
    public func allgatherv(_ send: [UInt8]) throws -> [[UInt8]] {
        let r = try base.allgatherv(send); count(r.reduce(0) { $0 + $1.count }, UInt8.self); return r
    }

    public func gather(_ send: [Float], root: Int) throws -> [[Float]]? {
        let r = try base.gather(send, root: root); count(r?.reduce(0) { $0 + $1.count } ?? send.count, Float.self); return r
    }
    public func gather(_ send: [Double], root: Int) throws -> [[Double]]? {
        let r = try base.gather(send, root: root); count(r?.reduce(0) { $0 + $1.count } ?? send.count, Double.self); return r
    }

    public func send(_ buf: [Double], to dest: Int, tag: Int) throws { count(buf.count, Double.self); try base.send(buf, to: dest, tag: tag) }
    public func recv(from source: Int, tag: Int) throws -> [Double] { let r = try base.recv(from: source, tag: tag); count(r.count, Double.self); return r }

    public func abort(message: String, code: Int32) -> Never { base.abort(message: message, code: code) }
}
