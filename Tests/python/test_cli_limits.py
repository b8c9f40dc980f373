"""Bad input to the `ligand` CLI: resource bombs, negative and huge counts, degenerate reports.
Each case must exit non-zero within seconds with one message naming the file and field (or flag), and write nothing."""
import json
import os
import subprocess

import pytest

# Absolute: some cases run with the recipe's directory as the working directory.
LIGAND = os.path.abspath(os.environ.get("LIGAND_BIN", ".build/debug/ligand"))


def ligand(*args, cwd=None):
    return subprocess.run([LIGAND, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


def refused(r, *needles):
    assert r.returncode != 0, r.stdout
    assert "Missing value" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    # One message: a single error line (argument-parser may add its usage line after it).
    assert sum(1 for line in r.stderr.splitlines() if "rror" in line) == 1, r.stderr


@pytest.mark.parametrize("flag,value,message", [
    ("--epochs", "-3", "--epochs must be a positive integer, got -3"),
    ("--batch-size", "-1", "--batch-size must be a positive integer, got -1"),
    ("--calibration", "-5", "--calibration must be a non-negative integer, got -5"),
    ("--train-images", "-7", "--train-images must be a positive integer, got -7"),
    ("--width", "-2", "--width must be a positive integer, got -2"),
    ("--epochs", "3000000000", "--epochs must be at most 10000, got 3000000000"),
    ("--threads", "100000", "--threads must be at most 1024, got 100000"),
    ("--hidden", "16384,16384", "281,444,352 weights, more than the limit of 100,000,000"),
])
def test_train_counts_are_checked_before_any_work(tmp_path, flag, value, message):
    out = tmp_path / "m.safetensors"
    # --data points nowhere: the flag must be refused before the data set is even looked for.
    refused(ligand("train", flag, value, "--data", tmp_path / "nowhere", "--out", out), message)
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["eval", "--test-images", "-5", "x.safetensors"], "--test-images must be a positive integer, got -5"),
    (["bench", "gemm", "--repeats", "-1"], "--repeats must be a positive integer, got -1"),
    (["bench", "gemm", "--sizes", "100000"], "--sizes must be at most 8192, got 100000"),
    (["bench", "allreduce", "--sizes", "99999999999"], "--sizes must be at most 1024, got 99999999999"),
    (["bench", "train", "--steps", "-4"], "--steps must be a positive integer, got -4"),
    (["bench", "forward", "--steps", "-4"], "--steps must be a positive integer, got -4"),
    (["bench", "forward", "--batch-sizes", "99999999"], "--batch-sizes must be at most"),
    (["info", "--models", "-3"], "--models must be a non-negative integer, got -3"),
])
def test_other_commands_name_the_flag_of_a_bad_count(args, message):
    refused(ligand(*args), message)


ZOO = "suites:\n  s30:\n    kind: seeds\n    architectures: [mlp]\n    models: 30\n"


def dry_run(tmp_path, body, zoo=ZOO):
    (tmp_path / "zoo.yaml").write_text(zoo)
    (tmp_path / "r.yaml").write_text("zoo: zoo.yaml\nout: out\n" + body)
    r = ligand("run", "r.yaml", "--dry-run", cwd=tmp_path)
    assert not (tmp_path / "out").exists()
    return r


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    r = dry_run(tmp_path, "\n".join(lines) + "\nexperiments: *i\n")
    refused(r, "r.yaml: expands to more than 100,000 YAML values")


