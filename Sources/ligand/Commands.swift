import ArgumentParser

/// Every subcommand of `ligand`, in the order `--help` lists them.
enum LigandCommands {
    static let all: [ParsableCommand.Type] = [
        Info.self,
        Train.self,
        Init.self,
        Predict.self,
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
