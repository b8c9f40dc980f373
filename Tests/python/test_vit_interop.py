"""The Vision Transformer across the Python boundary, with timm's names, shapes and semantics.

A numpy forward pass written here from timm's VisionTransformer (pre-norm blocks, exact GELU, LayerNorm
eps 1e-6, class-token pooling) runs on a safetensors file that Python writes itself, with timm's state_dict
names and only the architecture metadata Ligand needs; `ligand predict` must agree to 1e-4. A file Ligand
writes must hold exactly the tensors, in the shapes, a timm model of that configuration has. Malformed
ViT files must be refused naming the tensor or field.
"""
import json
import math
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")

ARCH = {"kind": "vit", "input": [28, 28, 1], "classes": 10, "width": 24, "patch": 7, "depth": 2, "heads": 3, "mlp_ratio": 2.5}


def timm_shapes(a):
    """The state_dict of timm.models.vision_transformer.VisionTransformer(img_size, patch_size, in_chans,
    num_classes, embed_dim, depth, num_heads, mlp_ratio, global_pool='token'), in its order."""
    d, p, c = a["width"], a["patch"], a["input"][2]
    n = (a["input"][0] // p) * (a["input"][1] // p)
    hidden = int(d * a["mlp_ratio"])
    shapes = [("cls_token", (1, 1, d)), ("pos_embed", (1, 1 + n, d)),
              ("patch_embed.proj.weight", (d, c, p, p)), ("patch_embed.proj.bias", (d,))]
    for i in range(a["depth"]):
        b = f"blocks.{i}."
        shapes += [(b + "norm1.weight", (d,)), (b + "norm1.bias", (d,)),
                   (b + "attn.qkv.weight", (3 * d, d)), (b + "attn.qkv.bias", (3 * d,)),
                   (b + "attn.proj.weight", (d, d)), (b + "attn.proj.bias", (d,)),
                   (b + "norm2.weight", (d,)), (b + "norm2.bias", (d,)),
                   (b + "mlp.fc1.weight", (hidden, d)), (b + "mlp.fc1.bias", (hidden,)),
                   (b + "mlp.fc2.weight", (d, hidden)), (b + "mlp.fc2.bias", (d,))]
    shapes += [("norm.weight", (d,)), ("norm.bias", (d,)), ("head.weight", (a["classes"], d)), ("head.bias", (a["classes"],))]
    return shapes


def layer_norm(x, w, b, eps=1e-6):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def vit_forward(a, t, x):
    """x: [B, C, H, W] (PyTorch layout). Follows timm's forward_features / forward_head."""
    d, p, heads = a["width"], a["patch"], a["heads"]
    bsz, c, h, w = x.shape
    gh, gw = h // p, w // p
    # PatchEmbed: Conv2d(k = p, stride = p), flatten(2).transpose(1, 2)
    patches = x.reshape(bsz, c, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5).reshape(bsz, gh * gw, c * p * p)
    tok = patches @ t["patch_embed.proj.weight"].reshape(d, -1).T + t["patch_embed.proj.bias"]
    cls = np.broadcast_to(t["cls_token"], (bsz, 1, d))
    z = np.concatenate([cls, tok], axis=1) + t["pos_embed"]
    n = z.shape[1]
    dh = d // heads
    for i in range(a["depth"]):
        b = f"blocks.{i}."
        y = layer_norm(z, t[b + "norm1.weight"], t[b + "norm1.bias"])
        qkv = (y @ t[b + "attn.qkv.weight"].T + t[b + "attn.qkv.bias"]).reshape(bsz, n, 3, heads, dh).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = softmax((q * dh ** -0.5) @ k.transpose(0, 1, 3, 2))
        o = (att @ v).transpose(0, 2, 1, 3).reshape(bsz, n, d)
        z = z + o @ t[b + "attn.proj.weight"].T + t[b + "attn.proj.bias"]
        y = layer_norm(z, t[b + "norm2.weight"], t[b + "norm2.bias"])
        z = z + gelu(y @ t[b + "mlp.fc1.weight"].T + t[b + "mlp.fc1.bias"]) @ t[b + "mlp.fc2.weight"].T + t[b + "mlp.fc2.bias"]
    z = layer_norm(z, t["norm.weight"], t["norm.bias"])
    return z[:, 0] @ t["head.weight"].T + t["head.bias"]


def python_written_vit(path, rng, arch=ARCH):
    tensors = {}
    for name, shape in timm_shapes(arch):
        scale = 1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight" else 0.3
        base = 1.0 if scale == 1.0 else 0.0
        tensors[name] = (base + rng.standard_normal(shape) * (0.2 if scale == 1.0 else scale)).astype(np.float32)
    save_file(tensors, str(path), metadata={"ligand.architecture": json.dumps(arch)})
    return tensors


def predict(tmp_path, model, x):
    save_file({"input": x}, str(tmp_path / "input.safetensors"))
    out = tmp_path / "logits.safetensors"
    r = subprocess.run([LIGAND, "predict", "--model", str(model), "--input", str(tmp_path / "input.safetensors"),
                        "--out", str(out)], capture_output=True, text=True)
    return r, out


def test_numpy_vit_forward_matches_ligand_predict(tmp_path):
    rng = np.random.default_rng(11)
    model = tmp_path / "vit.safetensors"
    tensors = python_written_vit(model, rng)
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    r, out = predict(tmp_path, model, x)
    assert r.returncode == 0, r.stderr
    ours = load_file(str(out))["logits"].astype(np.float64)
    t64 = {k: v.astype(np.float64) for k, v in tensors.items()}
    ref = vit_forward(ARCH, t64, x.astype(np.float64).transpose(0, 3, 1, 2))
    assert ours.shape == ref.shape == (4, 10)
    scale = max(1.0, np.abs(ref).max())
    assert np.abs(ours - ref).max() / scale < 1e-4, np.abs(ours - ref).max()


def test_ligand_written_vit_has_timm_names_and_shapes(tmp_path):
    out = tmp_path / "init.safetensors"
    subprocess.run([LIGAND, "init", "--arch", "vit", "--width", "24", "--patch", "7", "--depth", "2", "--heads", "3",
                    "--mlp-ratio", "2.5", "--out", str(out)], check=True, capture_output=True)
    tensors = load_file(str(out))
    expected = timm_shapes(ARCH)
    assert {k: v.shape for k, v in tensors.items()} == dict(expected)
    with safe_open(str(out), framework="np") as f:
        assert json.loads(f.metadata()["ligand.architecture"]) == ARCH


@pytest.mark.parametrize("case,needle", [
    ({"drop": "blocks.1.mlp.fc2.weight"}, "blocks.1.mlp.fc2.weight"),
    ({"drop": "blocks.1."}, "blocks.1.norm1.weight"),
    ({"reshape": {"pos_embed": (1, 20, 24)}}, "pos_embed"),
    ({"arch": dict(ARCH, heads=5)}, "heads"),
    ({"arch": dict(ARCH, patch=5)}, "patch"),
])
def test_malformed_vit_files_are_refused_by_name(tmp_path, case, needle):
    rng = np.random.default_rng(3)
    model = tmp_path / "bad.safetensors"
    arch = case.get("arch", ARCH)
    # A mis-declared architecture is written with the tensors of the real one: the declaration itself must be refused.
    tensors = {}
    for name, shape in timm_shapes(ARCH):
        if "drop" in case and name.startswith(case["drop"]):
            continue
        shape = case.get("reshape", {}).get(name, shape)
        tensors[name] = rng.standard_normal(shape).astype(np.float32)
    save_file(tensors, str(model), metadata={"ligand.architecture": json.dumps(arch)})
    r, out = predict(tmp_path, model, np.zeros((1, 28, 28, 1), np.float32))
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert not out.exists()
