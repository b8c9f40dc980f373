import XCTest
@testable import LigandNumerics

final class ParallelTests: XCTestCase {
    /// Every index runs exactly once, for worker counts above and below the index count, and while other threads
    /// (the in-process communicator's ranks) call in at the same time: one holds the pool, the others fall back.
    func testEachIndexOnceUnderConcurrentCallers() {
        let saved = Parallel.workers
        defer { Parallel.workers = saved }
        for workers in [1, 2, 3] {
            Parallel.setWorkers(workers)
            for count in [0, 1, 2, 5, 64] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { h in
                    let p = h.baseAddress
                    Parallel.forEach(count) { i in p![i] += 1 }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: count), "\(workers) workers, \(count) indices")
            }
            let callers = 4, count = 300
            let sums = UnsafeMutableBufferPointer<Int>.allocate(capacity: callers * count)
            sums.initialize(repeating: 0)
            defer { sums.deallocate() }
            DispatchQueue.concurrentPerform(iterations: callers) { c in
                for _ in 0..<50 { Parallel.forEach(count) { i in sums[c * count + i] += 1 } }
            }
            XCTAssertEqual(Array(sums), [Int](repeating: 50, count: callers * count), "\(workers) workers, concurrent callers")
        }
    }
}
