import Foundation
import LigandFormats

/// The labelled image sets `--data DIR` accepts, told apart by the files in DIR (docs/model-files.md "Data sets"):
/// IDX files (the MNIST family), `train.npz`/`test.npz`, `train_images.npy`/`train_labels.npy` (and test_…),
/// `train.safetensors`/`test.safetensors`, each holding `images` [N, H, W] or [N, H, W, C] (uint8 → /255, or float
/// as given) and integer `labels` [N]; or `train/` and `test/` folders of PNG images, one folder per class
/// (torchvision's ImageFolder: classes are the sorted folder names of `train/`).
public enum ImageDataset {
    public typealias Split = MNISTFamily.Split

    public enum Layout: String, Sendable, CaseIterable {
        case idx, npz, npy, safetensors, imageFolder = "image folders"
    }

    static let accepted = "IDX files (train-images-idx3-ubyte[.gz], …), train.npz and test.npz, train_images.npy with train_labels.npy (and test_…), "
        + "train.safetensors and test.safetensors (tensors 'images' and 'labels'), or train/ and test/ folders of PNG images, one folder per class"

    /// The layout of the data in `directory`, or nil when none of the accepted files are there.
    public static func layout(of directory: URL) -> Layout? {
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) }
        if exists("train-images-idx3-ubyte.gz") || exists("train-images-idx3-ubyte") { return .idx }
        if exists("train.npz") { return .npz }
        if exists("train_images.npy") { return .npy }
        if exists("train.safetensors") { return .safetensors }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("train").path, isDirectory: &isDir), isDir.boolValue { return .imageFolder }
        return nil
    }

    static func requireLayout(_ directory: URL) throws -> Layout {
        guard let l = layout(of: directory) else {
            let exists = FileManager.default.fileExists(atPath: directory.path)
            throw DataError.format(path: directory.path, field: "data set", reason: (exists ? "none there: expected " : "the directory does not exist; a data set is ")
                                   + "\(accepted). " + MNISTFamily.missingHint)
        }
        return l
    }

    /// One split of the data set in `directory`.
    public static func load(directory: URL, split: Split) throws -> LabeledImages {
        let layout = try requireLayout(directory)
        if layout == .idx { return try MNISTFamily.load(directory: directory, split: split) }
        if layout == .imageFolder { return try ImageFolder.load(directory, split: split) }
        // Class count: one past the largest training label, so the test split agrees with the models trained on it.
        let (trainImages, trainLabels) = try arrays(directory, layout, .train, images: split == .train)
        let classes = try classCount(trainLabels)
        if split == .train { return try assemble(images: trainImages!, labels: trainLabels, classes: classes) }
        let (testImages, testLabels) = try arrays(directory, layout, .test, images: true)
        return try assemble(images: testImages!, labels: testLabels, classes: classes)
    }

    /// The files a data set is read from, with their sizes: its identity in cache keys (nothing is read).
    public static func identity(directory: URL) throws -> String {
        let layout = try requireLayout(directory)
        let names: [String]
        switch layout {
        case .idx: return try MNISTFamily.identity(directory: directory)
        case .npz: names = ["train.npz", "test.npz"]
        case .npy: names = ["train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"]
        case .safetensors: names = ["train.safetensors", "test.safetensors"]
        case .imageFolder: return try ImageFolder.identity(directory)
        }
        return try names.map { n in
            let path = directory.appendingPathComponent(n).path
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber else {
                throw DataError.missingFile(path: path, hint: "The data set in \(directory.path) is laid out as \(layout.rawValue) and needs it.")
            }
            return "\(n):\(size.int64Value)"
        }.joined(separator: ",")
    }

    /// The split's images (when asked) and labels arrays in an array layout.
    static func arrays(_ dir: URL, _ layout: Layout, _ split: Split, images wantImages: Bool) throws -> (DataArray?, DataArray) {
        let s = split.rawValue
        switch layout {
        case .npz:
            let url = dir.appendingPathComponent("\(s).npz")
            let bytes = try FileBytes.read(url)
            let members = try ZipArchive.members(bytes, path: url.path)
            func array(_ name: String) throws -> DataArray {
                guard let m = members.first(where: { $0.name == name + ".npy" }) else {
                    throw DataError.format(path: url.path, field: name, reason: "missing (the archive holds \(members.map { String($0.name.dropLast(4)) }.joined(separator: ", ")); save it with np.savez(f, images=..., labels=...))")
                }
                return try NPY.parse(try ZipArchive.extract(m, from: bytes, path: url.path), path: url.path, field: name)
            }
            return (wantImages ? try array("images") : nil, try array("labels"))
        case .npy:
            func array(_ name: String) throws -> DataArray {
                let url = dir.appendingPathComponent("\(s)_\(name).npy")
                return try NPY.parse(try FileBytes.read(url)[...], path: url.path, field: name)
            }
            return (wantImages ? try array("images") : nil, try array("labels"))
        case .safetensors:
            let url = dir.appendingPathComponent("\(s).safetensors")
            let file: SafeTensorsFile
            do { file = try SafeTensorsFile(url: url) } catch { throw DataError.unreadable(path: url.path, reason: "\(error)") }
            func array(_ name: String) throws -> DataArray {
                guard file.contains(name) else {
                    throw DataError.format(path: url.path, field: name, reason: "missing (the file holds \(file.entries.map(\.name).joined(separator: ", ")))")
                }
                let e = try file.entry(name)
                do {
                    if e.dtype == .u8 { return DataArray(path: url.path, field: name, shape: e.shape, values: .bytes(try file.bytes(name))) }
                    if e.dtype.isConvertibleInteger { return DataArray(path: url.path, field: name, shape: e.shape, values: .integers(try file.int64s(name).values)) }
                    return DataArray(path: url.path, field: name, shape: e.shape, values: .doubles(try file.doubles(name).values))
                } catch let error as DataError { throw error } catch {
                    throw DataError.format(path: url.path, field: name, reason: "\(error)")
                }
            }
            return (wantImages ? try array("images") : nil, try array("labels"))
        case .idx, .imageFolder: preconditionFailure("not an array layout")
        }
    }

    static func classCount(_ labels: DataArray) throws -> Int {
        let values = try labelValues(labels)
        guard let top = values.max() else { throw labels.fail("holds no labels") }
        guard top >= 1 else { throw labels.fail("every label is \(top): a data set needs at least two classes") }
        guard top < 1 << 20 else { throw labels.fail("label \(top) is implausibly large (at most 2^20 classes)") }
        return top + 1
    }

    static func labelValues(_ a: DataArray) throws -> [Int] {
        guard a.shape.count == 1 else { throw a.fail("must have one dimension [N], has shape \(a.shape)") }
        let v: [Int]
        switch a.values {
        case .bytes(let b): v = b.map(Int.init)
        case .integers(let i): v = i.map { $0 < 0 || $0 > Int64(Int32.max) ? -1 : Int($0) }
        case .doubles: throw a.fail("labels must be integers, found floating-point values")
        }
        if let i = v.firstIndex(where: { $0 < 0 }) { throw a.fail("label at index \(i) is negative or too large") }
        return v
    }

    /// Checked images and labels as one set; pixels are NHWC floats.
    static func assemble(images a: DataArray, labels l: DataArray, classes: Int) throws -> LabeledImages {
        let labels = try labelValues(l)
        if let i = labels.firstIndex(where: { $0 >= classes }) {
            throw DataError.labelOutOfRange(path: "\(l.path): \(l.field)", index: i, label: labels[i], classCount: classes)
        }
        let shape = a.shape
        guard shape.count == 3 || shape.count == 4 else { throw a.fail("must be [N, H, W] or [N, H, W, C], has shape \(shape)") }
        if shape.count == 4, [1, 3].contains(shape[1]), ![1, 3, 4].contains(shape[3]) {
            throw a.fail("shape \(shape) looks channels-first (NCHW); Ligand reads NHWC: save images.transpose(0, 2, 3, 1)")
        }
        let (h, w, c) = (shape[1], shape[2], shape.count == 4 ? shape[3] : 1)
        guard h > 0, w > 0, c > 0 else { throw a.fail("image shape \(shape.dropFirst()) has a zero size") }
        guard shape[0] == labels.count else {
            throw DataError.countMismatch(imagesPath: "\(a.path): \(a.field)", images: shape[0], labelsPath: "\(l.path): \(l.field)", labels: labels.count)
        }
        guard shape[0] > 0 else { throw a.fail("holds no images") }
        let pixels: [Float]
        switch a.values {
        case .bytes(let b): pixels = PixelConversion.unitFloats(b[...])
        case .doubles(let d):
            if let i = d.firstIndex(where: { !$0.isFinite || abs($0) > Double(Float.greatestFiniteMagnitude) }) {
                throw a.fail("value \(d[i]) at element \(i) is not a finite Float32")
            }
            pixels = d.map { Float($0) }
        case .integers: throw a.fail("images must be uint8 (scaled by 1/255) or floating point (taken as given), found integers wider than a byte")
        }
        return LabeledImages(height: h, width: w, channels: c, pixels: pixels, labels: labels, classCount: classes)
    }
}

