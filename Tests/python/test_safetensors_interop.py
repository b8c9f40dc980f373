"""Interoperability of Ligand's safetensors reader/writer with Python's `safetensors` package.

Drives the hidden `ligand safetensors-tool` subcommand; the binary comes from $LIGAND_BIN
(default .build/debug/ligand). Needs `safetensors` and `numpy` (launch/python-tests.sh installs them).
"""
import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import safetensors
from safetensors import safe_open
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
LIGAND_BIN = Path(os.environ.get("LIGAND_BIN", ".build/debug/ligand"))
if not LIGAND_BIN.is_absolute():
    LIGAND_BIN = (Path.cwd() / LIGAND_BIN) if (Path.cwd() / LIGAND_BIN).exists() else REPO / LIGAND_BIN


def ligand(*args, check=True):
    if not LIGAND_BIN.exists():
        pytest.fail(f"ligand binary not found at {LIGAND_BIN}; build it or set LIGAND_BIN")
    proc = subprocess.run([str(LIGAND_BIN), "safetensors-tool", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"ligand {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def dump(path):
    return json.loads(ligand("dump", path).stdout)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def raw_header(path):
    """The file's header parsed independently of both implementations."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n]), data


def bf16_bits(values):
    """float32 -> bfloat16 bit patterns, rounding to nearest even."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


# (a) Python writes, Ligand reads.

def python_sample():
    rng = np.random.default_rng(1234)
    return {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((2, 3, 5)).astype(np.float32),
        "f16": np.array([0, -0.5, 65504, 2.0 ** -24, 1.0009765625, 3.0], dtype=np.float16).reshape(2, 3),
        "i64": np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], dtype=np.int64),
        "i32": rng.integers(-2**31, 2**31, size=(7,), dtype=np.int32),
        "i16": np.array([-32768, 0, 32767], dtype=np.int16),
        "i8": np.array([[-128, 127], [0, -1]], dtype=np.int8),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "u32": np.array([0, 2**32 - 1, 5], dtype=np.uint32),
        "u16": np.array([65535], dtype=np.uint16),
        "u8": np.arange(10, dtype=np.uint8),
        "flags": np.array([True, False, True, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "layers.0.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7,
    }


def check_dump_matches(path, tensors, expected_dtypes, metadata):
    report = dump(path)
    assert report["metadata"] == metadata
    by_name = {t["name"]: t for t in report["tensors"]}
    assert set(by_name) == set(tensors)
    _, header, data = raw_header(path)
    for name, (dtype, shape, raw) in ((n, (expected_dtypes[n], *v)) for n, v in tensors.items()):
        t = by_name[name]
        assert t["dtype"] == dtype, name
        assert t["shape"] == list(shape), name
        assert t["sha256"] == sha256(raw), name
        assert t["data_offsets"] == header[name]["data_offsets"], name
    # Ligand lists tensors in data order.
    offsets = [t["data_offsets"] for t in report["tensors"]]
    assert offsets == sorted(offsets)
    assert report["data_start"] == 8 + raw_header(path)[0]


def test_ligand_reads_file_written_by_python_numpy(tmp_path):
    arrays = python_sample()
    path = tmp_path / "from_python.safetensors"
    metadata = {"written_by": "python", "architecture": json.dumps({"kind": "mlp", "widths": [4, 3]}), "λ": "✓"}
    save_file(arrays, str(path), metadata=metadata)
    dtypes = {name: next(k for k, v in NUMPY_DTYPES.items() if np.dtype(v) == a.dtype) for name, a in arrays.items()}
    tensors = {name: (a.shape, a.tobytes()) for name, a in arrays.items()}
    check_dump_matches(path, tensors, dtypes, metadata)


def test_ligand_reads_bfloat16_written_by_python(tmp_path):
    if not hasattr(safetensors, "TensorSpec"):
        pytest.skip("this safetensors version has no TensorSpec raw-serialisation API")
    bf = bf16_bits([1.5, -3.25, 1e30, 0.1, -0.0, 7.0]).reshape(2, 3)
    f32 = np.array([[1.0, 2.0]], dtype=np.float32)
    specs = {
        "bf": safetensors.TensorSpec(dtype="bfloat16", shape=list(bf.shape), data_ptr=bf.ctypes.data, data_len=bf.nbytes),
        "f": safetensors.TensorSpec(dtype="float32", shape=list(f32.shape), data_ptr=f32.ctypes.data, data_len=f32.nbytes),
    }
    path = tmp_path / "bf16.safetensors"
    safetensors.serialize_file(specs, str(path), metadata=None)
    check_dump_matches(path, {"bf": (bf.shape, bf.tobytes()), "f": (f32.shape, f32.tobytes())},
                       {"bf": "BF16", "f": "F32"}, {})


def test_ligand_rejects_corrupted_python_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(path))
    with open(path, "ab") as f:
        f.write(b"\0")
    proc = ligand("dump", path, check=False)
    assert proc.returncode != 0
    assert str(path) in proc.stderr and "trailing" in proc.stderr, proc.stderr

    path.write_bytes(path.read_bytes()[:-5])
    proc = ligand("dump", path, check=False)
    assert proc.returncode != 0
    assert str(path) in proc.stderr and '"w"' in proc.stderr, proc.stderr


# (b) Ligand writes, Python reads.

SAMPLE_METADATA = {
    "format": "ligand-sample",
    "architecture": '{"kind":"mlp","widths":[4,3,2]}',
    "unicode": "λ → ✓",
}


def le(dtype, values):
    return np.array(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


# Bytes of the sample tensors whose values are fixed, built here independently of Ligand.
SAMPLE_KNOWN = {
    "f64": ("F64", [2, 3], le(np.float64, [-1.5, 0, 1e-300, 3.141592653589793, 1e300, -1.5 * 2.0 ** -1040])),
    "f16": ("F16", [5], le(np.float16, [0, -0.5, 65504, 2.0 ** -24, 1.0009765625])),
    "bf16": ("BF16", [3], bf16_bits([1.5, -3.25, 1e30]).astype("<u2").tobytes()),
    "f8_e5m2": ("F8_E5M2", [4], bytes([0x00, 0x3C, 0xBC, 0x7B])),
    "f8_e4m3": ("F8_E4M3", [4], bytes([0x00, 0x38, 0xB8, 0x7E])),
    "i64": ("I64", [2, 2], le(np.int64, [-2**63, -1, 0, 2**63 - 1])),
    "i32": ("I32", [4], le(np.int32, [-2**31, -1, 0, 2**31 - 1])),
    "i16": ("I16", [4], le(np.int16, [-2**15, -1, 0, 2**15 - 1])),
    "i8": ("I8", [4], le(np.int8, [-128, -1, 0, 127])),
    "u64": ("U64", [3], le(np.uint64, [0, 1, 2**64 - 1])),
    "u32": ("U32", [3], le(np.uint32, [0, 1, 2**32 - 1])),
    "u16": ("U16", [3], le(np.uint16, [0, 1, 2**16 - 1])),
    "u8": ("U8", [3], bytes([0, 1, 255])),
    "bool": ("BOOL", [3], bytes([1, 0, 1])),
    "scalar_f32": ("F32", [], le(np.float32, 42.25)),
    "empty_i32": ("I32", [0, 3], b""),
    "layers.0.weight": ("F32", [3, 4], le(np.float32, np.arange(12) / 8)),
}


@pytest.fixture(scope="module")
def ligand_sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "ligand_sample.safetensors"
    ligand("write-sample", path)
    return path


def test_python_safe_open_reads_ligand_sample(ligand_sample):
    raw = dict(safetensors.deserialize(ligand_sample.read_bytes()))
    report = {t["name"]: t for t in dump(ligand_sample)["tensors"]}
    assert set(raw) == set(SAMPLE_KNOWN) | {"f32"}
    assert raw["f32"]["dtype"] == "F32" and list(raw["f32"]["shape"]) == [2, 3, 2]

    with safe_open(str(ligand_sample), framework="np") as f:
        assert f.metadata() == SAMPLE_METADATA
        assert set(f.keys()) == set(raw)
        for name, info in raw.items():
            data = bytes(info["data"])
            assert sha256(data) == report[name]["sha256"], name
            if name in SAMPLE_KNOWN:
                dtype, shape, expected = SAMPLE_KNOWN[name]
                assert info["dtype"] == dtype, name
                assert list(info["shape"]) == shape, name
                assert data == expected, name
            if info["dtype"] in NUMPY_DTYPES:
                arr = f.get_tensor(name)
                assert arr.dtype == np.dtype(NUMPY_DTYPES[info["dtype"]]), name
                assert list(arr.shape) == list(info["shape"]), name
                assert arr.astype(arr.dtype.newbyteorder("<")).tobytes() == data, name


def test_ligand_sample_layout(ligand_sample):
    n, header, data = raw_header(ligand_sample)
    assert (8 + n) % 8 == 0, "data starts 8-byte aligned"
    assert header["__metadata__"] == SAMPLE_METADATA
    names = [k for k in header if k != "__metadata__"]
    assert names == ["f64", "f32", "f16", "bf16", "f8_e5m2", "f8_e4m3", "i64", "i32", "i16", "i8",
                     "u64", "u32", "u16", "u8", "bool", "scalar_f32", "empty_i32", "layers.0.weight"]
    end = 0
    for name in names:
        begin, stop = header[name]["data_offsets"]
        assert begin == end, name
        end = stop
    assert 8 + n + end == len(data)


def test_round_trip_through_both(tmp_path, ligand_sample):
    """Python re-saves what it read from Ligand; Ligand must report identical bytes."""
    with safe_open(str(ligand_sample), framework="np") as f:
        arrays = {k: f.get_tensor(k) for k in f.keys() if k not in ("bf16", "f8_e5m2", "f8_e4m3")}
    path = tmp_path / "resaved.safetensors"
    save_file(arrays, str(path), metadata=SAMPLE_METADATA)
    again = {t["name"]: t for t in dump(path)["tensors"]}
    original = {t["name"]: t for t in dump(ligand_sample)["tensors"]}
    for name in arrays:
        assert again[name]["sha256"] == original[name]["sha256"], name
        assert again[name]["shape"] == original[name]["shape"], name
        assert again[name]["dtype"] == original[name]["dtype"], name
