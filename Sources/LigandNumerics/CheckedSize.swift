/// Size arithmetic on numbers read from files, recipes and flags: nil instead of a trap on overflow.
public enum CheckedSize {
    /// The product of non-negative sizes, or nil when it overflows Int.
    public static func product(_ sizes: [Int]) -> Int? {
        var p = 1
        for d in sizes {
            let (q, o) = p.multipliedReportingOverflow(by: d)
            if o { return nil }
            p = q
        }
        return p
    }
}
