#!/usr/bin/env python3
"""Packs format/golden/*/ into open_store inputs (see fuzz_targets/open_store.rs)."""
import os
import struct
import sys

golden = os.path.join(os.path.dirname(__file__), "..", "format", "golden")
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
for version in sorted(os.listdir(golden)):
    packed = b""
    for name in sorted(os.listdir(os.path.join(golden, version))):
        kind = 0 if name == "meta" else 1 if name.endswith(".seg") else 2 if name.endswith(".idx") else None
        if kind is None:
            continue
        ident = 0 if kind == 0 else int(name.split(".")[0], 16)
        data = open(os.path.join(golden, version, name), "rb").read()[:0xFFFF]
        packed += struct.pack("<BBH", kind, ident & 0xFF, len(data)) + data
    open(os.path.join(out_dir, "golden-" + version), "wb").write(packed)
