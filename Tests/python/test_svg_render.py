"""The charts of `ligand report` (the same writer as `ligand run`) render in headless Chromium and are not blank."""
import json
import os
import shutil
import struct
import subprocess
import zlib

import pytest

LIGAND = os.environ.get("LIGAND_BIN", ".build/debug/ligand")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash launch/setup.sh)")


def record(suite, kind, method, k, subset, seed, acc, ens, best, mode=None):
    return {"suite": suite, "suiteKind": kind, "architecture": "mlp", "method": method, "mode": mode, "k": k,
            "subset": [f"m{i}" for i in subset], "subsetIndices": subset, "seed": seed, "split": "test",
            "columns": ["accuracy"], "accuracies": [acc], "accuracy": acc, "ensemble": ens, "bestSingle": best,
            "baselines": {}, "hyperparameters": {}, "wallSeconds": 1.5 * k, "bytesCommunicated": 0, "ranks": 1,
            "cpuSecondsPerRank": [1.2 * k], "peakResidentBytesPerRank": [int(100e6 * k)]}


def fixture():
    recs = []
    for k, subsets in [(2, [[0, 1], [1, 2], [0, 3]]), (3, [[0, 1, 2], [1, 2, 3]]), (4, [[0, 1, 2, 3]])]:
        for j, s in enumerate(subsets):
            ens = 0.87 + 0.002 * k + 0.001 * j
            recs.append(record("demo-seeds", "seeds", "cca", k, s, 0, ens - 0.005 * k, ens, 0.872))
            recs.append(record("demo-seeds", "seeds", "average", k, s, 0, ens - 0.1 * k, ens, 0.872))
            recs.append(record("demo-tasks", "tasks", "neulig", k, s, 0, ens - 0.01, ens, 0.9, mode="task"))
    return {"recipe": "fixture.yaml", "ranks": 1, "records": recs}


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, decoded with zlib only."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    w = h = depth = ctype = None
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def render(svg, png, size):
    """Screenshot of the SVG opened as a page in headless Chromium."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={size}", f"--screenshot={png}", f"file://{svg}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and os.path.exists(png), r.stderr


BLUE, RED, GREEN, BLACK = (0x1f, 0x77, 0xb4), (0xd6, 0x27, 0x28), (0x2c, 0xa0, 0x2c), (0, 0, 0)


@needs_chromium
@pytest.mark.parametrize("chart,size,series", [("accuracy-vs-k.svg", "1400,380", [BLUE, RED, BLACK]),
                                               ("merged-vs-ensemble.svg", "760,520", [BLUE, RED, GREEN]),
                                               ("costs-vs-k.svg", "1400,380", [BLUE, RED, GREEN])])
def test_charts_render_and_are_not_blank(tmp_path, chart, size, series):
    (tmp_path / "report.json").write_text(json.dumps(fixture()))
    r = subprocess.run([LIGAND, "report", str(tmp_path / "report.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| cca | 2 | 3 |" in r.stdout
    svg = tmp_path / chart
    assert svg.read_text().startswith("<?xml")
    png = tmp_path / (chart + ".png")
    render(str(svg), str(png), size)
    w, h, bpp, rows = png_pixels(str(png))
    colours, ink = set(), 0
    for row in rows[::2]:
        for x in range(0, w * bpp, 2 * bpp):
            px = row[x:x + 3]
            colours.add(px)
            ink += px != b"\xff\xff\xff"
    # Axes, text and at least three coloured series: far from a blank page.
    assert ink > 0.01 * (w // 2) * (h // 2), f"{ink} non-white samples"
    assert len(colours) >= 8, f"only {len(colours)} distinct colours"
    # Each series' colour (accuracy-vs-k: two methods per panel and the black ensemble line) is drawn.
    for rgb in series:
        assert any(all(abs(p - q) <= 8 for p, q in zip(c, rgb)) for c in colours), f"no pixel near {rgb}"


def test_the_cost_table_and_its_bounds(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(fixture()))
    r = subprocess.run([LIGAND, "report", str(tmp_path / "report.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # K = 3: two runs of 4.5 s wall, 3.6 CPU s each, 300 MB peak; no bytes (one rank).
    assert "| demo-seeds | cca | 3 | 2 | 9.0 | 3.6 | 300 | 0.00 | – | – |" in r.stdout
    # Bytes by phase: the mean over the runs (a phase one run lacks counts 0 there), the three largest; per Portland step.
    phased = fixture()
    for i, rec in enumerate(r for r in phased["records"] if r["k"] == 2 and r["method"] == "neulig"):
        rec["bytesPerPhase"] = {"features": 4_000_000, "portland": 2_000_000 * (i + 1), "ensembles": 1_000_000, "evaluate": 10}
        rec["bytesCommunicated"] = sum(rec["bytesPerPhase"].values())
        rec["bytesPerPortlandStep"] = 1500.0 * (i + 1)
    (tmp_path / "phased.json").write_text(json.dumps(phased))
    r = subprocess.run([LIGAND, "report", str(tmp_path / "phased.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| features 4.00, portland 4.00, ensembles 1.00 | 3.0 |" in r.stdout, r.stdout
    for field, value, why in [("cpuSecondsPerRank", [1.0, 2.0], "per rank (1)"), ("bytesPerPhase", {"statistics": -1}, "bytesPerPhase.statistics"),
                              ("bytesPerPortlandStep", -2.0, "bytesPerPortlandStep")]:
        bad = fixture()
        bad["records"][0][field] = value
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        r = subprocess.run([LIGAND, "report", str(tmp_path / "bad.json")], capture_output=True, text=True)
        assert r.returncode != 0 and field in r.stderr and why in r.stderr, r.stderr


def test_report_names_the_file_and_field_of_a_bad_json(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"recipe": "x", "ranks": 1, "records": [{"suite": "s"}]}))
    r = subprocess.run([LIGAND, "report", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert str(bad) in r.stderr and "records" in r.stderr
