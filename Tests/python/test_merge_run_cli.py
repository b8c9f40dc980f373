"""`ligand merge` and `ligand run` refuse bad options before any work: one message, non-zero exit, nothing written."""
import os
import subprocess

LIGAND = os.path.abspath(os.environ.get("LIGAND_BIN", ".build/debug/ligand"))


def ligand(*args, cwd=None):
    return subprocess.run([LIGAND, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


def refused(r, needle):
    assert r.returncode != 0, r.stdout + r.stderr
    assert needle in r.stderr, r.stderr
    assert sum(1 for line in r.stderr.splitlines() if "rror" in line) == 1, r.stderr


def test_run_and_merge_out_on_an_existing_file_say_so(tmp_path):
    f = tmp_path / "taken"
    f.write_text("keep me")
    for name, seed in [("a", 0), ("b", 1)]:
        assert ligand("init", "--hidden", "4", "--seed", seed, "--out", tmp_path / f"{name}.safetensors").returncode == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"experiments:\n  - name: x\n    models: [{tmp_path}/a.safetensors, {tmp_path}/b.safetensors]\n    methods: [average]\n")
    refused(ligand("run", recipe, "--out", f, "--dry-run"), f"--out {f}: exists and is not a directory")
    refused(ligand("merge", "--method", "average", "--suite", "s", "--out", f), f"--out {f}: exists and is not a directory")
    assert f.read_text() == "keep me"


def test_merge_refuses_an_option_of_another_method_and_degenerate_values(tmp_path):
    out = tmp_path / "out"
    refused(ligand("merge", "--method", "average", "--suite", "s", "--out", out, "--gammas", "1"),
            "--gammas does not apply to --method average")
    refused(ligand("merge", "--method", "neulig", "--suite", "s", "--out", out, "--epochs", "0"),
            "--epochs: must be at least 1, got 0")
    refused(ligand("merge", "--method", "neulig", "--suite", "s", "--out", out, "--epochs", "-3"),
            "--epochs: must be at least 1, got -3")
    refused(ligand("merge", "--method", "cca", "--suite", "s", "--out", out, "--bogus", "1"), "unknown option '--bogus'")
    assert not out.exists()


def test_run_k_keeps_only_those_runs_and_refuses_a_k_not_planned():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    recipe = "recipes/run-scale.yaml"   # its zoo recipe is named from the repository root
    r = ligand("run", recipe, "--k", "32,64", "--dry-run", cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10 and all(", K = 32," in x or ", K = 64," in x for x in lines), r.stdout
    refused(ligand("run", recipe, "--k", "65", "--dry-run", cwd=root), "--k 65: the recipe plans no run of K = 65 (its K values: 2, 4, 8, 16, 32, 64)")
    refused(ligand("run", recipe, "--k", "6x", "--dry-run", cwd=root), "--k: '6x' is not an integer")
