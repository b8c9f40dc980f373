/// What a report row measures; `ligand run` reads its records from the kinds, never from the rows' display names.
public enum RowKind: String, Codable, Sendable {
    /// The method's merged model (NeuLig: one row per mode).
    case fused
    /// The mean-softmax prediction ensemble of the merged models.
    case ensemble
    /// NeuLig's Portland ensemble: the experts' outputs weighted by β(x).
    case portlandEnsemble = "portland-ensemble"
    /// The best single model (seeds, splits) or the experts each on its own task (tasks): a record's `bestSingle`.
    case bestSingle = "best-single"
    /// Another merge or summary beside the method's (weight averaging, pretrained + heads, task arithmetic, mean single model).
    case baseline
    /// The model the others were aligned into.
    case reference
    /// One merged model on its own.
    case single
}

/// One line of a report: a model or merge, its accuracy per task and on average.
public struct ReportRow: Codable, Sendable {
    public var name: String
    public var kind: RowKind
    public var accuracies: [Double]
    public var mean: Double
    public var hyperparameters: [String: String] = [:]
    public var seconds: Double?

    public init(name: String, kind: RowKind, accuracies: [Double], mean: Double, hyperparameters: [String: String] = [:], seconds: Double? = nil) {
        self.name = name; self.kind = kind; self.accuracies = accuracies; self.mean = mean; self.hyperparameters = hyperparameters; self.seconds = seconds
    }
}
