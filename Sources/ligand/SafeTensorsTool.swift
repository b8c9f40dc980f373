import ArgumentParser
import Foundation
import LigandFormats
import LigandNumerics

/// `ligand safetensors-tool`: hidden helpers that let the Python interoperability tests drive
/// the Swift reader and writer.
struct SafeTensorsTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safetensors-tool",
        abstract: "Inspect or write safetensors files (for interoperability tests).",
        shouldDisplay: false,
        subcommands: [Dump.self, WriteSample.self]
    )

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dump",
            abstract: "Print the metadata and, per tensor, name, dtype, shape, data offsets and SHA-256 of its bytes, as JSON."
        )

        @Argument(help: "The safetensors file.")
        var file: String

        struct TensorInfo: Codable {
            var name: String
            var dtype: String
            var shape: [Int]
            var data_offsets: [Int]
            var sha256: String
        }

        struct Report: Codable {
            var file: String
            var data_start: Int
            var metadata: [String: String]
            var tensors: [TensorInfo]
        }

        func run() throws {
            let f = try SafeTensorsFile(url: URL(fileURLWithPath: file))
            let tensors = try f.entries.map { e in
                TensorInfo(name: e.name, dtype: e.dtype.rawValue, shape: e.shape,
                           data_offsets: [e.range.lowerBound, e.range.upperBound],
                           sha256: try f.withRawBytes(e.name) { SHA256.hex($0) })
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let json = try encoder.encode(Report(file: file, data_start: f.dataStart, metadata: f.metadata, tensors: tensors))
            print(String(decoding: json, as: UTF8.self))
        }
    }

    struct WriteSample: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "write-sample",
            abstract: "Write a deterministic file holding every dtype, a scalar, an empty tensor and metadata."
        )

        @Argument(help: "Where to write the file.")
        var file: String

        func run() throws {
            try SafeTensors.write(Self.sampleTensors(), metadata: Self.sampleMetadata, to: URL(fileURLWithPath: file))
        }

        static let sampleMetadata = [
            "format": "ligand-sample",
            "architecture": "{\"kind\":\"mlp\",\"widths\":[4,3,2]}",
            "unicode": "λ → ✓",
        ]

        static func sampleTensors() -> [(name: String, value: TensorPayload)] {
            func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
                values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
            }
            var rng = SeededRNG(seed: 20_240_601)
            let normal = Tensor(shape: [2, 3, 2], storage: (0..<12).map { _ in Float(rng.normal()) })
            return [
                ("f64", .float64([-1.5, 0, 1e-300, 3.141592653589793, 1e300, -0x1.8p-1040], shape: [2, 3])),
                ("f32", .float32(normal)),
                ("f16", .float32(Tensor(shape: [5], storage: [0, -0.5, 65504, 0x1p-24, 1.0009765625]), storedAs: .f16)),
                ("bf16", .float32(Tensor(shape: [3], storage: [1.5, -3.25, 1e30]), storedAs: .bf16)),
                ("f8_e5m2", .raw(dtype: .f8e5m2, shape: [4], bytes: [0x00, 0x3C, 0xBC, 0x7B])),
                ("f8_e4m3", .raw(dtype: .f8e4m3, shape: [4], bytes: [0x00, 0x38, 0xB8, 0x7E])),
                ("i64", .int64([Int64.min, -1, 0, Int64.max], shape: [2, 2])),
                ("i32", .raw(dtype: .i32, shape: [4], bytes: le([Int32.min, -1, 0, Int32.max]))),
                ("i16", .raw(dtype: .i16, shape: [4], bytes: le([Int16.min, -1, 0, Int16.max]))),
                ("i8", .raw(dtype: .i8, shape: [4], bytes: le([Int8.min, -1, 0, Int8.max]))),
                ("u64", .raw(dtype: .u64, shape: [3], bytes: le([UInt64.min, 1, UInt64.max]))),
                ("u32", .raw(dtype: .u32, shape: [3], bytes: le([UInt32.min, 1, UInt32.max]))),
                ("u16", .raw(dtype: .u16, shape: [3], bytes: le([UInt16.min, 1, UInt16.max]))),
                ("u8", .raw(dtype: .u8, shape: [3], bytes: [0, 1, 255])),
                ("bool", .raw(dtype: .bool, shape: [3], bytes: [1, 0, 1])),
                ("scalar_f32", .float32(Tensor(shape: [], storage: [42.25]))),
                ("empty_i32", .raw(dtype: .i32, shape: [0, 3], bytes: [])),
                ("layers.0.weight", .float32(Tensor(shape: [3, 4], storage: (0..<12).map { Float($0) / 8 }))),
            ]
        }
    }
}
