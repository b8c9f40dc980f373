"""The 2025 data-free merges (`tsv-m`, `iso-c`, `iso-cts`, `wudi`) against independent numpy implementations of
their papers' formulas, on a tiny tasks suite (MLP 784-32-16, three tasks) built into a temporary cache.

For each weight matrix (τ_k = θ_k − θ_pre per expert), numpy computes:
  TSV-M   (Gargiulo et al., CVPR 2025): each τ_k's top ⌊min(m,n)/K⌋ singular triples stacked, U and Vᵀ replaced by
          their polar factors, P_U·Σ·P_V; other tensors the mean task vector.
  Iso-C   (Marczak et al., ICML 2025): Σ_k τ_k = UΣVᵀ → mean(σ)·U·Vᵀ; other tensors the mean task vector.
  Iso-CTS (same paper): a common subspace from the top directions of Σ_k τ_k, each task's top directions of
          (I − U_c U_cᵀ)τ_k, all stacked, orthogonalised, spectrum flattened; other tensors the mean.
  WUDI    (Cheng et al., ICML 2025): Adam on Σ_k ‖(τ − τ_k)τ_kᵀ‖² / ‖τ_k‖² from Σ_k τ_k, the gradient written out by
          hand; other tensors the sum.
and compares θ_pre + α·that (α fixed by --scales) with the fused file, to 1e-5 relative.

Fisher merging (Matena & Raffel, NeurIPS 2022): numpy back-propagates log p(y|x) through each expert (its own head) by
hand for every calibration image the merge used (hidden --dump-calibration) and every class y, F = mean_x Σ_y p(y|x)·g²,
and checks θ = Σ_k F_k θ_k / Σ_k F_k.

AdaMerging, layer-wise (Yang et al., ICLR 2024): the coefficient gradient Ligand computes by its backward pass
(⟨∂L/∂θ_l, τ_k,l⟩, dumped at the first step) against central finite differences of the entropy loss
L(λ) = Σ_t mean_x H(softmax(h_t(f_θ(λ)(x)))) evaluated by a numpy forward; and the fused file against
θ_pre + Σ_k λ_k,l τ_k,l with the learned coefficients.
"""
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from tiny_tasks import build, needs_data, run

ALPHA = 0.75


def polar(a):
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return u @ vt


def top(a, r):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return u[:, :r], s[:r], vt[:r]