def test_oversized_and_directory_recipes(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(ZOO + "#" + "x" * (1 << 20))
    refused(ligand("zoo", "build", big), "big.yaml: is larger than the 1,048,576-byte limit for a recipe")
    refused(ligand("run", tmp_path, "--dry-run"), f"{tmp_path}: is a directory, not a recipe file")


@pytest.mark.parametrize("body,message", [
    ("experiments:\n  - suite: s30\n    k: [15]\n    subsets: all\n    methods: [average]\n",
     "r.yaml: experiments[0].subsets: 'all' asks for C(30, 15) = 155,117,520 subsets of K = 15, more than the limit of 10,000 planned runs"),
    ("experiments:\n  - suite: s30\n    k: [3]\n    subsets: 100000000\n    methods: [average]\n",
     "r.yaml: experiments[0].subsets: must be first, all or an integer in 1...10000, got 100000000"),
    ("seeds: 1e9\nexperiments:\n  - suite: s30\n    methods: [neulig]\n", "r.yaml: seeds: must be an integer in 1...1000, got 1000000000.0"),
    ("seeds: 1000000000\nexperiments:\n  - suite: s30\n    methods: [neulig]\n", "r.yaml: seeds: must be an integer in 1...1000, got 1000000000"),
    ("seeds: 1000\nexperiments:\n  - suite: s30\n    k: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n    methods: [neulig, weight-matching]\n",
     "r.yaml: experiments[0]: plans more than 10,000 runs"),
    ("experiments:\n  - suite: s30\n    k: [1]\n    methods: [average]\n", "r.yaml: experiments[0].k[0]: must be an integer ≥ 2, got 1"),
])
def test_run_plans_are_bounded_at_parse_time(tmp_path, body, message):
    refused(dry_run(tmp_path, body), message)


@pytest.mark.parametrize("line,message", [
    ("models: 1000000000", "zoo.yaml: suites.s30.models: must be an integer in 1...1000, got 1000000000"),
    ("epochs: 4294967296", "zoo.yaml: suites.s30.epochs: must be an integer in 1...10000, got 4294967296"),
    ("calibration: 60000", "zoo.yaml: suites.s30.calibration: must be an integer in 0...59999, got 60000"),
    ("batch_size: 100000", "zoo.yaml: suites.s30.batch_size: must be an integer in 1...4096, got 100000"),
])
def test_zoo_counts_are_refused_in_dry_run(tmp_path, line, message):
    r = dry_run(tmp_path, "experiments:\n  - suite: s30\n    methods: [average]\n", zoo=ZOO.replace("models: 30", line + ("" if line.startswith("models") else "\n    models: 30")))
    refused(r, "r.yaml: zoo: the zoo recipe 'zoo.yaml' cannot be used: " + message)


def report(tmp_path, records, recipe="r.yaml"):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"recipe": recipe, "ranks": 1, "records": records}))
    return path


def record(**changes):
    r = {"suite": "s", "suiteKind": "seeds", "architecture": "mlp", "method": "cca", "k": 2, "subset": ["a", "b"], "subsetIndices": [0, 1],
         "seed": 0, "split": "test", "columns": ["accuracy"], "accuracies": [0.8], "accuracy": 0.8, "ensemble": 0.85, "bestSingle": 0.84,
         "baselines": {}, "hyperparameters": {}, "wallSeconds": 1.0, "bytesCommunicated": 0, "ranks": 1}
    r.update(changes)
    return r


@pytest.mark.parametrize("changes,message", [
    ({"k": -1}, "field .records[0].k: must be an integer in 1...1000000, got -1"),
    ({"accuracy": 1e308}, "field .records[0].accuracy: must be an accuracy, a fraction in [0, 1], got 1e+308"),
])
def test_report_refuses_degenerate_figures_and_writes_nothing(tmp_path, changes, message):
    refused(ligand("report", report(tmp_path, [record(**changes)])), "not a ligand run report", message)
    assert not (tmp_path / "report.md").exists() and not list(tmp_path.glob("*.svg"))


def test_report_escapes_html_in_names(tmp_path):
    r = ligand("report", report(tmp_path, [record(suite="<img src=x onerror=alert(1)>", method="a|b")], recipe="<b>x</b>"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "report.md").read_text()
    assert "<img" not in md and "<b>" not in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "a\\|b" in md
    for svg in tmp_path.glob("*.svg"):
        assert "<img" not in svg.read_text()


def test_report_paths_get_plain_messages(tmp_path):
    path = report(tmp_path, [record()])
    refused(ligand("report", tmp_path), f"{tmp_path}: is a directory", f"did you mean {path}?")
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(ligand("report", path, "--out", afile), f"--out {afile}: exists and is not a directory")
    for r in (ligand("report", tmp_path), ligand("report", path, "--out", afile)):
        assert "NSCocoaErrorDomain" not in r.stderr
