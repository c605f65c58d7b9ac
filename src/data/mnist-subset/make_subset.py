#!/usr/bin/env python3
"""Cut the embedded MNIST subset out of the full MNIST IDX files.

Usage: python3 src/data/mnist-subset/make_subset.py SRC_DIR DST_DIR [TRAIN_COUNT TEST_COUNT]

Takes the first TRAIN_COUNT (default 30000) training and the first TEST_COUNT (default 5000)
test images and labels, rewrites the IDX headers with the subset counts and writes them gzip -9
compressed with mtime 0 and no file name, so the output is byte-for-byte reproducible.
"""
import gzip
import struct
import sys


def cut(src_dir, dst_dir, name, count):
    with gzip.open(f"{src_dir}/{name}.gz", "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndims = magic & 0xFF
    dims = list(struct.unpack(f">{ndims}I", data[4 : 4 + 4 * ndims]))
    if dims[0] < count:
        sys.exit(f"{name}: has only {dims[0]} items, {count} wanted")
    item = 1
    for d in dims[1:]:
        item *= d
    header = 4 + 4 * ndims
    body = data[header : header + count * item]
    dims[0] = count
    out = struct.pack(f">I{ndims}I", magic, *dims) + body
    with open(f"{dst_dir}/{name}.gz", "wb") as f:
        f.write(gzip.compress(out, compresslevel=9, mtime=0))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    train = int(sys.argv[3]) if len(sys.argv) > 3 else 30000
    test = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    for name, count in [
        ("train-images-idx3-ubyte", train),
        ("train-labels-idx1-ubyte", train),
        ("t10k-images-idx3-ubyte", test),
        ("t10k-labels-idx1-ubyte", test),
    ]:
        cut(src, dst, name, count)


if __name__ == "__main__":
    main()
