"""CLIP's image tower as open_clip lays it out, imported, merged and exported back.

The checkpoints every merging paper fuses (task_vectors' CLIP ViT-B/32 fine-tunes) hold open_clip's
`VisionTransformer` under `visual.` (or `image_encoder.model.visual.` in task_vectors' ImageClassifier) beside a
classification head that reads unit-length image features. A reduced tower with random weights is written here in
that layout, with the text tower's tensors beside it; a numpy forward written from open_clip's semantics (bias-free
conv1, class embedding, ln_pre, nn.MultiheadAttention's in_proj/out_proj, QuickGELU, LayerNorm eps 1e-5, ln_post on
the class token, `@ proj`, F.normalize, the head) must give `ligand predict`'s logits to 1e-4; a merge of two
imported towers exports under the original names and shapes and numpy's forward of the exported file is Ligand's.
"""
import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from test_import_export import images, ligand, predict, tiny_data

PREFIX = "image_encoder.model.visual."
CLIP_MEAN = "0.48145466,0.4578275,0.40821073"
CLIP_STD = "0.26862954,0.26130258,0.27577711"


def clip_tower(rng, d=24, patch=4, side=28, channels=1, depth=2, hidden=64, embed=16, classes=10, prefix=PREFIX):
    """open_clip's VisionTransformer state_dict (OpenAI layout) under `prefix`, task_vectors' classification head,
    and two text-tower tensors a whole checkpoint carries."""
    tokens = (side // patch) ** 2 + 1
    s = d ** -0.5
    t = {"class_embedding": s * rng.standard_normal(d), "positional_embedding": 0.1 * rng.standard_normal((tokens, d)),
         "proj": s * rng.standard_normal((d, embed)), "conv1.weight": 0.3 * rng.standard_normal((d, channels, patch, patch)),
         "ln_pre.weight": 1 + 0.1 * rng.standard_normal(d), "ln_pre.bias": 0.1 * rng.standard_normal(d),
         "ln_post.weight": 1 + 0.1 * rng.standard_normal(d), "ln_post.bias": 0.1 * rng.standard_normal(d)}
    for i in range(depth):
        b = f"transformer.resblocks.{i}."
        t |= {b + "ln_1.weight": 1 + 0.1 * rng.standard_normal(d), b + "ln_1.bias": 0.1 * rng.standard_normal(d),
              b + "attn.in_proj_weight": 0.3 * rng.standard_normal((3 * d, d)), b + "attn.in_proj_bias": 0.1 * rng.standard_normal(3 * d),
              b + "attn.out_proj.weight": 0.3 * rng.standard_normal((d, d)), b + "attn.out_proj.bias": 0.1 * rng.standard_normal(d),
              b + "ln_2.weight": 1 + 0.1 * rng.standard_normal(d), b + "ln_2.bias": 0.1 * rng.standard_normal(d),
              b + "mlp.c_fc.weight": 0.3 * rng.standard_normal((hidden, d)), b + "mlp.c_fc.bias": 0.1 * rng.standard_normal(hidden),
              b + "mlp.c_proj.weight": 0.3 * rng.standard_normal((d, hidden)), b + "mlp.c_proj.bias": 0.1 * rng.standard_normal(d)}
    out = {prefix + k: v for k, v in t.items()}
    # task_vectors' ClassificationHead: zero-shot text embeddings × logit scale, a zero bias.
    out["classification_head.weight"] = 10 * rng.standard_normal((classes, embed))
    out["classification_head.bias"] = np.zeros(classes)
    if prefix:
        out["image_encoder.model.token_embedding.weight"] = rng.standard_normal((50, embed))
        out["image_encoder.model.logit_scale"] = np.array(4.6)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def layer_norm(x, w, b, eps=1e-5):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def clip_forward(t, x, heads, prefix=PREFIX, quick=True, mean=None, std=None):
    """open_clip's VisionTransformer.forward plus task_vectors' ClassificationHead, x NHWC in [0, 1]."""
    v = {k[len(prefix):]: val.astype(np.float64) for k, val in t.items() if k.startswith(prefix)}
    x = x.astype(np.float64)
    if mean is not None:
        x = (x - np.array(mean)) / np.array(std)
    x = x.transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    d, _, p, _ = v["conv1.weight"].shape
    gh, gw = h // p, w // p
    # conv1 (kernel = stride = patch, bias=False), reshape(n, d, -1).permute(0, 2, 1)
    patches = x.reshape(n, c, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c * p * p)
    z = patches @ v["conv1.weight"].reshape(d, -1).T
    z = np.concatenate([np.broadcast_to(v["class_embedding"], (n, 1, d)), z], axis=1) + v["positional_embedding"]
    z = layer_norm(z, v["ln_pre.weight"], v["ln_pre.bias"])
    tokens, dh = z.shape[1], d // heads
    act = (lambda u: u / (1 + np.exp(-1.702 * u))) if quick else (lambda u: 0.5 * u * (1 + np.vectorize(__import__("math").erf)(u / np.sqrt(2))))
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in v:
        b = f"transformer.resblocks.{i}."
        y = layer_norm(z, v[b + "ln_1.weight"], v[b + "ln_1.bias"])
        # nn.MultiheadAttention: q, k, v = in_proj in that order; heads split head-major; q scaled by dh^-1/2.
        q, k, val = np.split(y @ v[b + "attn.in_proj_weight"].T + v[b + "attn.in_proj_bias"], 3, axis=-1)
        split = lambda a: a.reshape(n, tokens, heads, dh).transpose(0, 2, 1, 3)
        o = softmax(split(q) * dh ** -0.5 @ split(k).transpose(0, 1, 3, 2)) @ split(val)
        z = z + o.transpose(0, 2, 1, 3).reshape(n, tokens, d) @ v[b + "attn.out_proj.weight"].T + v[b + "attn.out_proj.bias"]
        y = layer_norm(z, v[b + "ln_2.weight"], v[b + "ln_2.bias"])
        z = z + act(y @ v[b + "mlp.c_fc.weight"].T + v[b + "mlp.c_fc.bias"]) @ v[b + "mlp.c_proj.weight"].T + v[b + "mlp.c_proj.bias"]
        i += 1
    f = layer_norm(z[:, 0], v["ln_post.weight"], v["ln_post.bias"]) @ v["proj"]
    f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    return f @ t["classification_head.weight"].T.astype(np.float64) + t["classification_head.bias"]


def test_an_open_clip_tower_imports_and_computes_open_clips_logits(tmp_path):
    rng = np.random.default_rng(0)
    t = clip_tower(rng, d=24, patch=8, side=32, channels=3, depth=2, hidden=96, embed=16, classes=5)
    save_file(t, str(tmp_path / "clip.safetensors"))
    r = ligand("import", tmp_path / "clip.safetensors", "--out", tmp_path / "m.safetensors", "--heads", 3, "--mean", CLIP_MEAN, "--std", CLIP_STD)
    assert "QuickGELU" in r.stdout and "32×32×3" in r.stdout
    assert "left behind: 2 tensors outside the image tower 'image_encoder.model.visual.'" in r.stdout
    meta = safe_open(str(tmp_path / "m.safetensors"), "np").metadata()
    arch = json.loads(meta["ligand.architecture"])
    assert (arch["activation"], arch["eps"], arch["pre_norm"], arch["patch_bias"], arch["embed"], arch["unit_features"]) == ("quick_gelu", 1e-5, True, False, 16, True)
    record = json.loads(meta["ligand.import"])
    assert record["names"]["blocks.1.attn.qkv.weight"] == PREFIX + "transformer.resblocks.1.attn.in_proj_weight"
    assert record["transposed"] == ["proj.weight"] and record["shapes"]["cls_token"] == [24]
    x = images(rng, 6, (32, 32, 3))
    want = clip_forward(t, x, heads=3, mean=[float(m) for m in CLIP_MEAN.split(",")], std=[float(s) for s in CLIP_STD.split(",")])
    np.testing.assert_allclose(predict(tmp_path / "m.safetensors", x, tmp_path), want, rtol=1e-4, atol=1e-4)
    # The activation is a choice the tensors cannot show: GELU computes other logits, numpy's GELU ones.
    ligand("import", tmp_path / "clip.safetensors", "--out", tmp_path / "g.safetensors", "--heads", 3, "--activation", "gelu",
           "--mean", CLIP_MEAN, "--std", CLIP_STD)
    got = predict(tmp_path / "g.safetensors", x, tmp_path, "g")
    assert np.abs(got - want).max() > 1e-3
    np.testing.assert_allclose(got, clip_forward(t, x, heads=3, quick=False, mean=[float(m) for m in CLIP_MEAN.split(",")],
                                                 std=[float(s) for s in CLIP_STD.split(",")]), rtol=1e-4, atol=1e-4)


def test_a_merge_of_clip_towers_exports_under_open_clips_names(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for i in range(2):
        t = clip_tower(rng)
        save_file(t, str(tmp_path / f"src{i}.safetensors"))
        ligand("import", tmp_path / f"src{i}.safetensors", "--out", tmp_path / f"m{i}.safetensors", "--heads", 2)
        files.append(str(tmp_path / f"m{i}.safetensors"))
    data = tiny_data(tmp_path / "data", rng)
    ligand("merge", "--model-files", ",".join(files), "--method", "average", "--out", tmp_path / "average", "--quiet",
           "--data", data, "--calibration-holdout", 100)
    fused = tmp_path / "average" / "average.safetensors"
    ligand("export", fused, "--out", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))
    original = {k: v.shape for k, v in t.items() if k.startswith(PREFIX) or k.startswith("classification_head.")}
    assert {k: v.shape for k, v in back.items()} == original, "the tower and head under open_clip's names and shapes; the text tower left behind"
    a, b = load_file(files[0].replace("m0", "src0")), load_file(files[1].replace("m1", "src1"))
    np.testing.assert_allclose(back[PREFIX + "proj"], (a[PREFIX + "proj"] + b[PREFIX + "proj"]) / 2, rtol=1e-6)
    x = images(rng, 4)
    np.testing.assert_allclose(predict(fused, x, tmp_path), clip_forward(back, x, heads=2), rtol=1e-4, atol=1e-4)


def test_clip_refusals_name_the_tensor_or_flag(tmp_path):
    rng = np.random.default_rng(2)
    t = clip_tower(rng)

    def refused(tensors, *args):
        save_file(tensors, str(tmp_path / "bad.safetensors"))
        r = ligand("import", tmp_path / "bad.safetensors", "--out", tmp_path / "bad-out.safetensors", *args, ok=False)
        assert r.returncode != 0 and not (tmp_path / "bad-out.safetensors").exists()
        return r.stderr

    assert "--heads" in refused(t)
    no_head = {k: v for k, v in t.items() if not k.startswith("classification_head")}
    assert "classification_head.weight" in refused(no_head, "--heads", 2)
    bad_proj = dict(t) | {PREFIX + "proj": np.zeros((16, 24), np.float32)}
    assert "proj" in refused(bad_proj, "--heads", 2)
    no_block = {k: v for k, v in t.items() if "resblocks.1.ln_2" not in k}
    assert "transformer.resblocks.1.ln_2." in refused(no_block, "--heads", 2)
    assert "not divisible" in refused(t, "--heads", 5)
    two = dict(t) | {"other.visual." + k[len(PREFIX):]: v for k, v in t.items() if k.startswith(PREFIX)}
    assert "2 CLIP image towers" in refused(two, "--heads", 2)
    arch = json.dumps({"kind": "vit", "input": [28, 28, 1], "classes": 10, "width": 24, "patch": 4, "depth": 2, "heads": 2, "mlp_ratio": 64 / 24})
    assert "--activation and --architecture" in refused(t, "--activation", "gelu", "--architecture", arch)


def task_data(root, rng, classes, n_train=240, n_test=40):
    """A small 28×28×1 data set of `classes` classes in the .npz layout."""
    root.mkdir()
    for split, n in [("train", n_train), ("test", n_test)]:
        np.savez(root / f"{split}.npz", images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), labels=np.arange(n) % classes)
    return root


