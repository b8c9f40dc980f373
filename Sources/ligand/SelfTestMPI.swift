import ArgumentParser
import Foundation
import LigandCollective
import LigandNumerics

/// A check of the MPI test driver that did not hold on this rank.
struct SelfTestFailure: Error, CustomStringConvertible {
    let check: String
    let detail: String
    var description: String { "check '\(check)' failed: \(detail)" }
}

struct SelfTestMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest-mpi",
        abstract: "Check every collective and the deterministic sum on the ranks of this job.",
        discussion: """
        Run under mpirun (any -np); every rank checks allreduce, allgather(v), gather, broadcast, \
        reduce, barrier and send/recv, once with whole buffers and once in chunks of 5 elements. \
        Rank 0 prints the deterministic sum's digest, which must not depend on -np, then \
        "selftest-mpi: N checks passed on P ranks". A failing check ends the job with a non-zero code.
        """,
        shouldDisplay: false
    )

    @Option(help: "Make this rank throw an error midway, to check that one failing rank ends the job.")
    var failOnRank: Int?

    @Option(help: "Run on this many in-process ranks (threads) instead of the MPI job.")
    var inProcessRanks: Int?

    func validate() throws {
        if let n = inProcessRanks, !(1...64).contains(n) {
            throw ValidationError("--in-process-ranks must be in 1...64, got \(n)")
        }
    }

    func run() throws {
        if let n = inProcessRanks {
            let inject = failOnRank
            let lines = try InProcessCommunicator.run(size: n) { comm in
                var checks = SelfTestRun(comm: comm, failOnRank: inject)
                return try checks.run()
            }
            lines[0].forEach { print($0) }
            return
        }
        let comm = try worldCommunicator()
        let lines = comm.abortingOnError("selftest-mpi") {
            var checks = SelfTestRun(comm: comm, failOnRank: failOnRank)
            return try checks.run()
        }
        lines.forEach { print($0) }
        if let mpi = comm as? MPICommunicator { try mpi.finalize() }
    }
}

/// The checks of one rank; returns rank 0's report lines (empty elsewhere).
private struct SelfTestRun {
    let comm: Communicator
    let failOnRank: Int?
    var passed = 0

    init(comm: Communicator, failOnRank: Int?) {
        self.comm = comm
        self.failOnRank = failOnRank
    }

    mutating func check(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String = "unexpected result") throws {
        guard ok else { throw SelfTestFailure(check: name, detail: "rank \(comm.rank): \(detail())") }
        passed += 1
    }

    mutating func run() throws -> [String] {
        let (rank, p) = (comm.rank, comm.size)
        if let r = failOnRank, !(0..<p).contains(r) {
            throw SelfTestFailure(check: "--fail-on-rank", detail: "rank \(r) is outside 0..<\(p)")
        }
        try collectives(label: "")
        if failOnRank == rank {
            throw SelfTestFailure(check: "injected failure", detail: "rank \(rank) fails on purpose (--fail-on-rank \(rank))")
        }
        if let mpi = comm as? MPICommunicator {
            mpi.maxElementsPerCall = 5
            try collectives(label: " (chunks of 5)")
            mpi.maxElementsPerCall = Int(Int32.max)
        }
        let digest = try deterministic()
        // max of −count is −(min count): every rank must have run every check.
        var fewest = [-Double(passed)]
        try comm.allreduce(&fewest, op: .max)
        let mine = passed
        try check("every rank passed the same checks", -fewest[0] == Double(mine), "\(mine) here, \(Int(-fewest[0])) on some rank")
        guard rank == 0 else { return [] }
        return ["deterministic-sum-sha: \(digest)", "selftest-mpi: \(passed) checks passed on \(p) ranks"]
    }

    /// Integer-valued data, so every summation order gives the same exact result.
    private func ints(_ r: Int, _ n: Int) -> [Double] { (0..<n).map { Double((r + 1) * 100 + $0 % 17) * (r % 2 == 0 ? 1 : -1) } }

