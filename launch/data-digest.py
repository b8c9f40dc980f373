"""sha256 of each safetensors file's data section (its tensors' bytes, the header and its metadata left out), one line per file."""
import hashlib
import struct
import sys

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        print(hashlib.sha256(f.read()).hexdigest(), path)
