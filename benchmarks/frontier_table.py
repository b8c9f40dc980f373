#!/usr/bin/env python3
"""docs/fusion.md's frontier tables from a `ligand run` of recipes/run-frontier*.yaml (its report.json, or its --out
directory while runs are still under way: their runs/*/record.json files).

    python3 benchmarks/frontier_table.py out/frontier-vit

One row per method (and NeuLig mode), in the recipe's order: what data it used, test accuracy (%) per task, the mean,
the mean over the experts' mean (normalised), the CPU seconds of its busiest rank (pauses of the run do not count:
the ranks compute throughout a merge, so on an otherwise idle machine this is its wall time) and the choices it
made on calibration. The first rows are the experts each on its own task (per task from the zoo's manifest, found
in $LIGAND_ZOO_CACHE or cache/zoo, when it is there) and the pretrained backbone.
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_table import load  # noqa: E402

# method → (label, data it uses)
LABELS = {
    "neulig (global)": ("NeuLig, global mode", "Portland on images"),
    "neulig (task)": ("NeuLig, task mode (one backbone per task)", "Portland on images"),
    "average": ("weight averaging", "none"),
    "task-arithmetic": ("task arithmetic", "λ"),
    "ties": ("TIES", "k, λ"),
    "dare": ("DARE", "p, λ"),
    "tsv-m": ("TSV-M", "α"),
    "iso-c": ("Iso-C", "α"),
    "iso-cts": ("Iso-CTS", "α"),
    "wudi": ("WUDI", "α"),
    "fisher": ("Fisher merging", "Fisher on images"),
    "adamerging": ("AdaMerging, layer-wise", "entropy on images"),
    "regmean": ("RegMean", "Gram statistics"),
    "progressive": ("progressive", "layer statistics"),
}
# Settings that are inputs, not choices.
INPUTS = {"calibration_samples", "ridges", "features", "loss", "reg", "then", "fisher_samples", "adamerging_batch",
          "adamerging_lr", "adamerging_prior", "wudi_lr", "wudi_steps"}
SYMBOLS = {"lambda": "λ", "alpha": "α", "start": "prior"}


def short(task):
    """thumb_tr_rotate90_coarse → tr_rot90_c, as the docs' tables name tasks."""
    t = task.removeprefix("thumb_").replace("rotate90", "rot90").replace("invert", "inv")
    return t.removesuffix("_coarse") + "_c" if t.endswith("_coarse") else t


def expert_accuracies(columns):
    """Each expert's test accuracy on its own task, in column order, from the suite's cached zoo manifest (or None)."""
    found = {}
    for path in glob.glob(os.path.join(os.environ.get("LIGAND_ZOO_CACHE", "cache/zoo"), "*", "manifest.json")):
        with open(path) as f:
            for m in json.load(f).get("models", []):
                task = m.get("role", {}).get("expert", {}).get("task")
                if task in columns:
                    found.setdefault(task, []).append(m["testAccuracy"])
    # Two cached zoos with these tasks (other suites, other hashes) would be ambiguous.
    return [100 * found[c][0] for c in columns] if all(len(found.get(c, [])) == 1 for c in columns) else None


def chosen(hp):
    return ", ".join(f"{SYMBOLS.get(k, k)} = {v}" for k, v in sorted(hp.items()) if k not in INPUTS)


def main(path):
    _, rows = load(path)
    records = [r for series in rows.values() for r in series]
    first = records[0]
    columns = [short(c) for c in first["columns"]]
    experts = 100 * first["bestSingle"]
    print("| method | data | " + " | ".join(columns) + " | mean | normalised | CPU s | chosen on calibration |")
    print("| --- | --- | " + " | ".join("---" for _ in columns) + " | --- | --- | --- | --- |")
    blank = " | ".join("" for _ in columns)
    own = expert_accuracies(first["columns"])
    cells = " | ".join(f"{a:.2f}" for a in own) if own else blank
    print(f"| experts (each on its own task) | | {cells} | **{experts:.2f}** | 100% | | |")
    portland = [r["portlandEnsemble"] for r in records if r.get("portlandEnsemble") is not None]
    if portland:
        p = 100 * portland[0]
        print(f"| *Portland ensemble (all {first['k']} experts per input)* | | {blank} | *{p:.2f}* | *{p / experts:.1%}* | | |")
    pretrained = 100 * first["baselines"]["pretrained + task heads"]
    print(f"| pretrained + task heads | | {blank} | {pretrained:.2f} | {pretrained / experts:.1%} | | |")
    # NeuLig's modes share one Portland; its task-mode record names the loss it learned with.
    losses = {r["hyperparameters"].get("loss") for r in records if r["method"] == "neulig"} - {None}
    portland = "Portland on labelled images" if losses == {"sup"} else "Portland on images"
    for (series, _), rs in rows.items():
        for r in rs:
            method = series.split(" → ")[-1]
            label, data = LABELS.get(method, LABELS.get(method.split(" (")[0], (method, "")))
            start = r["hyperparameters"].get("progressive_start")
            if method.startswith("neulig"):
                data = portland
            if method.startswith("progressive"):
                # The recipe's default (no progressive_start given) is ours; a given start is a variant.
                label = "**progressive (ours), default**" if method == "progressive" else \
                    f"progressive, {'the mean' if start == 'average' else start} as prior"
            mean = 100 * r["accuracy"]
            cells = " | ".join(f"{100 * a:.2f}" for a in r["accuracies"])
            hp = {k: v for k, v in r["hyperparameters"].items() if not (k == "progressive_start" and method != "progressive")}
            row = [label, data, cells, f"{mean:.2f}", f"{mean / experts:.1%}", f"{max(r['cpuSecondsPerRank']):.0f}", chosen(hp)]
            if r.get("mode") == "task":
                # Not one model: a backbone per task.
                row[0], row[3], row[4] = f"*{label}*", f"*{row[3]}*", f"*{row[4]}*"
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
