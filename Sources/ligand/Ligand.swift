import ArgumentParser
import Foundation

@main
struct Ligand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ligand",
        abstract: "Fuse many trained neural networks into one (NeuLig, CCA Merge and baselines), over MPI.",
        discussion: """
        Run it under mpirun to spread the collaborating models over ranks, or without mpirun as one rank.
        Every subcommand documents its options with `ligand help SUBCOMMAND`.
        """,
        subcommands: LigandCommands.all
    )
}
