import Foundation

// The entry points libFuzzer calls when this target is built with `--sanitize fuzzer` (see
// launch/fuzz.sh); in an ordinary build nothing calls them and main.swift is the entry point.

nonisolated(unsafe) var libFuzzerTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func libFuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> Int32 {
    // libFuzzer owns the command line, so the target comes from the environment.
    let name = ProcessInfo.processInfo.environment["LIGAND_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name) else {
        FileHandle.standardError.write(Data("ligand-fuzz: set LIGAND_FUZZ_TARGET to one of \(FuzzTargets.all.map(\.name).joined(separator: ", ")) (got '\(name)')\n".utf8))
        exit(2)
    }
    // launch/fuzz.sh asks the instrumented binary for its seeds too (it has no main of its own).
    if let dir = ProcessInfo.processInfo.environment["LIGAND_FUZZ_SEEDS"] {
        exit(writeSeeds(of: target, to: dir) ? 0 : 1)
    }
    libFuzzerTarget = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func libFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    libFuzzerTarget?.run(bytes)
    return 0
}
