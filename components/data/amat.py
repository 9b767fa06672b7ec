"""Binarized MNIST (Larochelle & Murray 2011): the ``.amat`` files, read as a stream.

The three files ``binarized_mnist_{train,valid,test}.amat`` hold 50,000 /
10,000 / 10,000 images, one a line: 784 space-separated ``0``/``1`` digits,
a 28x28 image row-major. The MNIST images were binarized once and the bits
published (a fixed binarization: every user of the files sees the same
bits); there are no labels. Larochelle & Murray (2011) report NADE's test
log-likelihood on these files, so a density model measured on them compares
with the literature.

``read_amat(path, expected_rows)`` reads one file a line at a time into a
(N, 784) uint8 0/1 array and refuses, with a one-line DulError naming the
file and the line, a token other than 0 or 1, a line without 784 values,
and more or fewer rows than ``expected_rows``. ``load`` fetches the three
files (``components.data.fetch``: a local folder, a mirror URL, or the
canonical URL; checked against the sha256 pinned in ``PINS``) and returns
them as the image ingest's splits: the files' own train/valid/test,
pixels stored as 0/255, labels -1 (unknown).
"""

from __future__ import annotations

import os

import numpy as np

from components.data import fetch, sources
from components.errors import DulError

DATASET = "binarized-mnist"
SIDE = 28
N_VALUES = SIDE * SIDE
NO_LABEL = -1
BINARIZATION = "fixed (Larochelle & Murray 2011)"
# ingest's split -> the file that holds it, and its row count in the published files
FILES = {
    "train": "binarized_mnist_train.amat",
    "validation": "binarized_mnist_valid.amat",
    "test": "binarized_mnist_test.amat",
}
EXPECTED_ROWS = {"train": 50_000, "validation": 10_000, "test": 10_000}

# sha256 of the files as served at the canonical URL, as published by TensorFlow
# Datasets (tensorflow/datasets, tensorflow_datasets/url_checksums/binarized_mnist.txt,
# commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5), with their sizes 78,400,000 /
# 15,680,000 / 15,680,000 bytes (= rows x 1,568: 784 digits, 783 spaces, a newline).
# Not recomputed here: this machine is offline.
BASE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
PINS = {
    FILES["train"]: sources.FilePin(BASE_URL + FILES["train"],
                                    "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
    FILES["validation"]: sources.FilePin(BASE_URL + FILES["validation"],
                                         "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
    FILES["test"]: sources.FilePin(BASE_URL + FILES["test"],
                                   "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
}
# fetch.fetch_files looks a dataset's files up in sources.FILE_PINS
sources.FILE_PINS[DATASET] = PINS

_FIX = "the file is damaged or not binarized MNIST's; fetch it again"


def load(source, cache_dir=None, expected_rows: dict[str, int] | None = None):
    """The three splits as ``{split: (ids, labels, pixels)}`` (ids int64 (N,), labels -1,
    pixels uint8 0/255 (N, 28, 28)), the files' card entries, and the source for the card."""
    expected_rows = EXPECTED_ROWS if expected_rows is None else expected_rows
    fetched = fetch.fetch_files(DATASET, source, cache_dir)
    splits = {}
    for split, name in FILES.items():
        bits = read_amat(fetched.paths[name], expected_rows[split])  # (N, 784) 0/1
        count = len(bits)
        pixels = (bits * np.uint8(255)).reshape(count, SIDE, SIDE)
        splits[split] = (np.arange(count, dtype=np.int64), np.full(count, NO_LABEL, np.int64), pixels)
    return splits, fetched.files, fetched.source


def read_amat(path: str | os.PathLike, expected_rows: int, n_values: int = N_VALUES) -> np.ndarray:
    """One ``.amat`` file as uint8 (expected_rows, n_values) of 0/1, read a line at a time."""
    bits = np.empty((expected_rows, n_values), dtype=np.uint8)
    count = 0
    try:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                if count == expected_rows:
                    raise DulError(f"{path} line {number}: more rows than the {expected_rows} expected; {_FIX}")
                bits[count] = parse_line(line, path, number, n_values)
                count += 1
    except OSError as error:
        raise DulError(f"{path} could not be read ({error.strerror or error}); {_FIX}") from error
    if count != expected_rows:
        raise DulError(f"{path} line {count + 1}: the file ends after {count} rows, {expected_rows} expected; {_FIX}")
    return bits


def parse_line(line: bytes, path, number: int, n_values: int = N_VALUES) -> np.ndarray:
    """One line's values as uint8 (n_values,) of 0/1; a DulError naming ``path`` and line ``number`` otherwise."""
    tokens = line.split()
    if len(tokens) != n_values:
        raise DulError(f"{path} line {number}: {len(tokens)} values, expected {n_values}; {_FIX}")
    digits = np.frombuffer(b"".join(tokens), dtype=np.uint8) - np.uint8(ord("0"))  # wraps below '0'
    if len(digits) == n_values and digits.max(initial=0) <= 1:
        return digits
    position = next(i for i, token in enumerate(tokens) if token not in (b"0", b"1"))
    shown = tokens[position][:20].decode("utf-8", "replace")
    raise DulError(f"{path} line {number}: value {shown!r} at position {position + 1} is not 0 or 1; {_FIX}")
