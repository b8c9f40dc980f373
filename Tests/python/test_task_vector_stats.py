"""benchmarks/task_vector_stats.py on a hand-made zoo folder: the figures docs/suites.md quotes are |τ|/|θ0| and cosines."""
import json
import pathlib
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "task_vector_stats.py"


def test_ratios_and_cosines(tmp_path):
    theta0 = {"blocks.0.attn.qkv.weight": np.array([[3.0, 0.0], [0.0, 4.0]], np.float32),
              "norm.weight": np.array([1.0, 0.0], np.float32),
              "head.weight": np.zeros((2, 2), np.float32)}
    # τ_a and τ_b are orthogonal in qkv and equal in the final norm; heads differ and must be left out.
    taus = [{"blocks.0.attn.qkv.weight": np.array([[1.0, 0.0], [0.0, 0.0]]), "norm.weight": np.array([0.0, 1.0])},
            {"blocks.0.attn.qkv.weight": np.array([[0.0, 0.0], [0.0, 2.0]]), "norm.weight": np.array([0.0, 1.0])}]
    save_file(theta0, str(tmp_path / "pre.safetensors"))
    models = [{"file": "pre.safetensors", "role": {"pretrained": {}}, "name": "pre"}]
    for i, tau in enumerate(taus):
        expert = {k: (theta0[k] + tau[k]).astype(np.float32) for k in tau}
        expert["head.weight"] = np.full((2, 2), 9.0, np.float32)
        save_file(expert, str(tmp_path / f"e{i}.safetensors"))
        models.append({"file": f"e{i}.safetensors", "role": {"expert": {}}, "name": f"e{i}", "task": f"t{i}"})
    (tmp_path / "manifest.json").write_text(json.dumps({"suite": "toy", "models": models}))

    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True).stdout
    rows = {line[:18].strip(): line[18:].split() for line in out.splitlines()[2:]}
    assert set(rows) == {"attn.qkv", "norm", "backbone (all)"}, out
    assert rows["attn.qkv"] == ["5.00", f"{(1 + 2) / 2 / 5:.4f}", "0.000"]
    assert rows["norm"] == ["1.00", "1.0000", "1.000"]
    # Whole backbone: |θ0| = √26; |τ_a| = √2, |τ_b| = √5; τ_a·τ_b = 1.
    assert rows["backbone (all)"] == [f"{26 ** 0.5:.2f}", f"{(2 ** 0.5 + 5 ** 0.5) / 2 / 26 ** 0.5:.4f}", f"{1 / 10 ** 0.5:.3f}"]


def test_refuses_a_folder_without_manifest(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and "manifest.json" in r.stderr