    mutating func collectives(label: String) throws {
        let (rank, p) = (comm.rank, comm.size)
        let n = 23
        try comm.barrier()
        try check("barrier" + label, true)

        var fs = ints(rank, n).map(Float.init), fm = fs, ds = ints(rank, n), dm = ds
        try comm.allreduce(&fs, op: .sum)
        try comm.allreduce(&fm, op: .max)
        try comm.allreduce(&ds, op: .sum)
        try comm.allreduce(&dm, op: .max)
        let eSum = (0..<n).map { i in (0..<p).reduce(0.0) { $0 + ints($1, n)[i] } }
        let eMax = (0..<n).map { i in (0..<p).map { ints($0, n)[i] }.max()! }
        try check("allreduce sum Float" + label, fs == eSum.map(Float.init), "\(fs.prefix(4)) ≠ \(eSum.prefix(4))")
        try check("allreduce max Float" + label, fm == eMax.map(Float.init), "\(fm.prefix(4)) ≠ \(eMax.prefix(4))")
        try check("allreduce sum Double" + label, ds == eSum, "\(ds.prefix(4)) ≠ \(eSum.prefix(4))")
        try check("allreduce max Double" + label, dm == eMax, "\(dm.prefix(4)) ≠ \(eMax.prefix(4))")

        let ag = try comm.allgather(ints(rank, 7).map(Float.init))
        try check("allgather Float" + label, ag == (0..<p).flatMap { ints($0, 7).map(Float.init) })
        let agd = try comm.allgather(ints(rank, 3))
        try check("allgather Double" + label, agd == (0..<p).flatMap { ints($0, 3) })

        // Rank r sends (2r + 1) mod 7 elements: rank 3 sends none.
        let count = { (r: Int) in (2 * r + 1) % 7 }
        let vf = try comm.allgatherv(ints(rank, count(rank)).map(Float.init))
        try check("allgatherv Float" + label, vf == (0..<p).map { ints($0, count($0)).map(Float.init) })
        let vd = try comm.allgatherv(ints(rank, count(rank)))
        try check("allgatherv Double" + label, vd == (0..<p).map { ints($0, count($0)) })
        let vb = try comm.allgatherv([UInt8](repeating: UInt8(rank), count: count(rank)))
        try check("allgatherv bytes" + label, vb == (0..<p).map { [UInt8](repeating: UInt8($0), count: count($0)) })

        for root in Set([0, p - 1]).sorted() {
            let gd = try comm.gather(ints(rank, count(rank)), root: root)
            let gf = try comm.gather(ints(rank, count(rank) + 1).map(Float.init), root: root)
            if rank == root {
                try check("gather Double to \(root)" + label, gd == (0..<p).map { ints($0, count($0)) })
                try check("gather Float to \(root)" + label, gf == (0..<p).map { ints($0, count($0) + 1).map(Float.init) })
            } else {
                try check("gather Double to \(root) is nil elsewhere" + label, gd == nil)
                try check("gather Float to \(root) is nil elsewhere" + label, gf == nil)
            }

            var rd = ints(rank, n)
            var rf = ints(rank, n).map(Float.init)
            try comm.reduce(&rd, op: .sum, root: root)
            try comm.reduce(&rf, op: .max, root: root)
            try check("reduce sum Double to \(root)" + label, rd == (rank == root ? eSum : ints(rank, n)))
            try check("reduce max Float to \(root)" + label, rf == (rank == root ? eMax : ints(rank, n)).map(Float.init))
        }

        for root in 0..<p {
            var bf = rank == root ? ints(root, 11).map(Float.init) : [Float](repeating: -1, count: rank)
            var bd = rank == root ? ints(root, 9) : []
            var bb = rank == root ? [UInt8](repeating: UInt8(root), count: 13) : [1, 2]
            var s = rank == root ? "from rank \(root) ✓" : ""
            try comm.broadcast(&bf, root: root)
            try comm.broadcast(&bd, root: root)
            try comm.broadcast(&bb, root: root)
            try comm.broadcast(&s, root: root)
            try check("broadcast from \(root)" + label,
                      bf == ints(root, 11).map(Float.init) && bd == ints(root, 9)
                          && bb == [UInt8](repeating: UInt8(root), count: 13) && s == "from rank \(root) ✓")
        }

        if p > 1 {
            let right = (rank + 1) % p, left = (rank + p - 1) % p
            // Even ranks send first so that blocking sends of long messages cannot deadlock.
            if rank % 2 == 0 {
                try comm.send(ints(rank, 12), to: right, tag: 7)
                let got = try comm.recv(from: left, tag: 7)
                try check("send/recv ring" + label, got == ints(left, 12))
            } else {
                let got = try comm.recv(from: left, tag: 7)
                try comm.send(ints(rank, 12), to: right, tag: 7)
                try check("send/recv ring" + label, got == ints(left, 12))
            }
        }
    }

    /// Eight seeded contributions of 1000 values with magnitudes 10^-8 … 10^12, spread by blockRange.
    mutating func deterministic() throws -> String {
        var rng = SeededRNG(seed: 20_240_607, stream: "selftest-mpi deterministic sum")
        let k = 8
        let all: [[Double]] = (0..<k).map { _ in
            (0..<1000).map { _ in
                let sign: Double = rng.uniform() < 0.5 ? -1 : 1
                return sign * (1 + rng.uniform()) * pow(10, Double(rng.int(below: 21) - 8))
            }
        }
        let mine = blockRange(count: k, parts: comm.size, part: comm.rank).map { (index: $0, values: all[$0]) }
        let reference = serialLeftFoldSum(all)
        let whole = try deterministicSum(contributions: mine, total: k, comm: comm)
        try check("deterministic sum equals the serial left fold", whole.map(\.bitPattern) == reference.map(\.bitPattern))
        let chunked = try deterministicSum(contributions: mine, total: k, comm: comm, chunkElements: 64)
        try check("deterministic sum in chunks of 64", chunked.map(\.bitPattern) == reference.map(\.bitPattern))
        return bitPatternDigest(whole)
    }
}
