#!/usr/bin/env python3
"""Writes the malformed-file corpus read by ../corpus.rs: one defect per file.

Standard library only; gzip members carry mtime 0 so reruns give the same bytes (for one zlib
version). Run from anywhere: python3 crates/nnc-data/tests/corpus/make.py
"""

import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx(ty, dims, payload=b""):
    """An IDX file: 00 00 type ndims, big-endian u32 dims, payload."""
    return bytes([0, 0, ty, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def write(name, data):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


U8 = 0x08

# Valid partners for the pair cases: 4 images of 3x3, 4 labels.
write("ok-images.idx", idx(U8, [4, 3, 3], bytes(range(36))))
write("ok-labels.idx", idx(U8, [4], bytes([0, 1, 2, 3])))

# IDX headers and payload sizes (read_idx).
write("idx-empty.idx", b"")
write("idx-bad-magic.idx", bytes([0x01, 0x02, U8, 1]) + struct.pack(">I", 4) + bytes(4))
write("idx-bad-type.idx", idx(0x07, [4], bytes(4)))
write("idx-zero-dims.idx", bytes([0, 0, U8, 0]) + bytes(8))
write("idx-five-dims.idx", idx(U8, [1, 1, 1, 1, 1], bytes(1)))
write("idx-truncated-header.idx", idx(U8, [10, 5, 5])[:10])
write("idx-truncated-payload.idx", idx(U8, [10, 5, 5], bytes(200)))
write("idx-trailing-bytes.idx", idx(U8, [10, 5, 5], bytes(260)))
write("idx-4-billion-images.idx", idx(U8, [4_000_000_000, 28, 28], bytes(256)))
write("idx-4-billion-images.idx.gz", gz(idx(U8, [4_000_000_000, 28, 28], bytes(256))))
write("idx-size-overflow.idx", idx(0x0E, [0xFFFFFFFF] * 4, bytes(8)))

# Gzip streams.
good = gz(idx(U8, [10, 5, 5], bytes(range(250))))
write("gzip-corrupt.idx.gz", good[:10] + b"\xff" * 40)
write("gzip-truncated.idx.gz", good[: len(good) // 2])
bad_crc = bytearray(good)
bad_crc[-8] ^= 0x01
write("gzip-bad-crc.idx.gz", bytes(bad_crc))
write("gzip-truncated-payload.idx.gz", gz(idx(U8, [10, 5, 5], bytes(200))))
write("gzip-trailing-garbage.idx.gz", good + b"this is not gzip")

# Image/label pairs (idx_pair), each read with its valid partner.
write("labels-out-of-range.idx", idx(U8, [4], bytes([0, 3, 12, 1])))
write("labels-count-mismatch.idx", idx(U8, [3], bytes([0, 1, 2])))
write("labels-2d.idx", idx(U8, [4, 1], bytes([0, 1, 2, 3])))
write("labels-i32.idx", idx(0x0C, [4], struct.pack(">4i", 0, 1, 2, 3)))
write("images-1d.idx", idx(U8, [4], bytes(4)))
write("images-f32-nan.idx", idx(0x0D, [4, 2], struct.pack(">8f", 0, 1, 2, float("nan"), 4, 5, 6, 7)))

# MNIST directories.
write("mnist-wrong-shape/train-images-idx3-ubyte.gz", gz(idx(U8, [2, 28, 28], bytes(2 * 784))))
write("mnist-wrong-shape/train-labels-idx1-ubyte", idx(U8, [2], bytes(2)))
write("mnist-missing-labels/train-images-idx3-ubyte", idx(U8, [60000, 28, 28]))

# CSV (target column "y").
write("csv-empty.csv", "")
write("csv-header-only.csv", "x1,x2,y\n")
write("csv-ragged.csv", "x1,x2,y\n1,2,3\n4,5\n")
write("csv-non-numeric.csv", "x1,x2,y\n1,2,3\n4,5,6\n7,abc,9\n")
write("csv-non-finite.csv", "x1,x2,y\n1,inf,3\n")
write("csv-missing-target.csv", "x1,x2,z\n1,2,3\n")
write("csv-quotes.csv", 'x1,x2,y\n"1",2,3\n')
write("csv-empty-cell.csv", "x1,x2,y\n1,,3\n")
write("csv-blank-line.csv", "x1,x2,y\n1,2,3\n\n4,5,6\n")
write("csv-duplicate-column.csv", "x,x,y\n1,2,3\n")
write("csv-not-utf8.csv", b"x1,x2,y\n1,2,3\n4,\xb5,6\n")
write("csv-only-targets.csv", "y\n1\n2\n")
write("csv-semicolons.csv", "x;y\n1;2\n")
