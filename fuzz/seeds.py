#!/usr/bin/env python3
"""Seeds the corpora from format/golden/: each log store packed into an open_store input (see
fuzz_targets/open_store.rs), each golden snapshot's manifest and chunk into a
snapshot_manifest input (see fuzz_targets/snapshot_manifest.rs), each golden wire frame
(without its length prefix) into a decode_message input. Argument: the corpus root."""
import os
import struct
import sys

golden = os.path.join(os.path.dirname(__file__), "..", "format", "golden")
corpus = sys.argv[1]


def write(target, name, data):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    open(os.path.join(corpus, target, name), "wb").write(data)


for version in sorted(os.listdir(golden)):
    root = os.path.join(golden, version)
    names = sorted(os.listdir(root))
    if "meta" in names:
        packed = b""
        for name in names:
            kind = 0 if name == "meta" else 1 if name.endswith(".seg") else 2 if name.endswith(".idx") else None
            if kind is None:
                continue
            ident = 0 if kind == 0 else int(name.split(".")[0], 16)
            data = open(os.path.join(root, name), "rb").read()[:0xFFFF]
            packed += struct.pack("<BBH", kind, ident & 0xFF, len(data)) + data
        write("open_store", "golden-" + version, packed)
    for snap in (n for n in names if n.endswith(".snap")):
        manifest = open(os.path.join(root, snap, "MANIFEST"), "rb").read()[:0xFFFF]
        chunk = open(os.path.join(root, "chunk.bin"), "rb").read()[:0xFFFF]
        packed = struct.pack("<H", len(manifest)) + manifest + struct.pack("<H", len(chunk)) + chunk
        write("snapshot_manifest", "golden-" + version, packed)

wire = os.path.join(golden, "wire-v1")
for name in sorted(os.listdir(wire)):
    write("decode_message", "golden-" + name, open(os.path.join(wire, name), "rb").read()[4:])
