"""An independent numpy forward pass (PyTorch semantics, NCHW) of Ligand's three architectures.

The weights are random tensors written by Python's safetensors into a Ligand model file, so the test
checks both that Ligand reads PyTorch-layout files written elsewhere and that its logits match.
"""
import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")


def conv2d(x, w, b=None, stride=1, padding=0):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def batchnorm(x, t, prefix, eps=1e-5):
    g, b = t[prefix + ".weight"], t[prefix + ".bias"]
    m, v = t[prefix + ".running_mean"], t[prefix + ".running_var"]
    return (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + eps) * g[None, :, None, None] + b[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


def maxpool2(x):
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def forward(arch, t, x):
    if arch["kind"] == "mlp":
        a = x.reshape(x.shape[0], -1)
        for i in range(len(arch["hidden"])):
            a = relu(a @ t[f"layers.{2 * i}.weight"].T + t[f"layers.{2 * i}.bias"])
        return a @ t["head.weight"].T + t["head.bias"]
    if arch["kind"] == "vgg":
        a, index = x, 0
        for item in arch["config"]:
            if item == "M":
                a = maxpool2(a)
                index += 1
            else:
                a = relu(conv2d(a, t[f"features.{index}.weight"], t[f"features.{index}.bias"], padding=1))
                index += 2
        a = a.mean(axis=(2, 3))
        return a @ t["classifier.weight"].T + t["classifier.bias"]
    a = relu(batchnorm(conv2d(x, t["conv1.weight"], padding=1), t, "bn1"))
    for stage in range(3):
        for blk in range(3):
            p = f"layer{stage + 1}.{blk}"
            stride = 2 if stage > 0 and blk == 0 else 1
            h = relu(batchnorm(conv2d(a, t[p + ".conv1.weight"], stride=stride, padding=1), t, p + ".bn1"))
            h = batchnorm(conv2d(h, t[p + ".conv2.weight"], padding=1), t, p + ".bn2")
            if p + ".shortcut.0.weight" in t:
                s = batchnorm(conv2d(a, t[p + ".shortcut.0.weight"], stride=stride), t, p + ".shortcut.1")
            else:
                s = a
            a = relu(h + s)
    a = a.mean(axis=(2, 3))
    return a @ t["fc.weight"].T + t["fc.bias"]


CASES = [
    ["--arch", "mlp", "--hidden", "32,16"],
    ["--arch", "vgg", "--vgg-config", "8,M,16,16,M"],
    ["--arch", "resnet20", "--width", "1"],
]


@pytest.mark.parametrize("args", CASES, ids=["mlp", "vgg", "resnet20"])
def test_numpy_forward_matches_ligand(tmp_path, args):
    base = tmp_path / "base.safetensors"
    subprocess.run([LIGAND, "init", *args, "--out", str(base)], check=True, capture_output=True)
    with safe_open(str(base), framework="np") as f:
        meta = f.metadata()
    # The tensors are replaced below, so the recorded digest of the old data no longer applies.
    meta.pop("ligand.sha256", None)
    arch = json.loads(meta["ligand.architecture"])
    rng = np.random.default_rng(7)
    tensors = {}
    for name, value in load_file(str(base)).items():
        if name.endswith("num_batches_tracked"):
            tensors[name] = value
        elif name.endswith("running_var"):
            tensors[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        else:
            tensors[name] = (rng.standard_normal(value.shape) * (0.3 if value.ndim > 1 else 0.1)).astype(np.float32)
    model = tmp_path / "model.safetensors"
    save_file(tensors, str(model), metadata=meta)

    x = rng.uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    save_file({"input": x}, str(tmp_path / "input.safetensors"))
    out = tmp_path / "logits.safetensors"
    subprocess.run([LIGAND, "predict", "--model", str(model), "--input", str(tmp_path / "input.safetensors"),
                    "--out", str(out)], check=True, capture_output=True)
    ours = load_file(str(out))["logits"].astype(np.float64)

    t64 = {k: v.astype(np.float64) for k, v in tensors.items()}
    ref = forward(arch, t64, x.astype(np.float64).transpose(0, 3, 1, 2))
    scale = max(1.0, np.abs(ref).max())
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() / scale < 1e-4, np.abs(ours - ref).max()


def test_ligand_refuses_nan_weights_by_name(tmp_path):
    base = tmp_path / "base.safetensors"
    subprocess.run([LIGAND, "init", "--arch", "mlp", "--hidden", "8", "--out", str(base)], check=True, capture_output=True)
    with safe_open(str(base), framework="np") as f:
        meta = f.metadata()
    # The tensors are replaced below, so the recorded digest of the old data no longer applies.
    meta.pop("ligand.sha256", None)
    tensors = load_file(str(base))
    tensors["layers.0.weight"][1, 2] = np.nan
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    np.save(tmp_path / "unused.npy", np.zeros(1))
    save_file({"input": np.zeros((1, 28, 28, 1), np.float32)}, str(tmp_path / "in.safetensors"))
    r = subprocess.run([LIGAND, "predict", "--model", str(bad), "--input", str(tmp_path / "in.safetensors"),
                        "--out", str(tmp_path / "o.safetensors")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "layers.0.weight" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()
