"""Bring your own data: every layout `--data DIR` reads (docs/model-files.md "Data sets").

One small labelled image set is written in each layout (train/test .npz stored and deflated, .npy pairs,
.safetensors, folders of PNGs per class, the PNGs written here with every row filter); Ligand must read the same
images from each, shown by training the same seeded model on each and getting bitwise the same file. Bad input
(wrong shapes, a label out of range, channels-first arrays, mixed image sizes, an empty class folder) is refused
naming the file and the field, with nothing written. `ligand split` writes the calibration hold-out's indices.
"""
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
CLASSES = ["ankle", "bag", "coat"]


def ligand(*args, ok=True):
    r = subprocess.run([LIGAND, *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert r.returncode == 0, f"ligand {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r


def dataset(seed=0, shape=(8, 8, 3), n_train=36, n_test=12):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in [("train", n_train), ("test", n_test)]:
        # Sorted by class: the order an image folder lists them in, so every layout holds the same sequence.
        labels = np.arange(n) * len(CLASSES) // n
        out[split] = (rng.integers(0, 256, (n, *shape), dtype=np.uint8), labels.astype(np.int64))
    return out


def png_bytes(img):
    """A PNG (grey or RGB, 8-bit) whose rows cycle through the five filter types, encoded as the spec says."""
    h, w, c = img.shape
    bpp, rows, prior = c, [], np.zeros(w * c, np.int64)
    for y in range(h):
        row = img[y].reshape(-1).astype(np.int64)
        f = y % 5
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        if f == 0:
            pred = np.zeros_like(row)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prior
        elif f == 3:
            pred = (left + prior) // 2
        else:
            p = left + prior - upleft
            pa, pb, pc = abs(p - left), abs(p - prior), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upleft))
        rows.append(bytes([f]) + ((row - pred) % 256).astype(np.uint8).tobytes())
        prior = row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def write(layout, d, root):
    root.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in d.items():
        if layout == "npz":
            np.savez(root / f"{split}.npz", images=x, labels=y)
        elif layout == "npz-compressed":
            np.savez_compressed(root / f"{split}.npz", images=x, labels=y)
        elif layout == "npy":
            np.save(root / f"{split}_images.npy", x)
            np.save(root / f"{split}_labels.npy", y)
        elif layout == "safetensors":
            save_file({"images": x, "labels": y}, str(root / f"{split}.safetensors"))
        elif layout == "folders":
            for i, (img, label) in enumerate(zip(x, y)):
                folder = root / split / CLASSES[label]
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{i:04d}.png").write_bytes(png_bytes(img))
    return root


def train(root, out):
    return ligand("train", "--data", root, "--arch", "mlp", "--hidden", "8", "--epochs", "1", "--calibration", "6",
                  "--seed", "3", "--quiet", "--out", out)


LAYOUTS = ["npz", "npz-compressed", "npy", "safetensors", "folders"]


def test_every_layout_reads_the_same_images(tmp_path):
    d = dataset()
    models = {}
    for layout in LAYOUTS:
        root = write(layout, d, tmp_path / layout)
        r = train(root, tmp_path / f"{layout}.safetensors")
        assert "test" in r.stdout
        models[layout] = load_file(str(tmp_path / f"{layout}.safetensors"))
        assert models[layout]["layers.0.weight"].shape == (8, 8 * 8 * 3)
        assert models[layout]["head.weight"].shape == (3, 8)
    for layout in LAYOUTS[1:]:
        for name, value in models["npz"].items():
            np.testing.assert_array_equal(value, models[layout][name], err_msg=f"{layout}: {name}")


def test_grey_float_images_in_float_are_taken_as_given(tmp_path):
    d = dataset(shape=(8, 8))
    f = {s: ((x / 255.0).astype(np.float32), y) for s, (x, y) in d.items()}
    train(write("npz", d, tmp_path / "bytes"), tmp_path / "a.safetensors")
    train(write("npz", f, tmp_path / "floats"), tmp_path / "b.safetensors")
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a["layers.0.weight"].shape == (8, 64)
    for n in a:
        np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-6)


def refused(root, tmp_path, *needles):
    out = tmp_path / "refused.safetensors"
    r = ligand("train", "--data", root, "--arch", "mlp", "--hidden", "8", "--epochs", "1",
                                              "--calibration", "6", "--quiet", "--out", out, ok=False)
    assert r.returncode != 0, r.stdout
    assert not out.exists()
    for n in needles:
        assert n in r.stderr, f"{n!r} not in: {r.stderr}"
    assert "Traceback" not in r.stderr and "Fatal error" not in r.stderr


