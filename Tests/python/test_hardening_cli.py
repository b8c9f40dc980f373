"""Hardening (issue 16): bad inputs and outputs get one clear message naming the file, a non-zero exit, and nothing written."""
import json
import os
import struct
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")


def ligand(*args, timeout=60):
    return subprocess.run([LIGAND, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def refused(r, *words):
    assert r.returncode != 0, r.stdout
    for w in words:
        assert str(w) in r.stderr, r.stderr


@pytest.fixture
def model(tmp_path):
    m = tmp_path / "model.safetensors"
    r = ligand("init", "--arch", "mlp", "--hidden", "4", "--input", "4,4,1", "--out", m)
    assert r.returncode == 0, r.stderr
    return m


@pytest.fixture
def batch(tmp_path):
    b = tmp_path / "batch.safetensors"
    save_file({"input": np.linspace(0, 1, 2 * 16, dtype=np.float32).reshape(2, 4, 4, 1)}, str(b))
    return b


def test_model_files_record_their_data_digest(model):
    meta = json.loads(ligand("safetensors-tool", "dump", model).stdout)["metadata"]
    assert len(meta["ligand.sha256"]) == 64


def test_predict_refuses_an_output_that_is_its_model_or_input(tmp_path, model, batch):
    link = tmp_path / "link.safetensors"
    link.symlink_to(model)
    for out, named in [(model, model), (batch, batch), (link, model)]:
        before = (model.read_bytes(), batch.read_bytes())
        r = ligand("predict", "--model", model, "--input", batch, "--out", out)
        refused(r, out, "same file as the input", named)
        assert (model.read_bytes(), batch.read_bytes()) == before
    assert link.is_symlink()


def test_predict_refuses_devices_fifos_and_directories_as_output(tmp_path, model, batch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, kind in [("/dev/null", "a character device"), (fifo, "a FIFO"), (tmp_path, "a directory")]:
        r = ligand("predict", "--model", model, "--input", batch, "--out", out)
        refused(r, out, kind)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert not os.path.isfile(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.safetensors", "fifo", "model.safetensors"]


def test_predict_writes_through_a_symlinked_output(tmp_path, model, batch):
    target, link = tmp_path / "real.safetensors", tmp_path / "out.safetensors"
    target.write_bytes(b"old")
    link.symlink_to(target.name)
    r = ligand("predict", "--model", model, "--input", batch, "--out", link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and load_file(str(target))["logits"].shape == (2, 10)


def test_a_fifo_given_as_model_is_refused_without_hanging(tmp_path, batch):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    r = ligand("predict", "--model", fifo, "--input", batch, "--out", tmp_path / "o.safetensors", timeout=30)
    refused(r, fifo, "a FIFO")


def test_flipped_weight_bytes_are_detected_and_no_verify_skips_the_check(tmp_path, model, batch):
    data = bytearray(model.read_bytes())
    data[-40] ^= 0x01
    model.write_bytes(bytes(data))
    out = tmp_path / "o.safetensors"
    r = ligand("predict", "--model", model, "--input", batch, "--out", out)
    refused(r, model, "checksum")
    assert not out.exists()
    r = ligand("predict", "--model", model, "--input", batch, "--out", out, "--no-verify")
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_metadata_claiming_a_huge_network_is_refused(tmp_path, model, batch):
    tensors = load_file(str(model))
    big = tmp_path / "big.safetensors"
    save_file(tensors, str(big), metadata={"ligand.architecture": json.dumps(
        {"kind": "mlp", "input": [28, 28, 1], "classes": 10, "hidden": [8000, 8000]})})
    r = ligand("predict", "--model", big, "--input", batch, "--out", tmp_path / "o.safetensors")
    refused(r, big, "ligand.architecture", "only")


def test_predict_refuses_an_empty_batch_and_images_of_another_size(tmp_path, model):
    out = tmp_path / "o.safetensors"
    empty, wrong = tmp_path / "empty.safetensors", tmp_path / "wrong.safetensors"
    save_file({"input": np.zeros((0, 4, 4, 1), dtype=np.float32)}, str(empty))
    save_file({"input": np.zeros((2, 5, 4, 1), dtype=np.float32)}, str(wrong))
    refused(ligand("predict", "--model", model, "--input", empty, "--out", out), empty, "N = 0")
    refused(ligand("predict", "--model", model, "--input", wrong, "--out", out), wrong, "[2, 5, 4, 1]", "[4, 4, 1]")
    assert not out.exists()


def test_weights_overflowing_to_non_finite_logits_are_blamed_on_the_model(tmp_path, model, batch):
    tensors = {k: (v * np.float32(1e30) if v.dtype == np.float32 else v) for k, v in load_file(str(model)).items()}
    meta = json.loads(ligand("safetensors-tool", "dump", model).stdout)["metadata"]
    del meta["ligand.sha256"]
    huge = tmp_path / "huge.safetensors"
    save_file(tensors, str(huge), metadata=meta)
    out = tmp_path / "o.safetensors"
    r = ligand("predict", "--model", huge, "--input", batch, "--out", out)
    refused(r, huge, "model's weights produce non-finite logits")
    assert str(out) not in r.stderr and not out.exists()


def test_bench_train_refuses_a_zero_batch_size():
    refused(ligand("bench", "train", "--archs", "mlp", "--threads", "1", "--batch-size", "0", "--steps", "1"), "--batch-size")


def idx(dims, payload):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def data_dir(path, test_images, side=4):
    path.mkdir()
    for split, n in [("train", 2), ("t10k", test_images)]:
        (path / f"{split}-images-idx3-ubyte").write_bytes(idx([n, side, side], [7] * (n * side * side)))
        (path / f"{split}-labels-idx1-ubyte").write_bytes(idx([n], [i % 10 for i in range(n)]))
    return path


def test_eval_refuses_no_test_images_and_images_of_another_size(tmp_path, model):
    second = tmp_path / "second.safetensors"
    assert ligand("init", "--arch", "mlp", "--hidden", "4", "--input", "4,4,1", "--seed", "1", "--out", second).returncode == 0
    empty = data_dir(tmp_path / "empty", 0)
    r = ligand("eval", model, second, "--data", empty, "--quiet")
    refused(r, empty, "no images")
    assert "nan" not in r.stdout
    other = data_dir(tmp_path / "other", 3, side=5)
    refused(ligand("eval", model, second, "--data", other, "--quiet"), other, "[5, 5, 1]", "[4, 4, 1]")


def test_eval_json_report_may_not_replace_a_model(tmp_path, model):
    second = tmp_path / "second.safetensors"
    assert ligand("init", "--arch", "mlp", "--hidden", "4", "--input", "4,4,1", "--seed", "1", "--out", second).returncode == 0
    before = second.read_bytes()
    r = ligand("eval", model, second, "--data", data_dir(tmp_path / "d", 3), "--quiet", "--json", second)
    refused(r, second, "same file as the input")
    assert second.read_bytes() == before


def test_bench_forward_reports_images_per_second_and_the_fraction_of_peak(tmp_path):
    out = tmp_path / "forward.json"
    r = ligand("bench", "forward", "--archs", "mlp,vit", "--threads", "1", "--batch-sizes", "4,8", "--steps", "1", "--json", out)
    assert r.returncode == 0, r.stderr
    results = json.loads(out.read_text())["results"]
    names = [x["benchmark"] for x in results]
    assert names == ["forward mlp batch 4", "pass mlp batch 4", "forward mlp batch 8", "pass mlp batch 8",
                     "forward vit batch 4", "pass vit batch 4", "forward vit batch 8", "pass vit batch 8"]
    assert all(x["value"] > 0 for x in results)
