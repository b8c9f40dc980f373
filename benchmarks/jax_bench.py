"""The networks of `ligand bench train` and `ligand bench forward`, written independently in JAX, for side-by-side
throughput ratios (benchmarks/vs-jax.sh). Same networks on a 28x28x1 input, 10 classes:

  mlp       784-512-512-10, ReLU
  resnet20  width 1: 3x3 conv 16 + BN + ReLU, three stages of three basic blocks (16, 32, 64 channels, stride 2
            at the first block of stages 2 and 3, 1x1 conv + BN shortcut there), global average pool, linear head
  vit       timm layout: patch 4 (49 patches + class token), width 64, depth 4, 4 heads, MLP 128, exact GELU

train: forward, softmax cross-entropy, backward and an SGD step with Nesterov momentum and weight decay (BatchNorm on
batch statistics); forward: the evaluation-mode pass alone (BatchNorm on running statistics). Synthetic batch, the
step jit-compiled and timed after warm-up.

    python3 benchmarks/jax_bench.py --arch mlp|resnet20|vit --mode train|forward [--steps 20] [--batch 128]
    prints: images/s
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

SIDE, CH, CLASSES = 28, 1, 10


class Keys:
    def __init__(self, seed):
        self.key = jax.random.PRNGKey(seed)

    def normal(self, shape, std):
        self.key, k = jax.random.split(self.key)
        return std * jax.random.normal(k, shape, jnp.float32)


# MLP ---------------------------------------------------------------------------------------------------------------

def mlp_init(keys):
    dims = [SIDE * SIDE * CH, 512, 512, CLASSES]
    return {"layers": [{"w": keys.normal((a, b), (2 / a) ** 0.5), "b": jnp.zeros(b)} for a, b in zip(dims, dims[1:])]}, {}


def mlp_forward(p, state, x, train):
    z = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(p["layers"]):
        z = z @ layer["w"] + layer["b"]
        if i + 1 < len(p["layers"]):
            z = jax.nn.relu(z)
    return z, state


# ResNet-20 ---------------------------------------------------------------------------------------------------------

def conv(x, w, stride):
    pad = (w.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def bn_init(c):
    return {"g": jnp.ones(c), "b": jnp.zeros(c)}, {"mean": jnp.zeros(c), "var": jnp.ones(c)}


def bn(x, p, s, train):
    if train:
        m, v = x.mean((0, 1, 2)), x.var((0, 1, 2))
        s = {"mean": 0.9 * s["mean"] + 0.1 * m, "var": 0.9 * s["var"] + 0.1 * v}
    else:
        m, v = s["mean"], s["var"]
    return (x - m) * jax.lax.rsqrt(v + 1e-5) * p["g"] + p["b"], s


def resnet_init(keys):
    he = lambda k, cin, cout: keys.normal((k, k, cin, cout), (2 / (k * k * cin)) ** 0.5)
    p, s = {"stem": he(3, CH, 16), "blocks": []}, {"blocks": []}
    p["stem_bn"], s["stem_bn"] = bn_init(16)
    cin = 16
    for stage, cout in enumerate([16, 32, 64]):
        for b in range(3):
            stride = 2 if stage > 0 and b == 0 else 1
            bp, bs = {"c1": he(3, cin, cout), "c2": he(3, cout, cout)}, {}
            bp["n1"], bs["n1"] = bn_init(cout)
            bp["n2"], bs["n2"] = bn_init(cout)
            if stride != 1 or cin != cout:
                bp["sc"] = he(1, cin, cout)
                bp["scn"], bs["scn"] = bn_init(cout)
            p["blocks"].append(bp)
            s["blocks"].append(bs)
            cin = cout
    p["head_w"], p["head_b"] = keys.normal((64, CLASSES), (1 / 64) ** 0.5), jnp.zeros(CLASSES)
    return p, s


def resnet_forward(p, s, x, train):
    ns = {"blocks": []}
    z, ns["stem_bn"] = bn(conv(x, p["stem"], 1), p["stem_bn"], s["stem_bn"], train)
    z = jax.nn.relu(z)
    for i, (bp, bs) in enumerate(zip(p["blocks"], s["blocks"])):
        o, stride = {}, 2 if i in (3, 6) else 1   # the first block of stages 2 and 3
        y, o["n1"] = bn(conv(z, bp["c1"], stride), bp["n1"], bs["n1"], train)
        y, o["n2"] = bn(conv(jax.nn.relu(y), bp["c2"], 1), bp["n2"], bs["n2"], train)
        if "sc" in bp:
            z, o["scn"] = bn(conv(z, bp["sc"], stride), bp["scn"], bs["scn"], train)
        z = jax.nn.relu(y + z)
        ns["blocks"].append(o)
    return z.mean((1, 2)) @ p["head_w"] + p["head_b"], ns


# ViT ---------------------------------------------------------------------------------------------------------------

P, D, DEPTH, HEADS, HIDDEN = 4, 64, 4, 4, 128
N = (SIDE // P) ** 2


def vit_init(keys):
    n = lambda shape, std=0.02: keys.normal(shape, std)
    p = {"cls": n((1, 1, D), 1e-6), "pos": n((1, 1 + N, D)), "patch_w": n((CH * P * P, D)), "patch_b": jnp.zeros(D),
         "norm_g": jnp.ones(D), "norm_b": jnp.zeros(D), "head_w": n((D, CLASSES)), "head_b": jnp.zeros(CLASSES), "blocks": []}
    for _ in range(DEPTH):
        p["blocks"].append({"n1g": jnp.ones(D), "n1b": jnp.zeros(D), "qkv_w": n((D, 3 * D)), "qkv_b": jnp.zeros(3 * D),
                            "proj_w": n((D, D)), "proj_b": jnp.zeros(D), "n2g": jnp.ones(D), "n2b": jnp.zeros(D),
                            "fc1_w": n((D, HIDDEN)), "fc1_b": jnp.zeros(HIDDEN), "fc2_w": n((HIDDEN, D)), "fc2_b": jnp.zeros(D)})
    return p, {}


def layer_norm(x, g, b, eps=1e-6):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + eps) * g + b


def vit_forward(p, state, x, train):
    b = x.shape[0]
    patches = x.reshape(b, SIDE // P, P, SIDE // P, P, CH).transpose(0, 1, 3, 2, 4, 5).reshape(b, N, P * P * CH)
    z = patches @ p["patch_w"] + p["patch_b"]
    z = jnp.concatenate([jnp.broadcast_to(p["cls"], (b, 1, D)), z], axis=1) + p["pos"]
    dh = D // HEADS
    for blk in p["blocks"]:
        y = layer_norm(z, blk["n1g"], blk["n1b"])
        qkv = (y @ blk["qkv_w"] + blk["qkv_b"]).reshape(b, 1 + N, 3, HEADS, dh).transpose(2, 0, 3, 1, 4)
        a = jax.nn.softmax((qkv[0] * dh ** -0.5) @ qkv[1].swapaxes(-1, -2), axis=-1)
        o = (a @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, 1 + N, D)
        z = z + o @ blk["proj_w"] + blk["proj_b"]
        y = layer_norm(z, blk["n2g"], blk["n2b"])
        z = z + jax.nn.gelu(y @ blk["fc1_w"] + blk["fc1_b"], approximate=False) @ blk["fc2_w"] + blk["fc2_b"]
    z = layer_norm(z[:, 0], p["norm_g"], p["norm_b"])
    return z @ p["head_w"] + p["head_b"], state


ARCHS = {"mlp": (mlp_init, mlp_forward), "resnet20": (resnet_init, resnet_forward), "vit": (vit_init, vit_forward)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--mode", choices=["train", "forward"], default="train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    init, fwd = ARCHS[a.arch]
    params, state = init(Keys(1))

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.uniform(0, 1, (a.batch, SIDE, SIDE, CH)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, a.batch))

    if a.mode == "train":
        def loss(p, s, x, y):
            logits, ns = fwd(p, s, x, True)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)), ns

        @jax.jit
        def step(p, m, s, x, y):
            g, ns = jax.grad(loss, has_aux=True)(p, s, x, y)
            lr, mu, wd = 0.01, 0.9, 5e-4
            g = jax.tree_util.tree_map(lambda gi, pi: gi + wd * pi, g, p)
            m = jax.tree_util.tree_map(lambda mi, gi: mu * mi + gi, m, g)
            p = jax.tree_util.tree_map(lambda pi, gi, mi: pi - lr * (gi + mu * mi), p, g, m)
            return p, m, ns

        m = jax.tree_util.tree_map(jnp.zeros_like, params)
        run = lambda: step(params, m, state, x, y)
        for _ in range(3):
            params, m, state = run()
        jax.block_until_ready(params)
        t = time.perf_counter()
        for _ in range(a.steps):
            params, m, state = step(params, m, state, x, y)
        jax.block_until_ready(params)
    else:
        infer = jax.jit(lambda p, s, x: fwd(p, s, x, False)[0])
        for _ in range(3):
            out = infer(params, state, x)
        jax.block_until_ready(out)
        t = time.perf_counter()
        for _ in range(a.steps):
            out = infer(params, state, x)
        jax.block_until_ready(out)
    print(f"{a.steps * a.batch / (time.perf_counter() - t):.1f}")


if __name__ == "__main__":
    main()
