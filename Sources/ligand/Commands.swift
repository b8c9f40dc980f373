import ArgumentParser

/// Every subcommand of `ligand`, in the order `--help` lists them.
enum LigandCommands {
    static let all: [ParsableCommand.Type] = [
        Info.self,
    ]
}