/// `train/<class>/*.png` and `test/<class>/*.png` (torchvision's ImageFolder convention).
enum ImageFolder {
    static func classNames(_ folder: URL) throws -> [String] {
        let names = try entries(folder).filter { isDirectory(folder.appendingPathComponent($0)) }.sorted()
        guard names.count >= 2 else { throw DataError.format(path: folder.path, field: "classes", reason: "needs at least two class folders, found \(names.count)") }
        return names
    }

    static func entries(_ folder: URL) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") } } catch {
            throw DataError.unreadable(path: folder.path, reason: "cannot list the folder")
        }
    }

    static func isDirectory(_ u: URL) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: u.path, isDirectory: &d) && d.boolValue
    }

    /// Every PNG of a class folder, sorted by name; an empty class folder is refused.
    static func images(_ folder: URL) throws -> [URL] {
        let files = try entries(folder).filter { $0.lowercased().hasSuffix(".png") }.sorted()
        guard !files.isEmpty else { throw DataError.format(path: folder.path, field: "images", reason: "class folder holds no .png image") }
        return files.map { folder.appendingPathComponent($0) }
    }

    static func load(_ dir: URL, split: ImageDataset.Split) throws -> LabeledImages {
        let classes = try classNames(dir.appendingPathComponent("train"))
        let root = dir.appendingPathComponent(split.rawValue)
        guard isDirectory(root) else { throw DataError.missingFile(path: root.path, hint: "An image-folder data set needs train/ and test/.") }
        let here = split == .train ? classes : try entries(root).filter { isDirectory(root.appendingPathComponent($0)) }.sorted()
        if let unknown = here.first(where: { !classes.contains($0) }) {
            throw DataError.format(path: root.appendingPathComponent(unknown).path, field: "class", reason: "is not a class of \(dir.appendingPathComponent("train").path) (\(classes.joined(separator: ", ")))")
        }
        var pixels: [Float] = [], labels: [Int] = []
        var shape: (h: Int, w: Int, c: Int, file: String)?
        for name in here {
            let label = classes.firstIndex(of: name)!
            for url in try images(root.appendingPathComponent(name)) {
                let image = try PNG.decode(try FileBytes.read(url), path: url.path)
                if let s = shape {
                    guard (s.h, s.w, s.c) == (image.height, image.width, image.channels) else {
                        throw DataError.format(path: url.path, field: "size", reason: "is \(image.height)×\(image.width)×\(image.channels), but \(s.file) is \(s.h)×\(s.w)×\(s.c) (every image of a data set must have one size)")
                    }
                } else { shape = (image.height, image.width, image.channels, url.path) }
                pixels += PixelConversion.unitFloats(image.pixels[...])
                labels.append(label)
            }
        }
        guard let s = shape else { throw DataError.format(path: root.path, field: "images", reason: "holds no class folder") }
        return LabeledImages(height: s.h, width: s.w, channels: s.c, pixels: pixels, labels: labels, classCount: classes.count)
    }

    static func identity(_ dir: URL) throws -> String {
        var parts: [String] = []
        for split in ["train", "test"] {
            let root = dir.appendingPathComponent(split)
            var count = 0, bytes: Int64 = 0
            for name in try entries(root).sorted() where isDirectory(root.appendingPathComponent(name)) {
                for url in try images(root.appendingPathComponent(name)) {
                    count += 1
                    bytes += ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
                }
            }
            parts.append("\(split):\(count) png:\(bytes)")
        }
        return parts.joined(separator: ",")
    }
}

/// The single-file readers behind `ImageDataset`, for the fuzz harness: each returns the shapes it read or throws a
/// `DataError`; nothing else may happen on any input.
public enum DataFileReaders {
    /// Every array of a `.npz` archive.
    public static func npz(_ url: URL) throws -> [[Int]] {
        let bytes = try FileBytes.read(url)
        return try ZipArchive.members(bytes, path: url.path).map { try NPY.parse(try ZipArchive.extract($0, from: bytes, path: url.path), path: url.path, field: $0.name).shape }
    }

    public static func npy(_ url: URL) throws -> [Int] {
        try NPY.parse(try FileBytes.read(url)[...], path: url.path, field: "array").shape
    }

    /// [height, width, channels] of a PNG.
    public static func png(_ url: URL) throws -> [Int] {
        let image = try PNG.decode(try FileBytes.read(url), path: url.path)
        return [image.height, image.width, image.channels]
    }
}
