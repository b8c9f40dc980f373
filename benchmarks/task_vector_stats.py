#!/usr/bin/env python3
"""Task vectors of a built `tasks` zoo: how large each is against the pretrained weights, and how aligned they are.

    python3 benchmarks/task_vector_stats.py ZOO_DIR     (a suite's folder under the zoo cache, holding manifest.json)

Prints, per parameter group (a block's parts pooled over blocks) and for the whole backbone (heads excluded: every
expert has its own), |τ| / |θ0| averaged over the experts and the mean cosine between two experts' task vectors.
docs/suites.md uses it to tell a collision in weight space (aligned task vectors) from one in function space.
"""
import json
import os
import re
import sys

import numpy as np
from safetensors.numpy import load_file


def group(name):
    # blocks.3.attn.qkv.weight -> attn.qkv; blocks.0.norm1.bias -> norm1; layers.2.weight -> layers.2; norm.weight -> norm
    m = re.match(r"blocks\.\d+\.(attn\.\w+|mlp\.\w+|\w+)\.", name)
    return m.group(1) if m else name.rsplit(".", 1)[0]


def main(zoo):
    manifest = json.load(open(os.path.join(zoo, "manifest.json")))
    models = manifest["models"]
    pre_entry = next(m for m in models if "pretrained" in m["role"])
    experts = [m for m in models if m.get("task")]
    pre = load_file(os.path.join(zoo, pre_entry["file"]))
    names = [n for n in pre if not n.startswith("head.")]
    loaded = [load_file(os.path.join(zoo, m["file"])) for m in experts]

    groups = {}
    for n in names:
        groups.setdefault(group(n), []).append(n)
    groups["backbone (all)"] = names

    k = len(experts)
    upper = np.triu_indices(k, 1)
    print(f"{manifest['suite']}: {k} experts; |tau|/|theta0| is the experts' mean; cos is the mean over the {len(upper[0])} pairs")
    print(f"{'group':18s} {'|theta0|':>9s} {'|tau|/|theta0|':>15s} {'cos':>7s}")
    for g, members in groups.items():
        theta0 = np.concatenate([pre[n].astype(np.float64).ravel() for n in members])
        tau = np.stack([np.concatenate([(e[n].astype(np.float64) - pre[n].astype(np.float64)).ravel() for n in members])
                        for e in loaded])
        norms = np.linalg.norm(tau, axis=1)
        cos = (tau @ tau.T) / np.maximum(np.outer(norms, norms), 1e-300)
        print(f"{g:18s} {np.linalg.norm(theta0):9.2f} {norms.mean() / np.linalg.norm(theta0):15.4f} {cos[upper].mean():7.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "manifest.json")):
        sys.exit("usage: task_vector_stats.py ZOO_DIR  (a tasks suite's folder under the zoo cache, with manifest.json)")
    main(sys.argv[1])
