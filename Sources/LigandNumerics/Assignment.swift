import Foundation

/// Why a linear-assignment problem was refused.
public enum AssignmentError: Error, Equatable, CustomStringConvertible {
    case notSquare(rows: Int, cols: Int)
    case nonFinite(rows: Int, cols: Int, row: Int, col: Int)

    public var description: String {
        switch self {
        case let .notSquare(r, c):
            return "Assignment.solve: cost matrix must be square (n×n), got \(r)×\(c)"
        case let .nonFinite(r, c, i, j):
            return "Assignment.solve: \(r)×\(c) cost matrix has a non-finite entry (NaN or infinity) at row \(i), column \(j)"
        }
    }
}

extension AssignmentError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Linear assignment (the Hungarian problem) on dense square cost matrices.
public enum Assignment {
    /// The permutation `perm` (perm[row] = column) with the least (or, if `maximize`, the greatest)
    /// total cost Σ cost[row, perm[row]]. Shortest augmenting paths with dual potentials, O(n³).
    public static func solve(cost: Matrix, maximize: Bool = false) throws -> [Int] {
        guard cost.rows == cost.cols else { throw AssignmentError.notSquare(rows: cost.rows, cols: cost.cols) }
        if let p = cost.firstNonFinite {
            throw AssignmentError.nonFinite(rows: cost.rows, cols: cost.cols, row: p.row, col: p.col)
        }
        let n = cost.rows
        if n == 0 { return [] }

        // Shifting each row by its best entry leaves the optimal permutation unchanged, makes every
        // cost ≥ 0 (so zero potentials start feasible) and keeps magnitudes near zero.
        var c = [Double](repeating: 0, count: n * n)
        cost.data.withUnsafeBufferPointer { src in
            for i in 0..<n {
                let row = UnsafeBufferPointer(rebasing: src[(i * n)..<((i + 1) * n)])
                if maximize {
                    let best = row.max()!
                    for j in 0..<n { c[i * n + j] = best - row[j] }
                } else {
                    let best = row.min()!
                    for j in 0..<n { c[i * n + j] = row[j] - best }
                }
            }
        }

        var col4row = [Int](repeating: -1, count: n)
        c.withUnsafeBufferPointer { cp in
            col4row.withUnsafeMutableBufferPointer { col4row in
                shortestAugmentingPaths(cp.baseAddress!, n, col4row)
            }
        }
        return col4row
    }

    /// Assigns rows one at a time, each along a Dijkstra shortest path in reduced costs
    /// c[i,j] − u[i] − v[j] ≥ 0; the potentials are updated so reduced costs stay non-negative.
    private static func shortestAugmentingPaths(_ c: UnsafePointer<Double>, _ n: Int,
                                                _ col4row: UnsafeMutableBufferPointer<Int>) {
        let u = UnsafeMutablePointer<Double>.allocate(capacity: n); u.initialize(repeating: 0, count: n)
        let v = UnsafeMutablePointer<Double>.allocate(capacity: n); v.initialize(repeating: 0, count: n)
        let shortest = UnsafeMutablePointer<Double>.allocate(capacity: n); shortest.initialize(repeating: 0, count: n)
        let row4col = UnsafeMutablePointer<Int>.allocate(capacity: n); row4col.initialize(repeating: -1, count: n)
        let path = UnsafeMutablePointer<Int>.allocate(capacity: n); path.initialize(repeating: -1, count: n)
        let remaining = UnsafeMutablePointer<Int>.allocate(capacity: n); remaining.initialize(repeating: 0, count: n)
        let visitedRows = UnsafeMutablePointer<Int>.allocate(capacity: n); visitedRows.initialize(repeating: 0, count: n)
        let visitedCols = UnsafeMutablePointer<Int>.allocate(capacity: n); visitedCols.initialize(repeating: 0, count: n)
        defer {
            for p in [u, v, shortest] { p.deallocate() }
            for p in [row4col, path, remaining, visitedRows, visitedCols] { p.deallocate() }
        }

        for current in 0..<n {
            for j in 0..<n { shortest[j] = .infinity; remaining[j] = j }
            var numRemaining = n
            var nRows = 0, nCols = 0
            var minVal = 0.0
            var i = current
            var sink = -1
            while sink < 0 {
                visitedRows[nRows] = i; nRows += 1
                let rowCost = c + i * n
                let ui = u[i]
                var lowest = Double.infinity
                var index = 0
                for k in 0..<numRemaining {
                    let j = remaining[k]
                    let r = minVal + rowCost[j] - ui - v[j]
                    if r < shortest[j] { path[j] = i; shortest[j] = r }
                    let s = shortest[j]
                    // Among equal distances prefer a free column: it ends the search at once.
                    if s < lowest || (s == lowest && row4col[j] < 0) { lowest = s; index = k }
                }
                minVal = lowest
                let j = remaining[index]
                if row4col[j] < 0 { sink = j } else { i = row4col[j] }
                visitedCols[nCols] = j; nCols += 1
                numRemaining -= 1
                remaining[index] = remaining[numRemaining]
            }

            u[current] += minVal
            for k in 1..<nRows {
                let r = visitedRows[k]
                u[r] += minVal - shortest[col4row[r]]
            }
            for k in 0..<nCols {
                let j = visitedCols[k]
                v[j] -= minVal - shortest[j]
            }

            var j = sink
            while true {
                let r = path[j]
                row4col[j] = r
                let previous = col4row[r]
                col4row[r] = j
                if r == current { break }
                j = previous
            }
        }
    }
}
