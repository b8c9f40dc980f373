import Foundation

/// MNIST, Fashion-MNIST and friends: an images IDX file [N, H, W] and a labels IDX file [N].
public enum MNISTFamily {
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        var prefix: String { self == .train ? "train" : "t10k" }
    }

    public static let environmentVariable = "LIGAND_FASHION_MNIST"
    public static let systemDirectory = "/usr/share/datasets/fashion-mnist"

    /// `$LIGAND_FASHION_MNIST` when set, else the directory Debian's dataset-fashion-mnist installs.
    public static var defaultDirectory: URL {
        if let v = ProcessInfo.processInfo.environment[environmentVariable], !v.isEmpty {
            return URL(fileURLWithPath: v, isDirectory: true)
        }
        return URL(fileURLWithPath: systemDirectory, isDirectory: true)
    }

    static let missingHint = "Fashion-MNIST is provided by Debian's package dataset-fashion-mnist "
        + "(apt-get install dataset-fashion-mnist, into \(systemDirectory)); "
        + "or set \(environmentVariable) to a directory holding the IDX files (.gz or raw)."

    /// The `.gz` file when present, else the raw one; the missing-file error names both.
    static func locate(_ directory: URL, _ name: String) throws -> URL {
        let gz = directory.appendingPathComponent(name + ".gz")
        let raw = directory.appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: gz.path) { return gz }
        if FileManager.default.fileExists(atPath: raw.path) { return raw }
        throw DataError.missingFile(path: gz.path, hint: "Neither it nor \(raw.path) exists. " + missingHint)
    }

    static let files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    /// Names and sizes of the four IDX files (cheap: nothing is read); a missing file is an error naming it.
    static func identity(directory: URL) throws -> String {
        var parts: [String] = []
        for name in files {
            var found = false
            for candidate in [name + ".gz", name] {
                let path = directory.appendingPathComponent(candidate).path
                if let attrs = try? FileManager.default.attributesOfItem(atPath: path), let size = attrs[.size] as? NSNumber {
                    parts.append("\(candidate):\(size.int64Value)"); found = true; break
                }
            }
            if !found { throw DataError.missingFile(path: directory.appendingPathComponent(name + ".gz").path, hint: missingHint) }
        }
        return parts.joined(separator: ",")
    }

    public static func load(directory: URL = defaultDirectory, split: Split, classCount: Int = 10) throws -> LabeledImages {
        let imagesURL = try locate(directory, "\(split.prefix)-images-idx3-ubyte")
        let labelsURL = try locate(directory, "\(split.prefix)-labels-idx1-ubyte")
        return try load(images: imagesURL, labels: labelsURL, classCount: classCount)
    }

    /// Loads an explicit pair of IDX files.
    public static func load(images imagesURL: URL, labels labelsURL: URL, classCount: Int = 10) throws -> LabeledImages {
        guard classCount > 0 else { throw DataError.invalidArgument(name: "classCount", reason: "must be positive, got \(classCount)") }
        let labelsIDX = try IDX.read(url: labelsURL, missingHint: missingHint)
        guard labelsIDX.dims.count == 1 else {
            throw DataError.unexpectedShape(path: labelsIDX.path, expected: "one dimension [N]", actual: labelsIDX.dims)
        }
        let imagesIDX = try IDX.read(url: imagesURL, missingHint: missingHint)
        guard imagesIDX.dims.count == 3, imagesIDX.dims[1] > 0, imagesIDX.dims[2] > 0 else {
            throw DataError.unexpectedShape(path: imagesIDX.path, expected: "three dimensions [N, H, W] with H, W > 0",
                                            actual: imagesIDX.dims)
        }
        guard imagesIDX.count == labelsIDX.count else {
            throw DataError.countMismatch(imagesPath: imagesIDX.path, images: imagesIDX.count,
                                          labelsPath: labelsIDX.path, labels: labelsIDX.count)
        }
        let labels = try decodeLabels(labelsIDX.payload, path: labelsIDX.path, classCount: classCount)
        let pixels = PixelConversion.unitFloats(imagesIDX.payload)
        return LabeledImages(height: imagesIDX.dims[1], width: imagesIDX.dims[2], channels: 1,
                             pixels: pixels, labels: labels, classCount: classCount)
    }

    static func decodeLabels(_ bytes: ArraySlice<UInt8>, path: String, classCount: Int) throws -> [Int] {
        var labels = [Int](repeating: 0, count: bytes.count)
        for (i, b) in bytes.enumerated() {
            guard Int(b) < classCount else {
                throw DataError.labelOutOfRange(path: path, index: i, label: Int(b), classCount: classCount)
            }
            labels[i] = Int(b)
        }
        return labels
    }
}

enum PixelConversion {
    /// Exact b/255 for every byte value, looked up rather than divided per pixel.
    static let table: [Float] = (0...255).map { Float($0) / 255 }

    static func unitFloats(_ bytes: ArraySlice<UInt8>) -> [Float] {
        let n = bytes.count
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            table.withUnsafeBufferPointer { t in
                bytes.withUnsafeBufferPointer { src in
                    for i in 0..<n { out[i] = t[Int(src[i])] }
                }
            }
            initialized = n
        }
    }
}