def tsv_m(taus):
    m, n = taus[0].shape
    r = max(1, min(m, n) // len(taus))
    parts = [top(t, r) for t in taus]
    u = np.hstack([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    vt = np.vstack([p[2] for p in parts])
    return polar(u) @ np.diag(s) @ polar(vt)


def iso_c(taus):
    u, s, vt = np.linalg.svd(sum(taus), full_matrices=False)
    return s.mean() * u @ vt


def iso_cts(taus, fraction=0.8):
    k = len(taus)
    total = sum(taus)
    r = min(total.shape)
    common = int(r * fraction)
    common = r - round((r - common) / k) * k
    per_task = (r - common) // k
    uc, sc, vc = top(total, common)
    parts = [top(t - uc @ (uc.T @ t), per_task) for t in taus] + [(uc, sc, vc)]
    u = np.hstack([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    vt = np.vstack([p[2] for p in parts])
    return s.mean() * polar(u) @ polar(vt)


def wudi(taus, steps, lr):
    tau = sum(taus)
    m1 = np.zeros_like(tau)
    m2 = np.zeros_like(tau)
    for step in range(1, steps + 1):
        grad = sum(2 * (tau - t) @ t.T @ t / np.sum(t * t) for t in taus)
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad * grad
        tau = tau - lr * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
    return tau


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frontier")
    env, pre, experts = build(tmp, "frontier-tasks", seed=6, calibration=300)
    assert len(experts) == 3
    return tmp, env, pre, [e for _, e in experts], [t for t, _ in experts]


WUDI_ARGS = ["--wudi-steps", "25", "--wudi-lr", "1e-3"]


@needs_data
@pytest.mark.parametrize("method, matrix_rule, rest", [
    ("tsv-m", tsv_m, "mean"),
    ("iso-c", iso_c, "mean"),
    ("iso-cts", iso_cts, "mean"),
    ("wudi", lambda taus: wudi(taus, 25, 1e-3), "sum"),
])
def test_merge_matches_numpy(suite, method, matrix_rule, rest):
    tmp, env, pre, experts, _ = suite
    out = tmp / f"out-{method}"
    extra = WUDI_ARGS if method == "wudi" else []
    run("merge", "--method", method, "--suite", "frontier-tasks", "--scales", str(ALPHA),
        "--calibration-samples", "100", "--out", str(out), "--quiet", *extra, env=env)
    fused = load_file(str(out / f"{method}.safetensors"))
    backbone = [k for k in pre if not k.startswith("head.")]
    assert backbone and all(k in fused for k in backbone)
    for name in backbone:
        p = pre[name].astype(np.float64)
        taus = [e[name].astype(np.float64) - p for e in experts]
        if p.ndim >= 2 and name.endswith(".weight"):
            merged = matrix_rule([t.reshape(t.shape[0], -1) for t in taus]).reshape(p.shape)
            # A real per-layer merge: neither the mean nor the sum of the task vectors.
            for plain in (sum(taus) / len(taus), sum(taus)):
                assert np.linalg.norm(merged - plain) > 1e-3 * np.linalg.norm(plain), name
        else:
            merged = sum(taus) / (len(taus) if rest == "mean" else 1)
        want = p + ALPHA * merged
        got = fused[name].astype(np.float64)
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        print(f"{method} {name}: relative difference {rel:.3g}")
        assert rel < 1e-5, f"{method} {name}: relative difference {rel:.3g}"


def mlp_fisher(state, images):
    """Diagonal Fisher of a ReLU MLP (layers.0, layers.2, head) over `images`, exact over the classes."""
    w0, b0 = state["layers.0.weight"].astype(np.float64), state["layers.0.bias"].astype(np.float64)
    w2, b2 = state["layers.2.weight"].astype(np.float64), state["layers.2.bias"].astype(np.float64)
    wh, bh = state["head.weight"].astype(np.float64), state["head.bias"].astype(np.float64)
    f = {k: np.zeros_like(v) for k, v in [("layers.0.weight", w0), ("layers.0.bias", b0), ("layers.2.weight", w2), ("layers.2.bias", b2)]}
    for x in images:
        h1 = np.maximum(w0 @ x + b0, 0)
        h2 = np.maximum(w2 @ h1 + b2, 0)
        z = wh @ h2 + bh
        p = np.exp(z - z.max())
        p /= p.sum()
        for y in range(len(p)):
            gz = -p.copy()
            gz[y] += 1
            g2 = (wh.T @ gz) * (h2 > 0)
            g1 = (w2.T @ g2) * (h1 > 0)
            for k, g in [("layers.2.weight", np.outer(g2, h1)), ("layers.2.bias", g2),
                         ("layers.0.weight", np.outer(g1, x)), ("layers.0.bias", g1)]:
                f[k] += p[y] * g * g
    return {k: v / len(images) for k, v in f.items()}


@needs_data
def test_fisher_matches_numpy(suite):
    tmp, env, pre, experts, tasks = suite
    out, dump = tmp / "out-fisher", tmp / "dump-fisher"
    run("merge", "--method", "fisher", "--suite", "frontier-tasks", "--fisher-samples", "40",
        "--calibration-samples", "100", "--out", str(out), "--quiet", "--dump-calibration", str(dump), env=env)
    fused = load_file(str(out / "fisher.safetensors"))
    fishers = []
    for state, task in zip(experts, tasks):
        images = load_file(str(dump / f"calibration-{task}.safetensors"))["pixels"].astype(np.float64)
        assert images.shape[0] == 100
        fishers.append(mlp_fisher(state, images[:40].reshape(40, -1)))
    for name in fishers[0]:
        weights = np.stack([f[name] for f in fishers])
        thetas = np.stack([e[name].astype(np.float64) for e in experts])
        want = np.where(weights.sum(0) > 0, (weights * thetas).sum(0) / np.maximum(weights.sum(0), 1e-300), thetas.mean(0))
        got = fused[name].astype(np.float64)
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        print(f"fisher {name}: relative difference {rel:.3g}")
        assert rel < 1e-5, f"fisher {name}: relative difference {rel:.3g}"
        # Fisher weighting is not the plain average.
        assert np.linalg.norm(want - thetas.mean(0)) > 1e-4 * np.linalg.norm(want), name


def mlp_logits(state, head, images):
    """Logits of the ReLU MLP backbone `state` (layers.0, layers.2) under `head` = (weight, bias), Float64."""
    h = images
    for i in (0, 2):
        h = np.maximum(h @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"], 0)
    return h @ head[0].T + head[1]


def mean_entropy(z):
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(np.exp(log_p) * log_p).sum(axis=1).mean())


@needs_data
def test_adamerging_gradient_matches_finite_differences(suite):
    tmp, env, pre, experts, tasks = suite
    out, dump = tmp / "out-adamerging", tmp / "dump-adamerging"
    # A batch larger than the calibration set: every step sees all 100 images, so the loss below is the one stepped on.
    run("merge", "--method", "adamerging", "--suite", "frontier-tasks", "--adamerging-steps", "3", "--adamerging-batch", "1000",
        "--calibration-samples", "100", "--out", str(out), "--quiet", "--dump-calibration", str(dump), env=env)
    with safe_open(str(dump / "adamerging.safetensors"), "np") as f:
        layers = f.metadata()["ligand.layers"].split(",")
        gradient, lam = f.get_tensor("gradient"), f.get_tensor("lambda")
    assert gradient.shape == lam.shape == (len(experts), len(layers))
    f64 = {k: v.astype(np.float64) for k, v in pre.items()}
    taus = [{n: e[n].astype(np.float64) - f64[n] for n in layers} for e in experts]
    images = [load_file(str(dump / f"calibration-{t}.safetensors"))["pixels"].astype(np.float64).reshape(100, -1) for t in tasks]
    heads = [(e["head.weight"].astype(np.float64), e["head.bias"].astype(np.float64)) for e in experts]

    def backbone(coefficients):
        return {n: f64[n] + sum(coefficients[k, l] * taus[k][n] for k in range(len(experts))) for l, n in enumerate(layers)}

    def loss(coefficients):
        theta = backbone(coefficients)
        return sum(mean_entropy(mlp_logits(theta, h, x)) for h, x in zip(heads, images))

    # A small step: at 1e-4 a few ReLUs switch inside the interval and the difference is off by 1e-3.
    prior, eps = np.full(gradient.shape, 0.3), 1e-6
    numeric = np.zeros_like(gradient)
    for k in range(gradient.shape[0]):
        for l in range(gradient.shape[1]):
            up, down = prior.copy(), prior.copy()
            up[k, l] += eps
            down[k, l] -= eps
            numeric[k, l] = (loss(up) - loss(down)) / (2 * eps)
    rel = np.linalg.norm(gradient - numeric) / np.linalg.norm(numeric)
    print(f"adamerging coefficient gradient: relative difference {rel:.3g} (norm {np.linalg.norm(numeric):.3g})")
    assert np.linalg.norm(numeric) > 1e-6 and rel < 1e-5, f"adamerging gradient: relative difference {rel:.3g}"

    # The coefficients moved from the prior, and the fused file is θ_pre + Σ_k λ_k,l τ_k,l with them.
    assert np.abs(lam - 0.3).max() > 1e-3
    fused = load_file(str(out / "adamerging.safetensors"))
    for n, want in backbone(lam).items():
        rel = np.linalg.norm(fused[n].astype(np.float64) - want) / np.linalg.norm(want)
        assert rel < 1e-5, f"adamerging {n}: relative difference {rel:.3g}"
