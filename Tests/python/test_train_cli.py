"""`ligand train` end to end on the real Fashion-MNIST: determinism for a seed, atomic output, clear errors."""
import os
import subprocess

import pytest

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
DATA = os.environ.get("LIGAND_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")),
                                reason="Fashion-MNIST not installed (bash launch/setup.sh)")


def train(out, *extra, threads="1"):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=threads)
    # A short run: 1 epoch on a subset, accuracy on the first 500 test and calibration images.
    args = [LIGAND, "train", "--epochs", "1", "--train-images", "5000", "--eval-images", "500", "--quiet", "--out", str(out), *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env)


@needs_data
@pytest.mark.parametrize("arch", [["--arch", "mlp", "--hidden", "64"],
                                  ["--arch", "resnet20", "--width", "1", "--train-images", "256", "--batch-size", "64"],
                                  ["--arch", "vit", "--width", "16", "--patch", "7", "--depth", "2", "--heads", "2", "--train-images", "512"]],
                         ids=["mlp", "resnet20", "vit"])
def test_training_twice_with_one_seed_is_bitwise_identical(tmp_path, arch):
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    for out, threads in [(a, "1"), (b, "1"), (c, "2")]:
        r = train(out, *arch, "--seed", "5", threads=threads)
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()
    # The worker count (BLAS threads) does not change the result either.
    assert a.read_bytes() == c.read_bytes()
    d = tmp_path / "d.safetensors"
    assert train(d, *arch, "--seed", "6").returncode == 0
    assert a.read_bytes() != d.read_bytes()


def test_train_reports_a_missing_data_directory(tmp_path):
    out = tmp_path / "m.safetensors"
    r = train(out, "--data", str(tmp_path / "nowhere"))
    assert r.returncode != 0
    assert "nowhere" in r.stderr and "train-images-idx3-ubyte" in r.stderr
    assert not out.exists()


def test_train_rejects_bad_options(tmp_path):
    out = tmp_path / "m.safetensors"
    for bad in (["--lr", "-1"], ["--hidden", "64,x"], ["--calibration", "60000"], ["--train-images", "0"],
                ["--arch", "vit", "--width", "10", "--heads", "4"], ["--arch", "vit", "--patch", "5"], ["--arch", "mlp", "--depth", "2"],
                ["--label-smoothing", "1"], ["--label-smoothing", "-0.1"], ["--label-smoothing", "nan"]):
        r = train(out, *bad)
        assert r.returncode != 0, bad
        assert "Error" in r.stderr or "error" in r.stderr, r.stderr
        assert not out.exists()
