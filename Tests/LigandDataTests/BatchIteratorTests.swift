import XCTest
import LigandNumerics
@testable import LigandData

final class BatchIteratorTests: XCTestCase {
    /// 23 samples of 2×3×2 whose pixels encode their own index.
    func makeSet() -> LabeledImages {
        let n = 23
        let pixels = (0..<n).flatMap { i in (0..<12).map { j in Float(i) + Float(j) / 100 } }
        return LabeledImages(height: 2, width: 3, channels: 2, pixels: pixels, labels: (0..<n).map { $0 % 4 }, classCount: 4)
    }

    func testCoversEveryIndexOnceAndGathersRows() {
        let d = makeSet()
        var seen: [Int] = []
        var sizes: [Int] = []
        let it = BatchIterator(data: d, batchSize: 5, shuffle: true, seed: 1, epoch: 0)
        XCTAssertEqual(it.batchCount, 5)
        for b in it {
            sizes.append(b.count)
            XCTAssertEqual(b.pixels.shape, [b.count, 2, 3, 2])
            XCTAssertEqual(b.labels, b.indices.map { $0 % 4 })
            for (r, i) in b.indices.enumerated() {
                XCTAssertEqual(Array(b.pixels.storage[(r * 12)..<((r + 1) * 12)]), Array(d.image(i)))
            }
            seen += b.indices
        }
        XCTAssertEqual(sizes, [5, 5, 5, 5, 3])
        XCTAssertEqual(seen.sorted(), Array(0..<23))
        XCTAssertNotEqual(seen, Array(0..<23))
    }

    func testUnshuffledKeepsOrder() {
        let all = BatchIterator(data: makeSet(), batchSize: 10).flatMap { $0.indices }
        XCTAssertEqual(all, Array(0..<23))
    }

    func testShuffleIsDeterministicAndDiffersBetweenEpochs() {
        let d = makeSet()
        func order(epoch: Int, seed: UInt64 = 42) -> [Int] {
            BatchIterator(data: d, batchSize: 4, shuffle: true, seed: seed, epoch: epoch).flatMap { $0.indices }
        }
        XCTAssertEqual(order(epoch: 0), order(epoch: 0))
        XCTAssertEqual(order(epoch: 3), order(epoch: 3))
        XCTAssertNotEqual(order(epoch: 0), order(epoch: 1))
        XCTAssertNotEqual(order(epoch: 0, seed: 42), order(epoch: 0, seed: 43))
        for e in 0..<4 { XCTAssertEqual(order(epoch: e).sorted(), Array(0..<23)) }
        // The documented stream, so another component can reproduce the order from the seed alone.
        var rng = SeededRNG(seed: 42, stream: "epoch-2")
        XCTAssertEqual(order(epoch: 2), rng.permutation(23))
    }

    func testIndexSubsetAndDropLast() {
        let d = makeSet()
        let idx = [20, 3, 7, 11, 15, 19, 1]
        let it = BatchIterator(data: d, indices: idx, batchSize: 3, shuffle: true, seed: 9, dropLast: true)
        XCTAssertEqual(it.batchCount, 2)
        let batches = Array(it)
        XCTAssertEqual(batches.map { $0.count }, [3, 3])
        let seen = batches.flatMap { $0.indices }
        XCTAssertTrue(Set(seen).isSubset(of: Set(idx)))
        XCTAssertEqual(Set(seen).count, 6)
        let keep = Array(BatchIterator(data: d, indices: idx, batchSize: 3))
        XCTAssertEqual(keep.map { $0.indices }, [[20, 3, 7], [11, 15, 19], [1]])
        XCTAssertEqual(Array(BatchIterator(data: d, indices: [], batchSize: 3)).count, 0)
    }
}
