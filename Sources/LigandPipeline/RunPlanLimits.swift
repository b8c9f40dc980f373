import Foundation
import LigandZoo

extension SubsetRule {
    /// How many subsets of size k out of n the rule yields, nil when more than `cap` (counted, never listed).
    public func count(of n: Int, size k: Int, cap: Int) -> Int? {
        switch self {
        case .first: return 1
        case .all: return RecipeLimits.binomial(n, k, cap: cap)
        case .random(let c): return RecipeLimits.binomial(n, k, cap: c) ?? (c <= cap ? c : nil)
        }
    }
}

extension RunRecipe {
    /// The number of runs `plan()` would list, nil when more than `cap`; overflow-safe and allocation-free.
    public func plannedRunCount(cap: Int = RecipeLimits.maxPlannedRuns) -> Int? {
        var total = 0
        for e in experiments {
            guard let n = Self.runCount(e, seeds: seeds, cap: cap), let t = RecipeLimits.sum(total, n), t <= cap else { return nil }
            total = t
        }
        return total
    }

    static func runCount(_ e: RunExperiment, seeds: Int, cap: Int) -> Int? {
        var total = 0
        for m in e.methods {
            for k in e.k {
                guard let subsets = e.subsets.count(of: e.available, size: k, cap: cap),
                      let runs = RecipeLimits.product(subsets, m.usesSeed ? seeds : 1),
                      let t = RecipeLimits.sum(total, runs), t <= cap else { return nil }
                total = t
            }
        }
        return total
    }

    /// Refuses a recipe whose plan is over `RecipeLimits.maxPlannedRuns`, naming the experiment (and `subsets` when it alone is too many).
    func checkPlanSize(_ top: Fields) throws {
        let cap = RecipeLimits.maxPlannedRuns, limit = RecipeLimits.grouped(cap)
        for (i, e) in experiments.enumerated() {
            let path = top.sub("experiments[\(i)]")
            for k in e.k where e.subsets.count(of: e.available, size: k, cap: cap) == nil {
                let c = RecipeLimits.binomial(e.available, k, cap: Int.max).map { RecipeLimits.grouped($0) } ?? "more than \(RecipeLimits.grouped(Int.max))"
                throw RecipeError(file: top.file, path: path + ".subsets",
                                  message: "'\(e.subsets)' asks for C(\(e.available), \(k)) = \(c) subsets of K = \(k), more than the limit of \(limit) planned runs")
            }
            guard Self.runCount(e, seeds: seeds, cap: cap) != nil else {
                throw RecipeError(file: top.file, path: path,
                                  message: "plans more than \(limit) runs (\(e.methods.count) method(s) × \(e.k.count) K value(s) × subsets × \(seeds) seed(s)): the limit is \(limit) per recipe")
            }
        }
        guard plannedRunCount(cap: cap) != nil else {
            throw top.error("experiments", "plan more than \(limit) runs together (experiment × method × K × subset × seed): the limit is \(limit) per recipe")
        }
    }
}
