#!/usr/bin/env python3
"""docs/scale.md's tables from `ligand run recipes/run-scale.yaml` reports at several rank counts.

    python3 benchmarks/scale_table.py out/scale-np4/report.json out/scale-np1/report.json
    python3 benchmarks/scale_table.py out/scale-np4        # the runs finished so far (their record.json files)

Per series and K: wall seconds, the busiest rank's CPU seconds and that over K/P (flat when CPU per rank
grows as K/P), the largest peak RSS of any rank, MB communicated by rank 0 and the largest phase, NeuLig's KB per
Portland step; then per series and rank count the least-squares line RSS = a + b·(K/P) over the K grid.
"""
import glob
import json
import os
import sys


def load(path):
    """A report.json, or an --out directory whose runs so far left runs/*/record.json (a run still under way)."""
    if os.path.isdir(path):
        records = []
        for rec in sorted(glob.glob(os.path.join(path, "runs", "*", "record.json"))):
            with open(rec) as f:
                records += json.load(f)["records"]
        report = {"ranks": records[0]["ranks"] if records else 1, "records": records}
    else:
        with open(path) as f:
            report = json.load(f)
    rows = {}
    for r in report["records"]:
        series = r["method"] if r.get("hyperparameters", {}).get("align") is None else f'{r["hyperparameters"]["align"]} → {r["method"]}'
        if r.get("mode"):
            series += f' ({r["mode"]})'
        rows.setdefault((series, r["k"]), []).append(r)
    return report["ranks"], rows


def fit(points):
    """Least-squares a + b·x over (x, y) points; (a, b)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx > 0 else 0.0
    return my - b * mx, b


def main(paths):
    reports = [load(p) for p in paths]
    keys = []
    for _, rows in reports:
        for key in rows:
            if key not in keys:
                keys.append(key)
    series_order = list(dict.fromkeys(s for s, _ in keys))
    keys.sort(key=lambda sk: (series_order.index(sk[0]), sk[1]))
    print("| series | K | P | wall s | CPU s (busiest rank) | CPU s / (K/P) | peak RSS MB (any rank) | MB sent (rank 0) | largest phase (MB) | KB / Portland step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for series, k in keys:
        for ranks, rows in reports:
            for r in rows.get((series, k), [])[:1]:
                cpu = max(r.get("cpuSecondsPerRank") or [float("nan")])
                rss = max(r.get("peakResidentBytesPerRank") or [0]) / 1e6
                phases = r.get("bytesPerPhase") or {}
                top = max(phases.items(), key=lambda kv: kv[1], default=None)
                step = r.get("bytesPerPortlandStep")
                print(f'| {series} | {k} | {ranks} | {r["wallSeconds"]:.1f} | {cpu:.1f} | {cpu / (k / ranks):.2f} | {rss:.0f} | '
                      f'{(r.get("bytesCommunicated") or 0) / 1e6:.2f} | {f"{top[0]} {top[1] / 1e6:.2f}" if top and top[1] > 0 else "–"} | '
                      f'{f"{step / 1e3:.1f}" if step is not None else "–"} |')
    print()
    print("| series | P | RSS ≈ a + b·(K/P): a (MB) | b (MB per local model) |")
    print("|---|---:|---:|---:|")
    for series in dict.fromkeys(s for s, _ in keys):
        for ranks, rows in reports:
            pts = [(k / ranks, max(rs[0].get("peakResidentBytesPerRank") or [0]) / 1e6) for (s, k), rs in rows.items() if s == series]
            if len(pts) >= 2:
                a, b = fit(pts)
                print(f"| {series} | {ranks} | {a:.0f} | {b:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
