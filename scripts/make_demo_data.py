"""Rebuild data/fashion-mnist-small from the full Fashion-MNIST idx files.

    python scripts/make_demo_data.py /usr/share/datasets/fashion-mnist data/fashion-mnist-small

Takes the first 1,000 training and 200 test images of each class, in file order, and
writes them as gzipped idx files (deterministic bytes: gzip mtime 0).
"""

import gzip
import sys
from pathlib import Path

import numpy as np

from lsvr.data.sources import read_idx

PER_CLASS = {"train": 1000, "t10k": 200}


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def main(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        images = read_idx(src / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(src / f"{split}-labels-idx1-ubyte.gz")
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
        write_idx(dst / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(dst / f"{split}-labels-idx1-ubyte.gz", labels[keep])
        print(f"{split}: {len(keep)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