def test_clip_experts_of_different_tasks_merge_with_their_own_data_and_export_per_head(tmp_path):
    """The task-vector setting on a user's files: a pretrained tower, two experts fine-tuned from it with heads of
    10 and 4 classes, each task with its own data set; the fused backbone exports with either task's head."""
    rng = np.random.default_rng(3)
    pre = clip_tower(rng, classes=10)
    experts = {}
    for name, classes in [("shirts", 10), ("shoes", 4)]:
        t = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) if k.startswith(PREFIX) else v for k, v in pre.items()}
        t["classification_head.weight"] = (10 * rng.standard_normal((classes, 16))).astype(np.float32)
        t["classification_head.bias"] = np.zeros(classes, np.float32)
        experts[name] = t
    for name, t in [("pretrained", pre)] + list(experts.items()):
        save_file(t, str(tmp_path / f"src-{name}.safetensors"))
        ligand("import", tmp_path / f"src-{name}.safetensors", "--out", tmp_path / f"{name}.safetensors", "--heads", 2)
    data = [task_data(tmp_path / "data-shirts", rng, 10), task_data(tmp_path / "data-shoes", rng, 4)]
    files = ",".join(str(tmp_path / f"{n}.safetensors") for n in experts)
    common = ["--model-files", files, "--pretrained", tmp_path / "pretrained.safetensors", "--task-data", ",".join(map(str, data)),
              "--calibration-holdout", 100, "--quiet"]
    r = ligand("merge", "--method", "average", "--out", tmp_path / "avg", *common)
    assert "shirts" in r.stdout and "shoes" in r.stdout and "experts (each on its own task)" in r.stdout
    ligand("merge", "--method", "task-arithmetic", "--out", tmp_path / "ta", *common)
    # NeuLig on the same experts: its global model holds every head and the import record, so it exports too.
    r = ligand("merge", "--method", "neulig", "--epochs", 2, "--out", tmp_path / "neulig", *common)
    assert "NeuLig fused, global mode (1 model)" in r.stdout and "Portland ensemble" in r.stdout
    ligand("export", tmp_path / "neulig" / "neulig-global.safetensors", "--head", "shoes", "--out", tmp_path / "neulig-shoes.safetensors")
    assert load_file(str(tmp_path / "neulig-shoes.safetensors"))["classification_head.weight"].shape == (4, 16)
    fused = tmp_path / "avg" / "average.safetensors"
    for task, classes in [("shirts", 10), ("shoes", 4)]:
        ligand("export", fused, "--head", task, "--out", tmp_path / f"back-{task}.safetensors")
        back = load_file(str(tmp_path / f"back-{task}.safetensors"))
        assert back["classification_head.weight"].shape == (classes, 16)
        np.testing.assert_array_equal(back["classification_head.weight"], experts[task]["classification_head.weight"])
        block = PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"
        np.testing.assert_allclose(back[block], (experts["shirts"][block] + experts["shoes"][block]) / 2, rtol=1e-6, atol=1e-7)
        x = images(rng, 4)
        save_file({"input": x}, str(tmp_path / "x.safetensors"))
        ligand("predict", "--model", fused, "--head", task, "--input", tmp_path / "x.safetensors", "--out", tmp_path / "y.safetensors")
        np.testing.assert_allclose(load_file(str(tmp_path / "y.safetensors"))["logits"], clip_forward(back, x, heads=2), rtol=1e-4, atol=1e-4)
    # A fused file of several heads names them when none is chosen; a task's data set must fit its expert's head.
    r = ligand("export", fused, "--out", tmp_path / "nohead.safetensors", ok=False)
    assert r.returncode != 0 and "shirts, shoes" in r.stderr and "--head" in r.stderr
    swapped = ["--model-files", files, "--pretrained", tmp_path / "pretrained.safetensors", "--task-data", ",".join(map(str, data[::-1]))]
    r = ligand("merge", "--method", "average", "--out", tmp_path / "bad", *swapped, ok=False)
    assert r.returncode != 0 and "shirts.safetensors" in r.stderr and "10 classes" in r.stderr and "4 classes" in r.stderr
    r = ligand("merge", "--method", "average", "--out", tmp_path / "bad", "--model-files", files, "--pretrained", tmp_path / "pretrained.safetensors", ok=False)
    assert r.returncode != 0 and "--task-data" in r.stderr
