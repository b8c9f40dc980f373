// swift-tools-version:6.0
import PackageDescription

// Layers, bottom up (see README "Architecture"): C system modules → numerics → collective →
// data / formats → neural networks → merge methods → pipeline → the `ligand` executable.
let package = Package(
    name: "Ligand",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ligand", targets: ["ligand"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CLigandMPI", dependencies: ["CMPI"]),
        .target(name: "LigandNumerics", dependencies: ["CBLAS"]),
        .target(name: "LigandCollective", dependencies: ["CLigandMPI", "CMPI", "LigandNumerics"]),
        .target(name: "LigandData", dependencies: ["LigandNumerics", "LigandFormats", "CZlib"]),
        .target(name: "LigandFormats", dependencies: ["LigandNumerics"]),
        .target(name: "LigandNN", dependencies: ["LigandNumerics", "LigandData"]),
        .target(name: "LigandModels", dependencies: ["LigandNN", "LigandFormats", "LigandNumerics", "LigandData"]),
        .target(name: "LigandMerge", dependencies: ["LigandNN", "LigandNumerics", "LigandCollective", "LigandData"]),
        .target(name: "LigandNeuLig", dependencies: ["LigandNumerics", "LigandCollective", "LigandNN", "LigandFormats"]),
        .target(name: "LigandZoo", dependencies: [
            "LigandNumerics", "LigandCollective", "LigandData", "LigandFormats", "LigandNN", "LigandModels", "LigandMerge",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "LigandPipeline", dependencies: [
            "LigandNumerics", "LigandCollective", "LigandData", "LigandFormats", "LigandNN", "LigandModels", "LigandZoo", "LigandNeuLig", "LigandMerge",
        ]),
        .executableTarget(name: "ligand", dependencies: [
            "LigandNumerics", "LigandCollective", "LigandData", "LigandFormats", "LigandNN", "LigandModels", "LigandZoo", "LigandNeuLig", "LigandPipeline",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Fuzz harness over the file and recipe readers (launch/fuzz.sh builds it under libFuzzer).
        .executableTarget(name: "ligand-fuzz", dependencies: [
            "LigandData", "LigandFormats", "LigandModels", "LigandNN", "LigandNumerics", "LigandPipeline", "LigandZoo",
        ]),
        .testTarget(name: "LigandNumericsTests", dependencies: ["LigandNumerics"]),
        .testTarget(name: "LigandCollectiveTests", dependencies: ["LigandCollective", "LigandNumerics"]),
        .testTarget(name: "LigandDataTests", dependencies: ["LigandData", "LigandNumerics"]),
        .testTarget(name: "LigandFormatsTests", dependencies: ["LigandFormats", "LigandNumerics"]),
        .testTarget(name: "LigandNeuLigTests", dependencies: ["LigandNeuLig", "LigandCollective", "LigandNumerics"]),
        .testTarget(name: "LigandZooTests", dependencies: ["LigandZoo", "LigandData", "LigandCollective", "LigandNumerics", "LigandNN"]),
        .testTarget(name: "LigandMergeTests", dependencies: ["LigandMerge", "LigandNN", "LigandNumerics", "LigandCollective"]),
        .testTarget(name: "LigandPipelineTests", dependencies: ["LigandPipeline", "LigandMerge", "LigandNN", "LigandNumerics", "LigandCollective", "LigandData"]),
        .testTarget(name: "LigandNNTests", dependencies: ["LigandNN", "LigandNumerics", "LigandFormats", "LigandData", "LigandModels"]),
    ],
    swiftLanguageModes: [.v5]
)
