"""`ligand merge --method progressive` against an independent numpy solution of the same least squares.

A tiny tasks suite (MLP 784-32-16, three tasks) is built into a temporary cache; the merge dumps each task's
statistics images (hidden --dump-calibration). numpy then fuses layer by layer from the input: for each layer,
[W b] = argmin Σ_k ‖Y_k − [W b]·[X̃_k; 1]‖² + ρ‖[W b] − mean_k [W_k b_k]‖², X̃_k the inputs of the layers fused
so far on task k's images, Y_k expert k's own pre-activations, ρ = ridge × the mean diagonal of Σ_k [X̃_k 1]ᵀ[X̃_k 1],
solved by lstsq on the stacked rows [X̃ 1; √ρ I] (no normal equations), and compared with the fused file.
With `--progressive-start iso-c` the prior is instead Iso-C's layer, θ_pre + α·mean(σ)·UVᵀ of Σ_k τ_k (biases
θ_pre + α·mean_k τ_k), with the α the merge chose on calibration (its report says which).
"""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from test_frontier_numpy import iso_c
from tiny_tasks import build, needs_data, run

RIDGE = 1e-2


def solve(inputs, targets, prior, ridge):
    """The ridge least squares of one layer by lstsq on stacked rows; returns [W b] (out × (in + 1))."""
    a = np.vstack([np.hstack([x, np.ones((x.shape[0], 1))]) for x in inputs])
    y = np.vstack(targets)
    rho = ridge * np.mean(np.sum(a * a, axis=0))
    a_ridge = np.vstack([a, np.sqrt(rho) * np.eye(a.shape[1])])
    y_ridge = np.vstack([y, np.sqrt(rho) * prior.T])
    return np.linalg.lstsq(a_ridge, y_ridge, rcond=None)[0].T


@needs_data
@pytest.mark.parametrize("start", ["average", "iso-c"])
def test_progressive_matches_numpy_least_squares(tmp_path, start):
    env, pre, experts = build(tmp_path, "lsq-tasks", seed=4, calibration=600)
    dump = tmp_path / "dump"
    out = tmp_path / "out"
    run("merge", "--method", "progressive", "--suite", "lsq-tasks", "--ridges", str(RIDGE), "--lambdas", "1",
        "--progressive-start", start, "--calibration-samples", "250", "--selection-samples", "100", "--out", str(out),
        "--quiet", "--dump-calibration", str(dump), env=env)
    assert len(experts) == 3
    hyper = json.loads((out / "report.json").read_text())["hyperparameters"]
    alpha = float(hyper["start"].split("alpha=")[1]) if start == "iso-c" else None
    images = {t: load_file(str(dump / f"calibration-{t}.safetensors"))["pixels"].astype(np.float64) for t, _ in experts}
    assert all(x.shape == (250, 28, 28, 1) for x in images.values())
    fused = load_file(str(out / "progressive.safetensors"))

    def layer(state, name):
        return state[f"{name}.weight"].astype(np.float64), state[f"{name}.bias"].astype(np.float64)

    # Layer by layer: X̃ through numpy's own fused layers, X_k and Y_k through expert k.
    x_fused = [images[t].reshape(250, -1) for t, _ in experts]
    x_expert = [x.copy() for x in x_fused]
    for name in ["layers.0", "layers.2"]:
        ws = [layer(s, name) for _, s in experts]
        targets = [x @ w.T + b for x, (w, b) in zip(x_expert, ws)]
        mean = np.mean([np.hstack([w, b[:, None]]) for w, b in ws], axis=0)
        if alpha is None:
            prior = mean
        else:
            w0, b0 = layer(pre, name)
            prior = np.hstack([w0 + alpha * iso_c([w - w0 for w, _ in ws]), (b0 + alpha * np.mean([b - b0 for _, b in ws], axis=0))[:, None]])
        wb = solve(x_fused, targets, prior, RIDGE)
        if alpha is not None:
            # The start is felt: the mean as prior would give another layer.
            other = solve(x_fused, targets, mean, RIDGE)
            print(f"{name}: iso-c prior against the mean's: {np.linalg.norm(wb - other) / np.linalg.norm(wb):.3g}")
            assert np.linalg.norm(wb - other) > 1e-4 * np.linalg.norm(wb)
        w_swift, b_swift = layer(fused, name)
        got = np.hstack([w_swift, b_swift[:, None]])
        rel = np.linalg.norm(got - wb) / np.linalg.norm(wb)
        print(f"{name}: relative difference {rel:.3g}")
        assert rel < 1e-5, f"{name}: relative difference {rel:.3g}"
        # The fused layer differs from every expert's and from their mean: the test compares a real fusion.
        assert np.linalg.norm(wb - prior) / np.linalg.norm(prior) > 1e-3
        x_fused = [np.maximum(x @ wb[:, :-1].T + wb[:, -1], 0) for x in x_fused]
        x_expert = [np.maximum(t, 0) for t in targets]
    # Each task keeps its expert's frozen head.
    for t, s in experts:
        np.testing.assert_array_equal(fused[f"heads.{t}.weight"], s["head.weight"])
