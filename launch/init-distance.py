#!/usr/bin/env python3
"""How far trained models moved from their random initialisation (the docs/alignment.md ResNet probe).

usage: init-distance.py TRAINED.safetensors INIT.safetensors [TRAINED INIT ...]

Prints, per pair, over every convolution / linear weight: the cosine between the trained and the
initial weights and the relative update |θ - θ0| / |θ0|. Weight matching (Git Re-Basin) compares
raw weights, so where the cosine is near 1 it mostly matches the random initialisations.
"""
import sys

import numpy as np
from safetensors.numpy import load_file


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        sys.exit(__doc__)
    for trained, init in zip(argv[0::2], argv[1::2]):
        a, b = load_file(trained), load_file(init)
        dot = na = nb = nd = 0.0
        for name, w in a.items():
            if w.ndim < 2 or name not in b:
                continue
            x, y = w.astype(np.float64).ravel(), b[name].astype(np.float64).ravel()
            dot += float(x @ y); na += float(x @ x); nb += float(y @ y); nd += float((x - y) @ (x - y))
        print(f"{trained}: cosine(trained, init) {dot / np.sqrt(na * nb):.3f}, |θ-θ0|/|θ0| {np.sqrt(nd / nb):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
