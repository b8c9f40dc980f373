"""The ViT training step of `ligand bench train --archs vit`, written independently in JAX, for a side-by-side
throughput ratio (benchmarks/vit-vs-jax.sh). Same network (timm layout: patch 4, width 64, depth 4, 4 heads,
MLP 128, 10 classes, 28x28x1 input), batch 128, forward + softmax cross-entropy + backward + an SGD step with
Nesterov momentum and weight decay on a synthetic batch; the step is jit-compiled and timed after warm-up.

    python3 benchmarks/vit_train_jax.py [--steps 20] [--batch 128]     prints: images/s
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

P, D, DEPTH, HEADS, HIDDEN, CLASSES, SIDE, CH = 4, 64, 4, 4, 128, 10, 28, 1
N = (SIDE // P) ** 2


def init(key):
    ks = iter(jax.random.split(key, 8 + 8 * DEPTH))
    normal = lambda shape, std=0.02: std * jax.random.normal(next(ks), shape, jnp.float32)
    params = {"cls": normal((1, 1, D), 1e-6), "pos": normal((1, 1 + N, D)),
              "patch_w": normal((CH * P * P, D)), "patch_b": jnp.zeros(D),
              "norm_g": jnp.ones(D), "norm_b": jnp.zeros(D), "head_w": normal((D, CLASSES)), "head_b": jnp.zeros(CLASSES),
              "blocks": []}
    for _ in range(DEPTH):
        params["blocks"].append({"n1g": jnp.ones(D), "n1b": jnp.zeros(D), "qkv_w": normal((D, 3 * D)), "qkv_b": jnp.zeros(3 * D),
                                 "proj_w": normal((D, D)), "proj_b": jnp.zeros(D), "n2g": jnp.ones(D), "n2b": jnp.zeros(D),
                                 "fc1_w": normal((D, HIDDEN)), "fc1_b": jnp.zeros(HIDDEN), "fc2_w": normal((HIDDEN, D)), "fc2_b": jnp.zeros(D)})
    return params


def layer_norm(x, g, b, eps=1e-6):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + eps) * g + b


def forward(p, x):
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
    return z @ p["head_w"] + p["head_b"]


def loss(p, x, y):
    logits = forward(p, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


@jax.jit
def step(p, m, x, y):
    g = jax.grad(loss)(p, x, y)
    lr, mu, wd = 0.01, 0.9, 5e-4
    g = jax.tree_util.tree_map(lambda gi, pi: gi + wd * pi, g, p)
    m = jax.tree_util.tree_map(lambda mi, gi: mu * mi + gi, m, g)
    p = jax.tree_util.tree_map(lambda pi, gi, mi: pi - lr * (gi + mu * mi), p, g, m)
    return p, m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.uniform(0, 1, (a.batch, SIDE, SIDE, CH)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, a.batch))
    p = init(jax.random.PRNGKey(1))
    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    for _ in range(3):
        p, m = step(p, m, x, y)
    jax.block_until_ready(p)
    t = time.perf_counter()
    for _ in range(a.steps):
        p, m = step(p, m, x, y)
    jax.block_until_ready(p)
    print(f"{a.steps * a.batch / (time.perf_counter() - t):.1f}")


if __name__ == "__main__":
    main()
