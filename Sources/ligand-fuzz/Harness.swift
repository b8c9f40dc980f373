import Foundation

// The ordinary (not libFuzzer) entry point (a libFuzzer build renames it out of libFuzzer's way): writes seed corpora and replays inputs in-process, so
// regression inputs are checked even where the libFuzzer runtime is missing.
//   ligand-fuzz seeds TARGET DIR          writes TARGET's valid seed files into DIR
//   ligand-fuzz replay TARGET FILE|DIR... runs every input once (a crash ends the process)
//   ligand-fuzz targets                   lists the targets
func usage() -> Never {
    FileHandle.standardError.write(Data("""
        usage: ligand-fuzz seeds TARGET DIR | replay TARGET FILE|DIR... | targets
        targets: \(FuzzTargets.all.map(\.name).joined(separator: ", "))
        (fuzzing itself runs under libFuzzer: bash launch/fuzz.sh SECONDS)

        """.utf8))
    exit(2)
}

func target(_ name: String) -> FuzzTarget {
    guard let t = FuzzTargets.named(name) else {
        FileHandle.standardError.write(Data("ligand-fuzz: no target '\(name)'\n".utf8))
        usage()
    }
    return t
}

@main
struct LigandFuzzMain {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        switch args.first {
        case "targets":
            print(FuzzTargets.all.map(\.name).joined(separator: "\n"))
        case "seeds" where args.count == 3:
            if !writeSeeds(of: target(args[1]), to: args[2]) { exit(1) }
        case "replay" where args.count >= 3:
            let t = target(args[1])
            var files: [String] = []
            for path in args.dropFirst(2) {
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                    FileHandle.standardError.write(Data("ligand-fuzz: \(path) does not exist\n".utf8)); exit(1)
                }
                if isDir.boolValue {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                    files += names.filter { !$0.hasPrefix(".") }.sorted().map { "\(path)/\($0)" }
                } else { files.append(path) }
            }
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    FileHandle.standardError.write(Data("ligand-fuzz: cannot read \(file)\n".utf8)); exit(1)
                }
                // Named before it runs: if it traps, the last line says which input did it.
                print("replay \(t.name): \(file)")
                t.run(Array(data))
            }
            print("replayed \(files.count) input(s) on \(t.name) without a crash")
        default:
            usage()
        }
    }
}
