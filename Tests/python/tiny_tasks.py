"""What the numpy comparisons of the tasks-suite methods share: the binary, the data check, and a tiny tasks suite
(MLP 784-32-16, three tasks, a few thousand images, one epoch) built into a temporary cache."""
import json
import os
import subprocess

import pytest
from safetensors.numpy import load_file

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
DATA = os.environ.get("LIGAND_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")),
                                reason="Fashion-MNIST not installed (bash launch/setup.sh)")


def run(*args, env):
    r = subprocess.run([LIGAND, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def build(tmp, name, seed, calibration):
    """Builds suite `name` under tmp/cache; returns (env, pretrained state, [(task, expert state)])."""
    env = dict(os.environ, LIGAND_ZOO_CACHE=str(tmp / "cache"), LIGAND_QUIET="1")
    recipe = tmp / f"{name}.yaml"
    recipe.write_text(f"""suites:
  {name}:
    kind: tasks
    seed: {seed}
    calibration: {calibration}
    train_images: 3000
    architectures: [{{kind: mlp, hidden: [32, 16]}}]
    tasks: [rotate90, invert, coarse]
    pretrain: {{images: 1000, epochs: 1}}
    expert_images: 1500
    shots: 5
    epochs: 1
""")
    run("zoo", "build", str(recipe), "--quiet", env=env)
    suite_dir = next((tmp / "cache").glob(f"{name}-*"))
    manifest = json.loads((suite_dir / "manifest.json").read_text())
    pre = next(load_file(str(suite_dir / m["file"])) for m in manifest["models"] if "pretrained" in m["role"])
    experts = [(m["role"]["expert"]["task"], load_file(str(suite_dir / m["file"])))
               for m in manifest["models"] if "expert" in m["role"]]
    return env, pre, experts
