import Foundation
import LigandCollective
import LigandNumerics
import XCTest

private struct RankFailure: Error, Equatable { let rank: Int }

private struct Recipe: Codable, Equatable {
    var name: String
    var models: [Int]
}

/// Values of rank r, element i: distinct per rank so that misplaced data shows.
private func floats(rank: Int, count: Int) -> [Float] { (0..<count).map { Float(rank * 1000 + $0) * 0.25 - 3 } }
private func doubles(rank: Int, count: Int) -> [Double] { (0..<count).map { Double(rank * 1000 + $0) * 0.1 - 7 } }

final class CollectiveTests: XCTestCase {
    let sizes = [1, 2, 3, 4]

    /// Every rank's CPU time and peak memory reach every rank in rank order; the peak covers an allocation made
    /// after the mark (in-process ranks share one process, so each reads the same peak).
    func testResourceMarksAreGatheredPerRank() throws {
        let results = try InProcessCommunicator.run(size: 3) { comm -> (cpuSeconds: [Double], peakResidentBytes: [Int]?) in
            let mark = ResourceMark.start()
            var big = [Double](repeating: 1, count: 8 << 20)   // 64 MiB, touched
            for i in stride(from: 0, to: big.count, by: 512) { big[i] += Double(comm.rank) }
            XCTAssertGreaterThan(big[0] + big[big.count - 1], 0)
            try comm.barrier()
            return try mark.gathered(comm)
        }
        for r in results {
            XCTAssertEqual(r.cpuSeconds.count, 3)
            XCTAssertTrue(r.cpuSeconds.allSatisfy { $0.isFinite && $0 >= 0 })
            XCTAssertEqual(r.cpuSeconds, results[0].cpuSeconds, "every rank holds the same gathered figures")
            let peak = try XCTUnwrap(r.peakResidentBytes, "Linux reports VmHWM")
            XCTAssertEqual(peak.count, 3)
            XCTAssertGreaterThan(peak.min()!, 64 << 20, "the 64 MiB array counts toward the peak")
        }
    }

