import Foundation

/// Hand-written SVG charts of a `RunReport` (docs/run.md): plain SVG 1.1 that any browser renders.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public var dashed = false
        public var lines = true
        public init(name: String, points: [(x: Double, y: Double)], color: String, dashed: Bool = false, lines: Bool = true) {
            self.name = name; self.points = points; self.color = color; self.dashed = dashed; self.lines = lines
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

    /// Text and attribute values: the five XML entities, and control characters (not allowed in XML 1.0) replaced.
    static func escape(_ s: String) -> String { inertText(s, ["\"": "&quot;", "'": "&#39;"]) }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    /// Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^n, about five of them.
    public static func ticks(_ lo: Double, _ hi: Double, integers: Bool = false) -> [Double] {
        guard hi > lo else { return [lo] }
        let raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        if integers { step = max(1, step.rounded()) }
        var out: [Double] = []
        var t = (lo / step).rounded(.up) * step
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// One panel: axes with ticks and labels, the series, a title; `origin` places it inside a larger SVG.
    static func panel(title: String, xLabel: String, yLabel: String, series: [Series], xRange: (Double, Double), yRange: (Double, Double),
                      integerX: Bool, diagonal: Bool, origin: (x: Double, y: Double), size: (w: Double, h: Double)) -> String {
        let left = origin.x + 60, right = origin.x + size.w - 200, top = origin.y + 40, bottom = origin.y + size.h - 50
        func px(_ x: Double) -> Double { left + (x - xRange.0) / (xRange.1 - xRange.0) * (right - left) }
        func py(_ y: Double) -> Double { bottom - (y - yRange.0) / (yRange.1 - yRange.0) * (bottom - top) }
        var s = "<g class=\"panel\">\n"
        s += "<text x=\"\(f((left + right) / 2))\" y=\"\(f(origin.y + 22))\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escape(title))</text>\n"
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(right - left))\" height=\"\(f(bottom - top))\" fill=\"#ffffff\" stroke=\"#333333\"/>\n"
        for t in ticks(xRange.0, xRange.1, integers: integerX) {
            s += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top))\" x2=\"\(f(px(t)))\" y2=\"\(f(bottom))\" stroke=\"#e0e0e0\"/>"
            s += "<text x=\"\(f(px(t)))\" y=\"\(f(bottom + 16))\" text-anchor=\"middle\" font-size=\"11\">\(String(format: integerX ? "%.0f" : "%g", t))</text>\n"
        }
        for t in ticks(yRange.0, yRange.1) {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(py(t)))\" x2=\"\(f(right))\" y2=\"\(f(py(t)))\" stroke=\"#e0e0e0\"/>"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\" font-size=\"11\">\(String(format: "%g", t))</text>\n"
        }
        s += "<text x=\"\(f((left + right) / 2))\" y=\"\(f(bottom + 36))\" text-anchor=\"middle\" font-size=\"12\">\(escape(xLabel))</text>\n"
        s += "<text x=\"\(f(origin.x + 16))\" y=\"\(f((top + bottom) / 2))\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 \(f(origin.x + 16)) \(f((top + bottom) / 2)))\">\(escape(yLabel))</text>\n"
        if diagonal {
            let lo = max(xRange.0, yRange.0), hi = min(xRange.1, yRange.1)
            if hi > lo {
                s += "<line class=\"diagonal\" x1=\"\(f(px(lo)))\" y1=\"\(f(py(lo)))\" x2=\"\(f(px(hi)))\" y2=\"\(f(py(hi)))\" stroke=\"#888888\" stroke-dasharray=\"4 3\"/>\n"
            }
        }
        for se in series {
            s += "<g class=\"series\" data-name=\"\(escape(se.name))\">"
            if se.lines && se.points.count > 1 {
                let path = se.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(se.color)\" stroke-width=\"2\"\(se.dashed ? " stroke-dasharray=\"7 4\"" : "")/>"
            }
            if !se.dashed || se.points.count == 1 {
                for p in se.points { s += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"4\" fill=\"\(se.color)\"/>" }
            }
            s += "</g>\n"
        }
        // Legend right of the plot, so it never hides a point.
        let lx = right + 14, ly = top + 12
        for (i, se) in series.enumerated() {
            let y = ly + 16 * Double(i)
            if se.lines {
                s += "<line x1=\"\(f(lx))\" y1=\"\(f(y - 4))\" x2=\"\(f(lx + 22))\" y2=\"\(f(y - 4))\" stroke=\"\(se.color)\" stroke-width=\"2\"\(se.dashed ? " stroke-dasharray=\"7 4\"" : "")/>"
            } else {
                s += "<rect x=\"\(f(lx + 7))\" y=\"\(f(y - 8))\" width=\"8\" height=\"8\" fill=\"\(se.color)\"/>"
            }
            s += "<text x=\"\(f(lx + 28))\" y=\"\(f(y))\" font-size=\"11\">\(escape(se.name))</text>\n"
        }
        return s + "</g>\n"
    }

    static func range(_ values: [Double], pad: Double) -> (Double, Double) {
        guard let lo = values.min(), let hi = values.max() else { return (0, 1) }
        let p = max(pad, (hi - lo) * 0.08)
        return (lo - p, hi + p)
    }

    static func document(width: Double, height: Double, body: String) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n" + body + "</svg>\n"
    }

    static func suites(_ report: RunReport) -> [String] {
        var out: [String] = []
        for r in report.records where !out.contains(r.suite) { out.append(r.suite) }
        return out
    }

    /// Mean test accuracy (%) against K, one line per method (and mode), the ensemble's mean as a dashed line; one panel per suite.
    public static func accuracyVsK(_ report: RunReport) -> String {
        let names = suites(report), w = 700.0, h = 380.0
        var body = ""
        for (i, suite) in names.enumerated() {
            let groups = report.groups.filter { $0.suite == suite }
            var series: [Series] = []
            var seriesNames: [String] = []
            for g in groups where !seriesNames.contains(g.series) { seriesNames.append(g.series) }
            for (j, name) in seriesNames.enumerated() {
                let pts = groups.filter { $0.series == name }.map { (x: Double($0.k), y: 100 * $0.merged.mean) }
                series.append(Series(name: name, points: pts, color: palette[j % palette.count]))
            }
            // The ensemble of a K averaged over every run of that K in the suite.
            let rs = report.records.filter { $0.suite == suite && $0.ensemble != nil }
            let ensemble = Set(rs.map(\.k)).sorted().map { k in (x: Double(k), y: 100 * MeanStd(rs.filter { $0.k == k }.map { $0.ensemble! }).mean) }
            if !ensemble.isEmpty { series.append(Series(name: "ensemble", points: ensemble, color: "#000000", dashed: true)) }
            let ks = report.records.filter { $0.suite == suite }.map { Double($0.k) }
            let xr = (ks.min() ?? 2) - 0.5, xh = (ks.max() ?? 2) + 0.5
            let yr = range(series.flatMap { $0.points.map(\.y) }, pad: 1)
            body += panel(title: suite, xLabel: "K (models merged)", yLabel: "test accuracy %", series: series, xRange: (xr, xh), yRange: yr,
                          integerX: true, diagonal: false, origin: (Double(i) * w, 0), size: (w, h))
        }
        return document(width: max(1, Double(names.count)) * w, height: h, body: body)
    }

    /// What each run cost against K on log-log axes (log₂ K, log₁₀ of the figure): wall seconds, the busiest rank's CPU
    /// seconds, the largest peak resident memory of a rank, and the bytes rank 0 communicated; one line per suite and
    /// method, a panel per figure (a figure no run measured is left out).
    public static func costsVsK(_ report: RunReport) -> String {
        let figures: [(title: String, unit: String, value: (RunGroup) -> Double?)] = [
            ("wall time", "log₁₀ seconds", { $0.wallSeconds / Double(max(1, $0.runs)) }),
            ("CPU time of the busiest rank", "log₁₀ seconds", { $0.cpuSecondsMaxRank }),
            ("peak resident memory of a rank", "log₁₀ MB", { $0.peakResidentBytesMaxRank.map { Double($0) / 1e6 } }),
            ("bytes communicated (rank 0)", "log₁₀ MB", { $0.bytesCommunicated.flatMap { $0 > 0 ? $0 / 1e6 : nil } }),
        ]
        let gs = report.groups, w = 700.0, h = 380.0
        var names: [String] = []
        for g in gs where !names.contains("\(g.suite): \(g.series)") { names.append("\(g.suite): \(g.series)") }
        var body = "", panels = 0
        for fig in figures {
            var series: [Series] = []
            for (j, name) in names.enumerated() {
                let pts = gs.filter { "\($0.suite): \($0.series)" == name }.compactMap { g -> (x: Double, y: Double)? in
                    guard let v = fig.value(g), v > 0 else { return nil }
                    return (log2(Double(g.k)), log10(v))
                }
                if !pts.isEmpty { series.append(Series(name: name, points: pts, color: palette[j % palette.count])) }
            }
            guard !series.isEmpty else { continue }
            let xs = series.flatMap { $0.points.map(\.x) }
            body += panel(title: fig.title, xLabel: "log₂ K (models merged)", yLabel: fig.unit, series: series,
                          xRange: ((xs.min() ?? 1) - 0.25, (xs.max() ?? 1) + 0.25), yRange: range(series.flatMap { $0.points.map(\.y) }, pad: 0.1),
                          integerX: false, diagonal: false, origin: (Double(panels % 2) * w, Double(panels / 2) * h), size: (w, h))
            panels += 1
        }
        return document(width: (panels > 1 ? 2 : 1) * w, height: Double(max(1, (panels + 1) / 2)) * h, body: body)
    }

    /// Merged against ensemble accuracy (%), one point per subset (mean over seeds), one colour per method, with y = x.
    public static func mergedVsEnsemble(_ report: RunReport) -> String {
        var seriesNames: [String] = []
        for r in report.records where r.ensemble != nil && !seriesNames.contains("\(r.suite): \(r.series)") { seriesNames.append("\(r.suite): \(r.series)") }
        var series: [Series] = []
        for (j, name) in seriesNames.enumerated() {
            let rs = report.records.filter { "\($0.suite): \($0.series)" == name && $0.ensemble != nil }
            var keys: [String] = []
            for r in rs where !keys.contains("\(r.k)|\(r.subsetIndices)") { keys.append("\(r.k)|\(r.subsetIndices)") }
            let pts = keys.map { key -> (x: Double, y: Double) in
                let g = rs.filter { "\($0.k)|\($0.subsetIndices)" == key }
                return (100 * MeanStd(g.map { $0.ensemble! }).mean, 100 * MeanStd(g.map(\.accuracy)).mean)
            }
            series.append(Series(name: name, points: pts, color: palette[j % palette.count], lines: false))
        }
        let all = series.flatMap { $0.points.flatMap { [$0.x, $0.y] } }
        let r = range(all, pad: 1)
        let body = panel(title: "merged vs ensemble (one point per subset)", xLabel: "ensemble test accuracy %", yLabel: "merged test accuracy %",
                         series: series, xRange: r, yRange: r, integerX: false, diagonal: true, origin: (0, 0), size: (760, 520))
        return document(width: 760, height: 520, body: body)
    }
}
