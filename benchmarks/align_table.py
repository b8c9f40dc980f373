#!/usr/bin/env python3
"""docs/alignment.md's ViT table from `ligand run recipes/run-align-vit.yaml` (its report.json, or its --out directory
while runs are still under way: their runs/*/record.json files).

    python3 benchmarks/align_table.py out/align-vit
    python3 benchmarks/align_table.py --aligned out/cca-dense-k*/report.json   # `ligand merge --method cca` reports

Per method and K: test accuracy (%) of the one fused model, with the wall seconds of its merge; then the ensemble and
the best single model per K, the gap of each method to the ensemble and the largest peak RSS of any rank.
With --aligned: per `ligand merge --method cca` report.json, each model's calibration accuracy before and after its maps.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_table import load  # noqa: E402


def aligned(paths):
    """Per report: K, γ, stream, mean calibration accuracy of the mapped models alone and of the same models unmapped."""
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        own = {row["name"]: float(row["hyperparameters"]["calibration"]) for row in r["rows"] if row["kind"] == "single"}
        mapped = {k[len("aligned "):]: v for k, v in r["calibrationScores"].items() if k.startswith("aligned ")}
        fused_row = next(row for row in r["rows"] if row["kind"] == "fused")
        fused, hp = fused_row["mean"], fused_row["hyperparameters"]
        drop = [own[m] - v for m, v in mapped.items()]
        print(f'K = {len(own)}, stream {hp.get("stream", "permute")}, γ {hp.get("gamma")}: mapped models alone '
              f'{100 * sum(mapped.values()) / len(mapped):.2f}% on calibration (unmapped {100 * sum(own[m] for m in mapped) / len(mapped):.2f}%; '
              f'drop {100 * min(drop):.2f}–{100 * max(drop):.2f} points); fused {100 * fused:.2f}% on test')


def main():
    if sys.argv[1] == "--aligned":
        aligned(sys.argv[2:])
        return
    # scale_table's reader: records by (series, K), a series "method" or "align → method" (tags already in the name).
    _, groups = load(sys.argv[1])
    by = {key: group[0] for key, group in groups.items()}
    rs = list(by.values())
    ks = sorted({r["k"] for r in rs})
    # recipes/run-align-vit.yaml's methods, listed (as "—") before they have run.
    order = ["average", "weight-matching", "permute", "cca", "cca (stream dense)", "cca → progressive", "permute → progressive",
             "cca → neulig"]
    methods = sorted({m for m, _ in by} | set(order), key=lambda m: (order.index(m) if m in order else len(order), m))
    ref = {k: next(r for r in rs if r["k"] == k) for k in ks}
    print("| method | " + " | ".join(f"K = {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    print("| ensemble (mean softmax) | " + " | ".join(f'{100 * ref[k]["ensemble"]:.2f}' for k in ks) + " |")
    print("| best single | " + " | ".join(f'{100 * ref[k]["bestSingle"]:.2f}' for k in ks) + " |")
    for m in methods:
        cells = []
        for k in ks:
            r = by.get((m, k))
            cells.append("—" if r is None else f'{100 * r["accuracy"]:.2f} ({r["wallSeconds"]:.0f} s)')
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    print("Gap to the ensemble (points): " + "; ".join(
        f'{m} ' + " → ".join(f'{100 * (by[(m, k)]["ensemble"] - by[(m, k)]["accuracy"]):.1f}' for k in ks if (m, k) in by)
        for m in methods if any((m, k) in by for k in ks)))
    kmax = ks[-1]
    print()
    print(f"Peak RSS per rank at K = {kmax} (MB, largest rank): " + "; ".join(
        f'{m} {max(by[(m, kmax)]["peakResidentBytesPerRank"]) / 1e6:.0f}' for m in methods if (m, kmax) in by))


if __name__ == "__main__":
    main()
