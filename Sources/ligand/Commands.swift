import ArgumentParser

/// Every subcommand of `ligand`, in the order `--help` lists them.
enum LigandCommands {
    static let all: [ParsableCommand.Type] = [
        Info.self,
        Train.self,
        Init.self,
        Predict.self,
        Import.self,
        Export.self,
        Split.self,
        Merge.self,
        Methods.self,
        Run.self,
        ReportCommand.self,
        Zoo.self,
        Eval.self,
        Bench.self,
        SelfTestMPI.self,
        SafeTensorsTool.self,
    ]
}

/// Bounds on command-line counts, shared by every command so a flag and its recipe key agree.
/// Numeric options are declared `@Option(parsing: .unconditional)`: otherwise `--epochs -3` reads "-3" as a flag
/// and argument-parser reports "Missing value for '--epochs'".
enum CountOption {
    /// Refuses `value` outside `min...max`, naming the flag: "--epochs must be a positive integer, got -3".
    static func check(_ value: Int?, _ flag: String, min: Int, max: Int = Int.max) throws {
        guard let value else { return }
        if value < min {
            let what = min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer ≥ \(min)"
            throw ValidationError("\(flag) must be \(what), got \(value)")
        }
        if value > max { throw ValidationError("\(flag) must be at most \(max), got \(value)") }
    }

    /// Every value of a comma-separated list option within `max`.
    static func check(_ list: PositiveIntList, _ flag: String, max: Int) throws {
        if let big = list.values.first(where: { $0 > max }) { throw ValidationError("\(flag) must be at most \(max), got \(big)") }
    }

    /// Worker threads: more than this is a typo, and each costs a stack.
    static let maxThreads = 1_024
}

/// `--data`, as every command that reads images declares it.
enum DataOption {
    static let help = ArgumentHelp(
        "Data set directory: IDX files, train/test .npz, .npy or .safetensors arrays, or train/ and test/ folders of PNGs per class (docs/model-files.md \"Data sets\"; default: $LIGAND_FASHION_MNIST or /usr/share/datasets/fashion-mnist).",
        valueName: "dir")
}
