"""Bring your own models: `ligand import` and `ligand export` across the Python boundary.

Files are written here in the layouts users have (PyTorch nn.Sequential numbering, flax/JAX [in, out] kernels,
timm ViT names, CIFAR-style ResNet-20 names), imported, and Ligand's logits (`ligand predict`) compared with a
numpy forward of the original file written from the framework's semantics. A square kernel without --layout is
refused naming the flag; a merge of imported models is exported back under the original names and a numpy forward
of the exported file gives Ligand's logits. docs/model-files.md documents the contract these tests hold.
"""
import json
import os
import subprocess

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from test_vit_interop import timm_shapes, vit_forward

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
FASHION = os.environ.get("LIGAND_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def ligand(*args, ok=True):
    r = subprocess.run([LIGAND, *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert r.returncode == 0, f"ligand {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r


def predict(model, x, tmp_path, name="x"):
    """Ligand's logits for NHWC images x."""
    inp, out = tmp_path / f"{name}-in.safetensors", tmp_path / f"{name}-out.safetensors"
    save_file({"input": np.ascontiguousarray(x, dtype=np.float32)}, str(inp))
    ligand("predict", "--model", model, "--input", inp, "--out", out)
    return load_file(str(out))["logits"]


def sequential_mlp(rng, sizes, flatten_first=True):
    """A PyTorch nn.Sequential([Flatten,] Linear, ReLU, …, Linear) state_dict: weights [out, in]."""
    t, index = {}, 1 if flatten_first else 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        t[f"{index}.weight"] = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        t[f"{index}.bias"] = (0.1 * rng.standard_normal(b)).astype(np.float32)
        index += 2
    return t


def sequential_forward(t, x, mean=0.0, std=1.0):
    """PyTorch semantics: Normalize(mean, std) on pixels / 255, Flatten (C, H, W order is H, W for C = 1), Linear/ReLU."""
    h = ((x - mean) / std).reshape(len(x), -1)
    keys = sorted({k.rsplit(".", 1)[0] for k in t}, key=lambda k: int(k))
    for i, k in enumerate(keys):
        h = h @ t[k + ".weight"].T + t[k + ".bias"]
        if i < len(keys) - 1:
            h = np.maximum(h, 0)
    return h


def images(rng, n=16, shape=(28, 28, 1)):
    return rng.random((n, *shape)).astype(np.float32)


def test_sequential_mlp_imports_with_its_normalisation(tmp_path):
    rng = np.random.default_rng(0)
    t = sequential_mlp(rng, [784, 48, 24, 10])
    src = tmp_path / "torch.safetensors"
    save_file(t, str(src))
    r = ligand("import", src, "--out", tmp_path / "m.safetensors", "--mean", "0.2860", "--std", "0.3530")
    assert "inferred layout: torch" in r.stdout and "input: 28×28×1" in r.stdout
    meta = safe_open(str(tmp_path / "m.safetensors"), "np").metadata()
    arch = json.loads(meta["ligand.architecture"])
    assert arch["hidden"] == [48, 24] and arch["normalize"] == {"mean": [0.286], "std": [0.353]}
    assert json.loads(meta["ligand.import"])["names"]["layers.0.weight"] == "1.weight"
    x = images(rng)
    want = sequential_forward(t, x, 0.2860, 0.3530)
    got = predict(tmp_path / "m.safetensors", x, tmp_path)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Without the normalisation the same weights compute something else: the contract is in the file.
    ligand("import", src, "--out", tmp_path / "raw.safetensors")
    assert np.abs(predict(tmp_path / "raw.safetensors", x, tmp_path, "raw") - want).max() > 1e-2


def test_a_bgr_model_on_raw_pixels_carries_its_scale_and_channel_order(tmp_path):
    """A model trained on raw 0…255 BGR pixels (OpenCV's order): --scale and --channel-order put that in the file."""
    rng = np.random.default_rng(11)
    t = sequential_mlp(rng, [48, 20, 10], flatten_first=False)
    save_file(t, str(tmp_path / "bgr.safetensors"))
    ligand("import", tmp_path / "bgr.safetensors", "--out", tmp_path / "m.safetensors", "--input", "4,4,3",
           "--scale", 255, "--channel-order", "2,1,0", "--mean", "104,117,123", "--std", "58,57,57")
    arch = json.loads(safe_open(str(tmp_path / "m.safetensors"), "np").metadata()["ligand.architecture"])
    assert arch["normalize"] == {"mean": [104, 117, 123], "std": [58, 57, 57], "scale": 255, "channels": [2, 1, 0]}
    x = images(rng, 5, (4, 4, 3))
    raw_bgr = x[..., ::-1] * 255
    want = sequential_forward(t, raw_bgr, np.array([104, 117, 123]), np.array([58, 57, 57]))
    np.testing.assert_allclose(predict(tmp_path / "m.safetensors", x, tmp_path), want, rtol=1e-4, atol=1e-4)
    r = ligand("import", tmp_path / "bgr.safetensors", "--out", tmp_path / "bad.safetensors", "--input", "4,4,3", "--channel-order", "0,0,1", ok=False)
    assert r.returncode != 0 and "normalize.channels" in r.stderr and not (tmp_path / "bad.safetensors").exists()


def test_a_square_kernel_without_a_layout_is_refused_naming_the_flag(tmp_path):
    rng = np.random.default_rng(1)
    # flax.linen.Dense kernels are [in, out]; the middle one is square.
    k = {"params/Dense_0/kernel": rng.standard_normal((784, 32)) / 28, "params/Dense_0/bias": 0.1 * rng.standard_normal(32),
         "params/Dense_1/kernel": rng.standard_normal((32, 32)) / 6, "params/Dense_1/bias": 0.1 * rng.standard_normal(32),
         "params/Dense_2/kernel": rng.standard_normal((32, 10)) / 6, "params/Dense_2/bias": 0.1 * rng.standard_normal(10)}
    k = {n: v.astype(np.float32) for n, v in k.items()}
    src = tmp_path / "flax.safetensors"
    save_file(k, str(src))
    out = tmp_path / "m.safetensors"
    r = ligand("import", src, "--out", out, ok=False)
    assert r.returncode != 0 and not out.exists()
    assert "params/Dense_1/kernel" in r.stderr and "--layout flax" in r.stderr and "--layout torch" in r.stderr
    ligand("import", src, "--out", out, "--layout", "flax")
    x = images(rng)
    h = x.reshape(len(x), -1)
    for i in range(3):
        h = h @ k[f"params/Dense_{i}/kernel"] + k[f"params/Dense_{i}/bias"]
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(predict(out, x, tmp_path), h, rtol=1e-4, atol=1e-4)
    # Read as PyTorch's layout the same file is refused: its shapes do not connect.
    r = ligand("import", src, "--out", tmp_path / "wrong.safetensors", "--layout", "torch", ok=False)
    assert r.returncode != 0 and "do not connect" in r.stderr


def test_a_non_square_flax_mlp_is_read_from_its_shapes(tmp_path):
    rng = np.random.default_rng(2)
    k = {"Dense_0.kernel": rng.standard_normal((784, 40)) / 28, "Dense_0.bias": np.zeros(40),
         "Dense_1.kernel": rng.standard_normal((40, 10)) / 6, "Dense_1.bias": np.zeros(10)}
    save_file({n: v.astype(np.float32) for n, v in k.items()}, str(tmp_path / "f.safetensors"))
    r = ligand("import", tmp_path / "f.safetensors", "--out", tmp_path / "m.safetensors")
    assert "inferred layout: flax" in r.stdout


def test_timm_vit_imports_once_its_heads_are_given(tmp_path):
    rng = np.random.default_rng(3)
    a = {"kind": "vit", "input": [28, 28, 1], "classes": 10, "width": 24, "patch": 7, "depth": 2, "heads": 3, "mlp_ratio": 2.5}
    t = {n: (0.2 * rng.standard_normal(s)).astype(np.float32) for n, s in timm_shapes(a)}
    for n in t:
        if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "norm.weight":
            t[n] = (1 + 0.1 * rng.standard_normal(t[n].shape)).astype(np.float32)
    save_file({"module." + n: v for n, v in t.items()}, str(tmp_path / "timm.safetensors"))
    out = tmp_path / "vit.safetensors"
    r = ligand("import", tmp_path / "timm.safetensors", "--out", out, "--strip-prefix", "module.", ok=False)
    assert r.returncode != 0 and "--heads" in r.stderr and not out.exists()
    ligand("import", tmp_path / "timm.safetensors", "--out", out, "--strip-prefix", "module.", "--heads", 3)
    arch = json.loads(safe_open(str(out), "np").metadata()["ligand.architecture"])
    assert (arch["width"], arch["patch"], arch["depth"], arch["heads"], arch["mlp_ratio"]) == (24, 7, 2, 3, 2.5)
    x = images(rng, 4)
    want = vit_forward(a, t, x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(predict(out, x, tmp_path), want, rtol=1e-4, atol=1e-4)


def test_malformed_vit_shapes_are_refused_not_trapped(tmp_path):
    a = {"kind": "vit", "input": [28, 28, 1], "classes": 10, "width": 8, "patch": 7, "depth": 1, "heads": 2, "mlp_ratio": 2}
    for name, shape in [("pos_embed", (1, 0, 8)), ("pos_embed", (1, 18, 8)), ("patch_embed.proj.weight", (8, 1, 0, 0)), ("cls_token", (1, 1, 0))]:
        t = {n: np.zeros(s, np.float32) for n, s in timm_shapes(a)}
        t[name] = np.zeros(shape, np.float32)
        save_file(t, str(tmp_path / "bad.safetensors"))
        r = ligand("import", tmp_path / "bad.safetensors", "--out", tmp_path / "m.safetensors", "--heads", 2, ok=False)
        assert r.returncode not in (0, -4, -5, -6, -11, 132, 133, 134) and r.stderr.startswith("Error:"), (name, shape, r.returncode, r.stderr)
        assert not (tmp_path / "m.safetensors").exists()


def test_cifar_resnet20_names_import_and_export_back(tmp_path):
    """A ResNet-20 whose head is called `linear` (the CIFAR ResNets' name) imports, and exports under that name."""
    ligand("init", "--arch", "resnet20", "--input", "16,16,3", "--seed", 4, "--out", tmp_path / "r.safetensors")
    t = load_file(str(tmp_path / "r.safetensors"))
    renamed = {("linear." + n[3:] if n.startswith("fc.") else n): v for n, v in t.items()}
    save_file(renamed, str(tmp_path / "cifar.safetensors"))
    r = ligand("import", tmp_path / "cifar.safetensors", "--out", tmp_path / "m.safetensors", ok=False)
    assert r.returncode != 0 and "--input" in r.stderr
    ligand("import", tmp_path / "cifar.safetensors", "--out", tmp_path / "m.safetensors", "--input", "16,16,3")
    x = images(np.random.default_rng(5), 4, (16, 16, 3))
    np.testing.assert_array_equal(predict(tmp_path / "m.safetensors", x, tmp_path, "a"), predict(tmp_path / "r.safetensors", x, tmp_path, "b"))
    ligand("export", tmp_path / "m.safetensors", "--out", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert set(back) == set(renamed)
    for n in renamed:
        np.testing.assert_array_equal(back[n], renamed[n])


def test_torchvision_vgg_imports_with_its_architecture(tmp_path):
    """A BatchNorm VGG with its one Linear saved as `classifier.0`: its pools leave no tensor, so the config is asked for."""
    ligand("init", "--arch", "vgg", "--vgg-config", "8,M,16", "--batch-norm", "--seed", 8, "--out", tmp_path / "v.safetensors")
    arch = safe_open(str(tmp_path / "v.safetensors"), "np").metadata()["ligand.architecture"]
    t = load_file(str(tmp_path / "v.safetensors"))
    save_file({n.replace("classifier.", "classifier.0."): v for n, v in t.items()}, str(tmp_path / "tv.safetensors"))
    r = ligand("import", tmp_path / "tv.safetensors", "--out", tmp_path / "m.safetensors", ok=False)
    assert r.returncode != 0 and "--architecture" in r.stderr and "pool" in r.stderr
    ligand("import", tmp_path / "tv.safetensors", "--out", tmp_path / "m.safetensors", "--architecture", arch)
    x = images(np.random.default_rng(9), 4)
    np.testing.assert_array_equal(predict(tmp_path / "m.safetensors", x, tmp_path, "a"), predict(tmp_path / "v.safetensors", x, tmp_path, "b"))


def flax_mlp(rng, tmp_path, i):
    k = {f"params/Dense_{j}/kernel": (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for j, s in enumerate([(784, 40), (40, 10)])}
    k.update({f"params/Dense_{j}/bias": (0.1 * rng.standard_normal(n)).astype(np.float32) for j, n in enumerate([40, 10])})
    return k, ["--layout", "flax"]


def flax_forward(t, x):
    h = np.maximum(x.reshape(len(x), -1) @ t["params/Dense_0/kernel"] + t["params/Dense_0/bias"], 0)
    return h @ t["params/Dense_1/kernel"] + t["params/Dense_1/bias"]


VIT = {"kind": "vit", "input": [28, 28, 1], "classes": 10, "width": 16, "patch": 7, "depth": 2, "heads": 2, "mlp_ratio": 2}


def timm_vit(rng, tmp_path, i):
    t = {n: (0.2 * rng.standard_normal(s)).astype(np.float32) for n, s in timm_shapes(VIT)}
    for n in t:
        if n.endswith(("norm1.weight", "norm2.weight")) or n == "norm.weight":
            t[n] = (1 + 0.1 * rng.standard_normal(t[n].shape)).astype(np.float32)
    return t, ["--heads", 2]


def from_init(args, rename):
    """A Ligand-initialised network saved under the layout's own names."""
    def make(rng, tmp_path, i):
        ligand("init", *args, "--seed", i, "--out", tmp_path / f"init{i}.safetensors")
        return {rename(n): v for n, v in load_file(str(tmp_path / f"init{i}.safetensors")).items()}, []
    return make


def conv_forward(arch, back_rename):
    def run(t, x):
        from test_numpy_forward import forward
        return forward(arch, {back_rename(n): v for n, v in t.items()}, x.transpose(0, 3, 1, 2).astype(np.float64))
    return run


LAYOUTS = {
    "torch-mlp": (lambda rng, tmp_path, i: (sequential_mlp(rng, [784, 40, 10]), []), sequential_forward),
    "flax-mlp": (flax_mlp, flax_forward),
    "timm-vit": (timm_vit, lambda t, x: vit_forward(VIT, t, x.transpose(0, 3, 1, 2))),
    "cifar-resnet20": (from_init(["--arch", "resnet20"], lambda n: "linear." + n[3:] if n.startswith("fc.") else n),
                       conv_forward({"kind": "resnet20"}, lambda n: "fc." + n[7:] if n.startswith("linear.") else n)),
    "torchvision-vgg": (from_init(["--arch", "vgg", "--vgg-config", "8,M,16"], lambda n: n.replace("classifier.", "classifier.0.")),
                        conv_forward({"kind": "vgg", "config": [8, "M", 16]}, lambda n: n.replace("classifier.0.", "classifier."))),
}


def tiny_data(root, rng):
    """A small 28×28×1, 10-class data set in the .npz layout, so the merge below stays quick for every architecture."""
    root.mkdir()
    for split, n in [("train", 300), ("test", 60)]:
        np.savez(root / f"{split}.npz", images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), labels=np.arange(n) % 10)
    return root


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_merge_of_imported_models_exports_in_their_own_layout(tmp_path, layout):
    """A file in each layout → import → merge → export → read back with the original names; numpy's logits are Ligand's."""
    make, forward = LAYOUTS[layout]
    rng = np.random.default_rng(6)
    files, names = [], None
    for i in range(2):
        t, args = make(rng, tmp_path, i)
        names = sorted(t)
        save_file(t, str(tmp_path / f"src{i}.safetensors"))
        extra = ["--architecture", json.dumps({"kind": "vgg", "config": [8, "M", 16], "input": [28, 28, 1], "classes": 10})] if "vgg" in layout else []
        ligand("import", tmp_path / f"src{i}.safetensors", "--out", tmp_path / f"m{i}.safetensors", *args, *extra)
        files.append(str(tmp_path / f"m{i}.safetensors"))
    data = tiny_data(tmp_path / "data", rng)
    ligand("merge", "--model-files", ",".join(files), "--method", "average", "--out", tmp_path / "fused", "--quiet",
           "--data", data, "--calibration-holdout", 100, "--bn-samples", 100)
    fused = tmp_path / "fused" / "average.safetensors"
    ligand("export", fused, "--out", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == names
    x = images(rng, 4)
    np.testing.assert_allclose(predict(fused, x, tmp_path), forward(back, x), rtol=1e-4, atol=1e-4)


def test_a_model_without_an_import_record_exports_with_like(tmp_path):
    t, _ = flax_mlp(np.random.default_rng(7), tmp_path, 0)
    save_file(t, str(tmp_path / "src.safetensors"))
    ligand("import", tmp_path / "src.safetensors", "--out", tmp_path / "m.safetensors", "--layout", "flax")
    ligand("init", "--arch", "mlp", "--hidden", "40", "--out", tmp_path / "plain.safetensors")
    r = ligand("export", tmp_path / "plain.safetensors", "--out", tmp_path / "p.safetensors", ok=False)
    assert r.returncode != 0 and "--like" in r.stderr and not (tmp_path / "p.safetensors").exists()
    ligand("export", tmp_path / "plain.safetensors", "--out", tmp_path / "p.safetensors", "--like", tmp_path / "m.safetensors")
    assert sorted(load_file(str(tmp_path / "p.safetensors"))) == sorted(t)


def test_refusals_name_the_tensor(tmp_path):
    rng = np.random.default_rng(7)
    t = sequential_mlp(rng, [784, 16, 10])
    del t["3.bias"]
    save_file(t, str(tmp_path / "nobias.safetensors"))
    r = ligand("import", tmp_path / "nobias.safetensors", "--out", tmp_path / "m.safetensors", ok=False)
    assert r.returncode != 0 and "module '3'" in r.stderr and "no bias" in r.stderr
    t = sequential_mlp(rng, [784, 16, 10])
    t["1.weight"][0, 0] = np.nan
    save_file(t, str(tmp_path / "nan.safetensors"))
    r = ligand("import", tmp_path / "nan.safetensors", "--out", tmp_path / "m.safetensors", ok=False)
    assert r.returncode != 0 and "1.weight" in r.stderr
    t = sequential_mlp(rng, [300, 16, 10])
    save_file(t, str(tmp_path / "odd.safetensors"))
    r = ligand("import", tmp_path / "odd.safetensors", "--out", tmp_path / "m.safetensors", ok=False)
    assert r.returncode != 0 and "--input" in r.stderr
    r = ligand("import", tmp_path / "odd.safetensors", "--out", tmp_path / "m.safetensors", "--input", "10,10,3")
    r = ligand("import", tmp_path / "odd.safetensors", "--out", tmp_path / "m.safetensors", "--input", "10,10,2", ok=False)
    assert r.returncode != 0 and "takes 300" in r.stderr
    r = ligand("import", tmp_path / "odd.safetensors", "--out", tmp_path / "m2.safetensors", "--input", "10,10,3", "--mean", "0.5,0.5", "--std", "0.2,0.2", ok=False)
    assert r.returncode != 0 and "normalize" in r.stderr and not (tmp_path / "m2.safetensors").exists()
    # A given architecture is the whole of it: an MLP's hidden widths are checked against the tensors, not ignored.
    arch = json.dumps({"kind": "mlp", "input": [10, 10, 3], "classes": 10, "hidden": [20]})
    r = ligand("import", tmp_path / "odd.safetensors", "--out", tmp_path / "m3.safetensors", "--architecture", arch, ok=False)
    assert r.returncode != 0 and "[20, 300]" in r.stderr and "the file's '1.weight'" in r.stderr


def read_idx(path):
    import gzip
    raw = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def fashion(split):
    prefix = "train" if split == "train" else "t10k"
    find = lambda n: next(p for p in (os.path.join(FASHION, n + ".gz"), os.path.join(FASHION, n)) if os.path.exists(p))
    return read_idx(find(f"{prefix}-images-idx3-ubyte")), read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)


MEAN, STD = 0.2860, 0.3530


def train_numpy_mlp(x, y, seed, hidden=96, epochs=3, lr=0.05, batch=64):
    """A PyTorch-style nn.Sequential(Flatten, Linear, ReLU, Linear) trained with SGD on normalised pixels, in numpy."""
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-1, 1, (hidden, 784)) / np.sqrt(784)
    b1 = np.zeros(hidden)
    w2 = rng.uniform(-1, 1, (10, hidden)) / np.sqrt(hidden)
    b2 = np.zeros(10)
    xs = ((x.reshape(len(x), -1) / 255.0) - MEAN) / STD
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for s in range(0, len(order), batch):
            i = order[s: s + batch]
            h = np.maximum(xs[i] @ w1.T + b1, 0)
            z = h @ w2.T + b2
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(i)), y[i]] -= 1
            g = p / len(i)
            dh = (g @ w2) * (h > 0)
            w2 -= lr * g.T @ h
            b2 -= lr * g.sum(0)
            w1 -= lr * dh.T @ xs[i]
            b1 -= lr * dh.sum(0)
    f32 = lambda a: a.astype(np.float32)
    return {"1.weight": f32(w1), "1.bias": f32(b1), "3.weight": f32(w2), "3.bias": f32(b2)}


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Fashion-MNIST (launch/setup.sh installs it)")
def test_end_to_end_numpy_trained_models_fused_with_cca_and_exported(tmp_path):
    """The README's "Your own models": split → train outside Ligand → import → merge → export → your own forward."""
    ligand("split", "--calibration", 5000, "--seed", 0, "--out", tmp_path / "cal.npy", "--train-indices", tmp_path / "train.npy")
    keep = np.load(tmp_path / "train.npy")
    x, y = fashion("train")
    files = []
    for seed in (1, 2):
        # Each model trains on its own 12,000 images, none of them in Ligand's calibration hold-out.
        part = np.random.default_rng(seed).choice(keep, 12000, replace=False)
        save_file(train_numpy_mlp(x[part], y[part], seed), str(tmp_path / f"torch{seed}.safetensors"))
        ligand("import", tmp_path / f"torch{seed}.safetensors", "--out", tmp_path / f"m{seed}.safetensors", "--mean", MEAN, "--std", STD)
        files.append(str(tmp_path / f"m{seed}.safetensors"))
    ligand("merge", "--model-files", ",".join(files), "--method", "cca", "--out", tmp_path / "fused", "--quiet")
    report = json.loads((tmp_path / "fused" / "report.json").read_text())
    fused_accuracy = next(r["mean"] for r in report["rows"] if r["kind"] == "fused")
    singles = [r["mean"] for r in report["rows"] if r["kind"] == "single"]
    ligand("export", tmp_path / "fused" / "cca.safetensors", "--out", tmp_path / "fused-torch.safetensors")
    t = load_file(str(tmp_path / "fused-torch.safetensors"))
    assert sorted(t) == ["1.bias", "1.weight", "3.bias", "3.weight"]
    xt, yt = fashion("test")
    logits = sequential_forward(t, xt.astype(np.float32)[..., None] / 255.0, MEAN, STD)
    accuracy = float((logits.argmax(1) == yt).mean())
    # Float32 sums in another order may flip an exact tie: one test image of slack, no more.
    assert abs(accuracy - fused_accuracy) <= 1e-4, (accuracy, fused_accuracy)
    assert min(singles) > 0.8 and fused_accuracy > 0.7, (singles, fused_accuracy)
