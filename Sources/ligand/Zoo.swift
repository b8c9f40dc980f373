import ArgumentParser
import Foundation
import LigandCollective
import LigandData
import LigandZoo

/// `ligand zoo build|list`: the cached collaborating-model suites (docs/suites.md).
struct Zoo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build and list the cached model suites described by recipes (recipes/*.yaml).",
        subcommands: [ZooBuild.self, ZooList.self])
}

/// Exits with one message when a user error is found before MPI starts: only rank 0 (or the
/// single process) prints it, so mpirun shows it once.
func failBeforeCollectives(_ error: Error) -> Never {
    let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap(Int.init) ?? 0
    if rank == 0 {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    }
    Foundation.exit(1)
}

struct CacheOption: ParsableArguments {
    @Option(help: ArgumentHelp("Cache directory (default: $LIGAND_ZOO_CACHE or cache/zoo).", valueName: "dir"))
    var cache: String?
    var root: URL { cache.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? ZooCache.defaultRoot }
}

struct ZooBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build the suites of a recipe that are not cached yet (one rank per model under mpirun).",
        discussion: """
        A suite lives in CACHE/<suite>-<hash>/, the hash covering the suite's resolved definition and the \
        data files' names and sizes. A suite whose manifest exists is not rebuilt; a build that was \
        interrupted reuses every complete model file of the same hash.
        """)

    @Argument(help: "The recipe (YAML).")
    var recipe: String
    @Option(help: "Build only this suite (default: every suite of the recipe).")
    var suite: String?
    @OptionGroup var cacheOption: CacheOption
    @Option(help: DataOption.help)
    var data: String?
    @Flag(help: "No progress output (default: off, progress on stderr).")
    var quiet = false

    func run() throws {
        let dir = data.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? MNISTFamily.defaultDirectory
        let root = cacheOption.root
        let specs: [SuiteSpec]
        let identity: String
        do {
            let r = try Recipe.load(path: recipe)
            specs = try suite.map { [try r.suite(named: $0)] } ?? r.suites
            identity = try ZooData.identity(directory: dir)
        } catch { failBeforeCollectives(error) }
        try withWorld("ligand zoo build") { comm in
            try buildSuites(specs, recipePath: recipe, dataDirectory: dir, identity: identity, root: root, comm: comm, quiet: quiet)
        }
    }
}

/// Builds every suite of `specs` that is not cached yet, under `comm` (shared by `ligand zoo build` and `ligand run`).
func buildSuites(_ specs: [SuiteSpec], recipePath: String, dataDirectory dir: URL, identity: String, root: URL, comm: Communicator, quiet: Bool) throws {
    let pending = specs.filter { ZooBuilder.upToDate($0, hash: SuiteHash.compute($0, dataIdentity: identity), root: root) == nil }
    for s in specs where !pending.contains(s) {
        let hash = SuiteHash.compute(s, dataIdentity: identity)
        if comm.isRoot { print("\(s.name): up to date in \(ZooCache.directory(root: root, suite: s.name, hash: hash).path) (nothing to do)") }
    }
    guard !pending.isEmpty else { return }
    let zooData = try ZooData.load(directory: dir)
    for s in pending {
        let hash = SuiteHash.compute(s, dataIdentity: identity)
        if comm.isRoot {
            print("\(s.name): building \(SuitePlan.jobs(s).count) model(s) on \(comm.size) rank(s) into \(ZooCache.directory(root: root, suite: s.name, hash: hash).path)")
        }
        let start = Date()
        let m = try ZooBuilder.build(spec: s, recipePath: recipePath, data: zooData, dataIdentity: identity, root: root,
                                     comm: comm, quiet: quiet) { line in
            if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        if comm.isRoot { print(String(format: "%@: done in %.0fs, %d model(s), manifest written", s.name, Date().timeIntervalSince(start), m.models.count)) }
    }
}

struct ZooList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Show the cached suites with each model's accuracy.")
    @OptionGroup var cacheOption: CacheOption

    func run() throws {
        let root = cacheOption.root
        let entries = ZooCache.entries(root: root)
        guard !entries.isEmpty else { print("no suite cached under \(root.path)"); return }
        for e in entries {
            guard let m = e.manifest else {
                print("\(e.directory.lastPathComponent): incomplete (\(e.modelFiles) model file(s), no manifest; `ligand zoo build` resumes it)")
                continue
            }
            print("\(m.suite) (\(m.kind.rawValue), hash \(m.hash), recipe \(m.recipe)): \(m.models.count) model(s) in \(e.directory.path)")
            for model in m.models {
                let cal = model.calibrationAccuracy.map { String(format: "  calibration %6.2f%%", 100 * $0) } ?? ""
                let name = model.name.padding(toLength: max(36, model.name.count), withPad: " ", startingAt: 0)
                print("  \(name) " + String(format: "test %6.2f%%", 100 * model.testAccuracy) + cal + "  (\(model.trainImages) training images)")
            }
        }
    }
}
