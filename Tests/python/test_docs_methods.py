"""docs/run.md's method tables are `ligand methods --markdown`, i.e. the methods' own declarations (issue 15)."""
import os
import re
import subprocess

BIN = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_docs_run_md_method_tables_are_the_declarations():
    out = subprocess.run([BIN, "methods", "--markdown"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = open(os.path.join(ROOT, "docs", "run.md"), encoding="utf-8").read()
    m = re.search(r"<!-- ligand methods --markdown: begin -->\n(.*?)<!-- ligand methods --markdown: end -->", doc, re.S)
    assert m, "docs/run.md lacks the generated method tables"
    assert m.group(1) == out.stdout, "docs/run.md is stale: regenerate it with `ligand methods --markdown`"


def test_merge_help_lists_every_method_and_option_with_a_default():
    out = subprocess.run([BIN, "methods"], capture_output=True, text=True, timeout=60).stdout
    options = [l for l in out.splitlines() if l.startswith("  --")]
    assert len(options) >= 15, out
    assert all("(default: " in l for l in options), out
    for name in ["neulig", "average", "task-arithmetic", "ties", "regmean", "progressive", "weight-matching", "permute", "cca"]:
        assert f"  {name} [" in out, name