    func testBlockRangeIsContiguousBalancedAndComplete() {
        for count in 0..<20 {
            for parts in 1...6 {
                let ranges = (0..<parts).map { blockRange(count: count, parts: parts, part: $0) }
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, count)
                for (a, b) in zip(ranges, ranges.dropFirst()) {
                    XCTAssertEqual(a.upperBound, b.lowerBound)
                    XCTAssertTrue(a.count == b.count || a.count == b.count + 1, "earlier parts get the extra ones")
                }
            }
        }
        XCTAssertEqual(blockRange(count: 10, parts: 4, part: 0), 0..<3)
        XCTAssertEqual(blockRange(count: 10, parts: 4, part: 1), 3..<6)
        XCTAssertEqual(blockRange(count: 10, parts: 4, part: 3), 8..<10)
    }

    func testAllreduceSumAndMaxMatchRankOrderFold() throws {
        for p in sizes {
            let n = 37
            let results = try InProcessCommunicator.run(size: p) { comm -> ([Float], [Float], [Double], [Double]) in
                var fs = floats(rank: comm.rank, count: n)
                var fm = fs.map { comm.rank % 2 == 0 ? $0 : -$0 }
                var ds = doubles(rank: comm.rank, count: n)
                var dm = ds.map { comm.rank % 2 == 0 ? -$0 : $0 }
                try comm.allreduce(&fs, op: .sum)
                try comm.allreduce(&fm, op: .max)
                try comm.allreduce(&ds, op: .sum)
                try comm.allreduce(&dm, op: .max)
                return (fs, fm, ds, dm)
            }
            var fs = floats(rank: 0, count: n), ds = doubles(rank: 0, count: n)
            var fm = fs, dm = ds.map { -$0 }
            for r in 1..<p {
                let f = floats(rank: r, count: n), d = doubles(rank: r, count: n)
                for i in 0..<n {
                    fs[i] += f[i]
                    ds[i] += d[i]
                    fm[i] = max(fm[i], r % 2 == 0 ? f[i] : -f[i])
                    dm[i] = max(dm[i], r % 2 == 0 ? -d[i] : d[i])
                }
            }
            for (rank, r) in results.enumerated() {
                XCTAssertEqual(r.0, fs, "Float sum, P=\(p), rank \(rank)")
                XCTAssertEqual(r.1, fm, "Float max, P=\(p), rank \(rank)")
                XCTAssertEqual(r.2.map(\.bitPattern), ds.map(\.bitPattern), "Double sum, P=\(p), rank \(rank)")
                XCTAssertEqual(r.3, dm, "Double max, P=\(p), rank \(rank)")
            }
        }
    }

    func testRepeatedAllreducesInPlaceLeaveCallersCopiesAlone() throws {
        for p in sizes {
            let results = try InProcessCommunicator.run(size: p) { comm -> [Bool] in
                var ok: [Bool] = []
                for n in [0, 1, 5, 1000, 0, 3] {
                    var buf = doubles(rank: comm.rank, count: n)
                    let input = buf
                    try comm.allreduce(&buf, op: .sum)
                    try comm.allreduce(&buf, op: .max)
                    ok.append(input == doubles(rank: comm.rank, count: n))
                    ok.append(buf == serialLeftFoldSum((0..<p).map { doubles(rank: $0, count: n) }))
                }
                return ok
            }
            for (rank, r) in results.enumerated() { XCTAssertEqual(r, [Bool](repeating: true, count: 12), "P=\(p), rank \(rank)") }
        }
    }

    func testAllreduceWithMismatchedCountsFailsOnEveryRank() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 3) { comm in
            var b = [Double](repeating: 1, count: comm.rank == 1 ? 4 : 5)
            try comm.allreduce(&b, op: .sum)
        }) { error in
            XCTAssertEqual(error as? CollectiveError, .countMismatch(operation: "allreduce", counts: [5, 4, 5]))
        }
    }

    func testAllgatherConcatenatesInRankOrder() throws {
        for p in sizes {
            let results = try InProcessCommunicator.run(size: p) { comm in
                (try comm.allgather(floats(rank: comm.rank, count: 3)), try comm.allgather(doubles(rank: comm.rank, count: 2)))
            }
            let ef = (0..<p).flatMap { floats(rank: $0, count: 3) }
            let ed = (0..<p).flatMap { doubles(rank: $0, count: 2) }
            for r in results {
                XCTAssertEqual(r.0, ef)
                XCTAssertEqual(r.1, ed)
            }
        }
    }

    func testAllgathervWithVaryingCountsIncludingZero() throws {
        for p in sizes {
            let count = { (r: Int) in (r * 3) % 4 }  // 0, 3, 2, 1
            let results = try InProcessCommunicator.run(size: p) { comm in
                (try comm.allgatherv(floats(rank: comm.rank, count: count(comm.rank))),
                 try comm.allgatherv(doubles(rank: comm.rank, count: count(comm.rank))),
                 try comm.allgatherv([UInt8](repeating: UInt8(comm.rank), count: count(comm.rank) + 1)))
            }
            for r in results {
                XCTAssertEqual(r.0, (0..<p).map { floats(rank: $0, count: count($0)) })
                XCTAssertEqual(r.1, (0..<p).map { doubles(rank: $0, count: count($0)) })
                XCTAssertEqual(r.2, (0..<p).map { [UInt8](repeating: UInt8($0), count: count($0) + 1) })
            }
            XCTAssertEqual(results[0].0[0], [])
        }
    }

    func testGatherToEveryRoot() throws {
        for p in sizes {
            for root in 0..<p {
                let results = try InProcessCommunicator.run(size: p) { comm in
                    (try comm.gather(doubles(rank: comm.rank, count: comm.rank + 1), root: root),
                     try comm.gather(floats(rank: comm.rank, count: 2 - comm.rank % 3), root: root))
                }
                for (rank, r) in results.enumerated() {
                    if rank == root {
                        XCTAssertEqual(r.0, (0..<p).map { doubles(rank: $0, count: $0 + 1) })
                        XCTAssertEqual(r.1, (0..<p).map { floats(rank: $0, count: 2 - $0 % 3) })
                    } else {
                        XCTAssertNil(r.0)
                        XCTAssertNil(r.1)
                    }
                }
            }
        }
    }

    func testReduceToEveryRootLeavesOthersUnchanged() throws {
        for p in sizes {
            for root in 0..<p {
                let results = try InProcessCommunicator.run(size: p) { comm -> ([Double], [Float]) in
                    var d = doubles(rank: comm.rank, count: 9)
                    var f = floats(rank: comm.rank, count: 9)
                    try comm.reduce(&d, op: .sum, root: root)
                    try comm.reduce(&f, op: .max, root: root)
                    return (d, f)
                }
                let sum = serialLeftFoldSum((0..<p).map { doubles(rank: $0, count: 9) })
                for (rank, r) in results.enumerated() {
                    XCTAssertEqual(r.0, rank == root ? sum : doubles(rank: rank, count: 9))
                    XCTAssertEqual(r.1, rank == root ? floats(rank: p - 1, count: 9) : floats(rank: rank, count: 9))
                }
            }
        }
    }

    func testBroadcastFromEveryRootReplacesBuffersOfAnySize() throws {
        for p in sizes {
            for root in 0..<p {
                let results = try InProcessCommunicator.run(size: p) { comm -> ([Float], [Double], [UInt8], String, Recipe) in
                    var f = floats(rank: comm.rank, count: comm.rank + 2)
                    var d = doubles(rank: comm.rank, count: 5 - comm.rank)
                    var b = [UInt8](repeating: UInt8(comm.rank), count: comm.rank)
                    var s = "rank \(comm.rank) ✓"
                    try comm.broadcast(&f, root: root)
                    try comm.broadcast(&d, root: root)
                    try comm.broadcast(&b, root: root)
                    try comm.broadcast(&s, root: root)
                    let recipe = try comm.broadcast(comm.rank == root ? Recipe(name: "from \(root)", models: [root, 7]) : nil, root: root)
                    return (f, d, b, s, recipe)
                }
                for r in results {
                    XCTAssertEqual(r.0, floats(rank: root, count: root + 2))
                    XCTAssertEqual(r.1, doubles(rank: root, count: 5 - root))
                    XCTAssertEqual(r.2, [UInt8](repeating: UInt8(root), count: root))
                    XCTAssertEqual(r.3, "rank \(root) ✓")
                    XCTAssertEqual(r.4, Recipe(name: "from \(root)", models: [root, 7]))
                }
            }
        }
    }

    func testInvalidRootIsAnErrorNotACrash() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 2) { comm in
            var b: [Float] = [1]
            try comm.broadcast(&b, root: 2)
        }) { error in
            XCTAssertEqual(error as? CollectiveError, .invalidRank(operation: "broadcast", rank: 2, size: 2))
        }
    }

    func testBarrierOrdersWritesBeforeReads() throws {
        for p in sizes {
            let lock = NSLock()
            final class Counter { var value = 0 }
            let arrivals = Counter()
            let seen = try InProcessCommunicator.run(size: p) { comm -> [Int] in
                var observed: [Int] = []
                for round in 1...5 {
                    if comm.rank == round % p { Thread.sleep(forTimeInterval: 0.002) }
                    lock.lock(); arrivals.value += 1; lock.unlock()
                    try comm.barrier()
                    lock.lock(); observed.append(arrivals.value); lock.unlock()
                    try comm.barrier()
                }
                return observed
            }
            for s in seen { XCTAssertEqual(s, (1...5).map { $0 * p }, "P=\(p)") }
        }
    }

    func testSendRecvKeepsOrderPerTag() throws {
        for p in sizes where p > 1 {
            let results = try InProcessCommunicator.run(size: p) { comm -> [[Double]] in
                let right = (comm.rank + 1) % comm.size
                let left = (comm.rank + comm.size - 1) % comm.size
                try comm.send([Double(comm.rank)], to: right, tag: 1)
                try comm.send([Double(comm.rank), 1], to: right, tag: 1)
                try comm.send([], to: right, tag: 2)
                let t2 = try comm.recv(from: left, tag: 2)
                let a = try comm.recv(from: left, tag: 1)
                let b = try comm.recv(from: left, tag: 1)
                return [a, b, t2]
            }
            for (rank, r) in results.enumerated() {
                let left = Double((rank + p - 1) % p)
                XCTAssertEqual(r, [[left], [left, 1], []])
            }
        }
    }

    /// Eight contributions whose magnitudes span 10^-8 … 10^12, so that summation order matters.
    private func wildContributions(count: Int = 8, length: Int = 200) -> [[Double]] {
        var rng = SeededRNG(seed: 42, stream: "deterministic-sum-test")
        return (0..<count).map { k in
            (0..<length).map { _ in
                let exponent = Double(rng.int(below: 21)) - 8
                let sign: Double = rng.uniform() < 0.5 ? -1 : 1
                return sign * (1 + rng.uniform()) * pow(10, exponent) + Double(k)
            }
        }
    }

    private func distributedSum(_ contributions: [[Double]], split: [Range<Int>], chunk: Int = 1 << 20) throws -> [[Double]] {
        try InProcessCommunicator.run(size: split.count) { comm in
            let mine = split[comm.rank].map { (index: $0, values: contributions[$0]) }
            return try deterministicSum(contributions: mine, total: contributions.count, comm: comm, chunkElements: chunk)
        }
    }

    func testDeterministicSumIsBitwiseIdenticalForEveryRankCountAndSplit() throws {
        let c = wildContributions()
        let reference = serialLeftFoldSum(c)
        // The test means something only if another order would give different bits.
        func tree(_ v: ArraySlice<[Double]>) -> [Double] {
            if v.count == 1 { return v.first! }
            let mid = v.startIndex + v.count / 2
            let (a, b) = (tree(v[v.startIndex..<mid]), tree(v[mid...]))
            return zip(a, b).map { $0 + $1 }
        }
        XCTAssertNotEqual(tree(c[...]).map(\.bitPattern), reference.map(\.bitPattern))

        var splits: [[Range<Int>]] = sizes.map { p in (0..<p).map { blockRange(count: 8, parts: p, part: $0) } }
        splits.append([0..<0, 0..<5, 5..<5, 5..<8])
        splits.append([0..<1, 1..<8, 8..<8])
        splits.append([0..<0, 0..<0, 0..<8])
        for split in splits {
            for chunk in [1 << 20, 7] {
                let results = try distributedSum(c, split: split, chunk: chunk)
                for (rank, r) in results.enumerated() {
                    XCTAssertEqual(r.map(\.bitPattern), reference.map(\.bitPattern), "split \(split), chunk \(chunk), rank \(rank)")
                }
            }
        }
    }

    func testDeterministicSumOfFloatsAccumulatesInDouble() throws {
        let c: [[Float]] = [[1e8, 1], [1, 1], [-1e8, 1]]
        for p in sizes {
            let results = try InProcessCommunicator.run(size: p) { comm in
                let mine = blockRange(count: 3, parts: p, part: comm.rank).map { (index: $0, values: c[$0]) }
                return try deterministicSum(contributions: mine, total: 3, comm: comm)
            }
            // In Float32, 1e8 + 1 rounds back to 1e8 and the 1 would be lost.
            for r in results { XCTAssertEqual(r, [1, 3]) }
        }
    }

    func testDeterministicSumRejectsInconsistentSplitsOnEveryRank() {
        let c = wildContributions(count: 4, length: 3)
        XCTAssertThrowsError(try distributedSum(c, split: [2..<4, 0..<2])) { error in
            guard case .invalidInput(_, let reason)? = error as? CollectiveError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("rank 0 starts at contribution 2"), reason)
        }
        XCTAssertThrowsError(try distributedSum(c, split: [0..<1, 1..<3])) { error in
            guard case .invalidInput(_, let reason)? = error as? CollectiveError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("3 contributions, 4 expected"), reason)
        }
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 2) { comm in
            let mine = comm.rank == 0 ? [(index: 0, values: c[0]), (index: 2, values: c[2])] : [(index: 3, values: c[3])]
            return try deterministicSum(contributions: mine, total: 4, comm: comm)
        }) { error in
            guard case .invalidInput(_, let reason)? = error as? CollectiveError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("rank 0 holds contribution indices that are not contiguous"), reason)
        }
    }

    func testErrorOnOneRankEndsTheOthersInsteadOfHanging() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 4) { comm in
            try comm.barrier()
            if comm.rank == 2 { throw RankFailure(rank: 2) }
            var b: [Double] = [1]
            try comm.allreduce(&b, op: .sum)
            try comm.barrier()
        }) { error in
            XCTAssertEqual(error as? RankFailure, RankFailure(rank: 2), "the first error is the failing rank's own")
        }
    }

    func testErrorWhileOthersWaitInRecvEndsThem() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 3) { comm in
            if comm.rank == 0 { throw RankFailure(rank: 0) }
            _ = try comm.recv(from: 0, tag: 5)
        }) { error in
            XCTAssertEqual(error as? RankFailure, RankFailure(rank: 0))
        }
    }

    func testAbortPoisonsTheGroup() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 3) { comm in
            if comm.rank == 1 { comm.abort(message: "test abort on rank 1 (expected)", code: 3) }
            try comm.barrier()
        }) { error in
            XCTAssertEqual(error as? CollectiveError, .aborted(rank: 1, message: "test abort on rank 1 (expected)"))
        }
    }

    func testRankThatReturnsEarlyIsReportedAsDeadlock() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 3) { comm in
            if comm.rank == 0 { return }
            try comm.barrier()
        }) { error in
            guard case .deadlock? = error as? CollectiveError else { return XCTFail("\(error)") }
        }
    }

    func testAbortingOnErrorTurnsAThrowIntoAnAbort() {
        XCTAssertThrowsError(try InProcessCommunicator.run(size: 2) { comm in
            comm.abortingOnError("step") { if comm.rank == 1 { throw RankFailure(rank: 1) } }
            try comm.barrier()
        }) { error in
            guard case .aborted(let rank, let message)? = error as? CollectiveError else { return XCTFail("\(error)") }
            XCTAssertEqual(rank, 1)
            XCTAssertTrue(message.hasPrefix("step: rank 1 of 2 failed"), message)
        }
    }

    func testWorldCommunicatorWithoutMpirunIsOneRank() throws {
        XCTAssertFalse(launchedByMPI(environment: ["PATH": "/usr/bin"]))
        XCTAssertTrue(launchedByMPI(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(launchedByMPI(environment: ["PMIX_RANK": "0"]))
        if !launchedByMPI() {
            let comm = try worldCommunicator()
            XCTAssertEqual(comm.rank, 0)
            XCTAssertEqual(comm.size, 1)
            var b: [Double] = [2, 3]
            try comm.allreduce(&b, op: .sum)
            XCTAssertEqual(b, [2, 3])
            XCTAssertEqual(try comm.allgatherv([Float(1)]), [[1]])
            XCTAssertEqual(try deterministicSum(contributions: [(index: 0, values: [1.5]), (index: 1, values: [2])], total: 2, comm: comm), [3.5])
        }
    }

    func testBenchmarkReturnsOneRowPerSize() throws {
        let rows = try InProcessCommunicator.run(size: 2) { comm in
            try benchmarkAllreduce(comm: comm, bytes: [4096, 65536], repeats: 2)
        }
        for r in rows {
            XCTAssertEqual(r.map(\.bytes), [4096, 65536])
            XCTAssertTrue(r.allSatisfy { $0.seconds > 0 && $0.gigabytesPerSecond > 0 })
        }
        XCTAssertEqual(rows[0].map(\.seconds), rows[1].map(\.seconds), "every rank reports the slowest rank's time")
        XCTAssertThrowsError(try InProcessCommunicator.single().run { try benchmarkAllreduce(comm: $0, bytes: [1 << 20], repeats: 0) })
    }

    func testBitPatternDigestSeesTheLastBit() {
        let a = [1.0, 2.0]
        let b = [1.0, 2.0.nextUp]
        XCTAssertEqual(bitPatternDigest(a), bitPatternDigest([1.0, 2.0]))
        XCTAssertNotEqual(bitPatternDigest(a), bitPatternDigest(b))
        XCTAssertEqual(bitPatternDigest(a).count, 16)
    }
}

extension InProcessCommunicator {
    fileprivate func run<T>(_ body: (InProcessCommunicator) throws -> T) rethrows -> T { try body(self) }
}