def test_bad_arrays_are_refused_by_file_and_field(tmp_path):
    d = dataset()
    bad = dict(d)
    bad["test"] = (d["test"][0], d["test"][1] + 5)
    root = write("npz", bad, tmp_path / "label")
    refused(root, tmp_path, str(root / "test.npz"), "labels", "out of range")

    bad = {s: (x.reshape(len(x), -1), y) for s, (x, y) in d.items()}
    root = write("npy", bad, tmp_path / "flat")
    refused(root, tmp_path, "train_images.npy", "images", "[N, H, W]")

    bad = {s: (x.transpose(0, 3, 1, 2).copy(), y) for s, (x, y) in dataset(shape=(8, 8, 3)).items()}
    root = write("safetensors", bad, tmp_path / "nchw")
    refused(root, tmp_path, "train.safetensors", "images", "channels-first", "transpose(0, 2, 3, 1)")

    bad = {s: (x, y[:-1]) for s, (x, y) in d.items()}
    root = write("npz", bad, tmp_path / "count")
    refused(root, tmp_path, "train.npz", "labels")

    bad = {s: (x, y.astype(np.float32)) for s, (x, y) in d.items()}
    root = write("npz", bad, tmp_path / "floatlabels")
    refused(root, tmp_path, "train.npz", "labels", "integers")

    root = tmp_path / "truncated"
    write("npz", d, root)
    data = (root / "train.npz").read_bytes()
    (root / "train.npz").write_bytes(data[: len(data) // 2])
    refused(root, tmp_path, "train.npz")

    root = tmp_path / "empty"
    root.mkdir()
    refused(root, tmp_path, str(root), "train.npz")


def test_bad_image_folders_are_refused_by_file_and_field(tmp_path):
    d = dataset(shape=(8, 8, 1))
    root = write("folders", d, tmp_path / "mixed")
    odd = root / "train" / "bag" / "9999.png"
    odd.write_bytes(png_bytes(np.zeros((9, 8, 1), np.uint8)))
    refused(root, tmp_path, str(odd), "size", "9×8×1")

    root = write("folders", d, tmp_path / "emptyclass")
    (root / "train" / "dress").mkdir()
    refused(root, tmp_path, str(root / "train" / "dress"), "no .png")

    root = write("folders", d, tmp_path / "unknown")
    (root / "test" / "zebra").mkdir()
    (root / "test" / "zebra" / "a.png").write_bytes(png_bytes(np.zeros((8, 8, 1), np.uint8)))
    refused(root, tmp_path, str(root / "test" / "zebra"), "not a class")

    root = write("folders", d, tmp_path / "corrupt")
    broken = sorted((root / "train" / "coat").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:40])
    refused(root, tmp_path, str(broken))


def test_split_writes_the_calibration_hold_out(tmp_path):
    root = write("npz", dataset(n_train=60), tmp_path / "d")
    ligand("split", "--data", root, "--calibration", 9, "--seed", 2, "--out", tmp_path / "cal.json", "--train-indices", tmp_path / "train.npy")
    ligand("split", "--data", root, "--calibration", 9, "--seed", 2, "--out", tmp_path / "cal.npy")
    doc = json.loads((tmp_path / "cal.json").read_text())
    cal, rest = np.array(doc["indices"]), np.load(tmp_path / "train.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "cal.npy"), cal)
    assert len(cal) == 9 and len(rest) == 51 and doc["seed"] == 2 and doc["training_images"] == 60
    assert sorted(set(cal) | set(rest)) == list(range(60)) and not set(cal) & set(rest)
    # Stratified: each of the three classes gives three images.
    labels = np.arange(60) * 3 // 60
    assert np.bincount(labels[cal]).tolist() == [3, 3, 3]
    r = ligand("split", "--data", root, "--calibration", 60, "--out", tmp_path / "x.json", ok=False)
    assert r.returncode != 0 and "--calibration" in r.stderr and not (tmp_path / "x.json").exists()


def test_a_vit_trains_on_images_of_another_size(tmp_path):
    """9×9 images and 3×3 patches: the architecture is checked against the data set's images, not Fashion-MNIST's."""
    root = write("npz", dataset(shape=(9, 9)), tmp_path / "d")
    ligand("train", "--data", root, "--arch", "vit", "--patch", 3, "--width", 8, "--depth", 1, "--heads", 2, "--epochs", 1,
           "--calibration", 6, "--quiet", "--out", tmp_path / "v.safetensors")
    assert load_file(str(tmp_path / "v.safetensors"))["pos_embed"].shape == (1, 10, 8)
