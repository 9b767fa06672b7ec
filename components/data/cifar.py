"""CIFAR-10 and CIFAR-100, binary version, read straight from the tar.gz.

Krizhevsky (2009), "Learning multiple layers of features from tiny images";
https://www.cs.toronto.edu/~kriz/cifar.html. The *binary* archives are read
(never the Python ones: those are pickles, and unpickling runs code), in
memory through ``components.data.archive`` (nothing is extracted; links,
devices, ``..`` paths and archive bombs are refused)::

    cifar-10-binary.tar.gz    cifar-10-batches-bin/data_batch_1.bin .. _5.bin,
                              test_batch.bin, batches.meta.txt
        record = 1 label byte + 3072 pixel bytes             (3073 bytes)
    cifar-100-binary.tar.gz   cifar-100-binary/train.bin, test.bin,
                              coarse_label_names.txt, fine_label_names.txt
        record = coarse label byte, fine label byte + 3072    (3074 bytes)

The 3072 pixel bytes are the red plane, then green, then blue, each 32x32
row-major. ``load_cifar10`` / ``load_cifar100`` return::

    {"train": {"images", "labels"[, "coarse_labels"]}, "test": {...},
     "label_names": [...][, "coarse_label_names": [...]],
     "archive": {"name", "sha256", "verified"}}

- ``images``: uint8 (N, 32, 32, 3), channels last (HWC, as PIL and
  matplotlib show them); ``np.transpose(images, (0, 3, 1, 2))`` gives NCHW.
- ``labels``: int64 (N,), an index into ``label_names`` (CIFAR-100: the
  *fine* label, 100 classes; ``coarse_labels`` indexes the 20 superclasses).

Checks (each a DulError naming the archive and member): a member size that
is not a whole number of records (a truncated archive), a label byte out of
range of the names file, a missing member, a names file that is not ASCII,
and split sizes other than ``expected`` (50,000 / 10,000; pass
``expected=None`` to read any size, as the tests do).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from components.data import archive, sources
from components.errors import DulError

SIDE, CHANNELS = 32, 3
PIXELS = SIDE * SIDE * CHANNELS  # 3072
EXPECTED = {"train": 50_000, "test": 10_000}
# CIFAR-100's train.bin is 50,000 x 3074 = 153.7 MB: over archive's 64 MiB default
MAX_MEMBER_BYTES = 200 << 20
# sha256 of the archives as served at https://www.cs.toronto.edu/~kriz/ (provenance: sources.FILE_PINS)
SHA256_CIFAR10 = sources.FILE_PINS["cifar10"]["cifar-10-binary.tar.gz"].sha256
SHA256_CIFAR100 = sources.FILE_PINS["cifar100"]["cifar-100-binary.tar.gz"].sha256

_CIFAR10_DIR = "cifar-10-batches-bin"
_CIFAR10_SPLITS = {
    "train": [f"{_CIFAR10_DIR}/data_batch_{i}.bin" for i in range(1, 6)],
    "test": [f"{_CIFAR10_DIR}/test_batch.bin"],
}
_CIFAR100_DIR = "cifar-100-binary"
_CIFAR100_SPLITS = {"train": [f"{_CIFAR100_DIR}/train.bin"], "test": [f"{_CIFAR100_DIR}/test.bin"]}


def load_cifar10(
    archive_path: str | os.PathLike,
    *,
    expected_sha256: str | None = SHA256_CIFAR10,
    expected: dict[str, int] | None = EXPECTED,
) -> dict:
    """Read ``cifar-10-binary.tar.gz`` (see the module docstring for the result)."""
    names = {"label_names": f"{_CIFAR10_DIR}/batches.meta.txt"}
    members, card = _read(archive_path, expected_sha256, _CIFAR10_SPLITS, names)
    label_names = _names(members, names["label_names"], archive_path)
    result: dict = {"label_names": label_names, "archive": card}
    for split, split_members in _CIFAR10_SPLITS.items():
        labels, images = _records(members, split_members, 1, archive_path, [len(label_names)])
        result[split] = {"images": images, "labels": labels[:, 0]}
        _check_count(split, len(images), expected, archive_path)
    return result


def load_cifar100(
    archive_path: str | os.PathLike,
    *,
    expected_sha256: str | None = SHA256_CIFAR100,
    expected: dict[str, int] | None = EXPECTED,
) -> dict:
    """Read ``cifar-100-binary.tar.gz``: fine labels in ``labels``, superclasses in ``coarse_labels``."""
    names = {
        "coarse_label_names": f"{_CIFAR100_DIR}/coarse_label_names.txt",
        "label_names": f"{_CIFAR100_DIR}/fine_label_names.txt",
    }
    members, card = _read(archive_path, expected_sha256, _CIFAR100_SPLITS, names)
    result: dict = {key: _names(members, member, archive_path) for key, member in names.items()}
    result["archive"] = card
    limits = [len(result["coarse_label_names"]), len(result["label_names"])]
    for split, split_members in _CIFAR100_SPLITS.items():
        labels, images = _records(members, split_members, 2, archive_path, limits)
        result[split] = {"images": images, "labels": labels[:, 1], "coarse_labels": labels[:, 0]}
        _check_count(split, len(images), expected, archive_path)
    return result


def _read(archive_path, expected_sha256, splits: dict[str, list[str]], names: dict[str, str]):
    """The wanted members' bytes by name (others, e.g. readme.html, are skipped) and the archive card."""
    sha256 = archive.verify_sha256(archive_path, expected_sha256)
    wanted = {member for members in splits.values() for member in members} | set(names.values())
    members = {
        name: data
        for name, data in archive.iter_members(archive_path, max_member_bytes=MAX_MEMBER_BYTES)
        if name in wanted
    }
    missing = sorted(wanted - set(members))
    if missing:
        raise DulError(f"{archive_path}: member {missing[0]} is missing; is this the CIFAR binary archive?")
    card = {"name": Path(archive_path).name, "sha256": sha256, "verified": expected_sha256 is not None}
    return members, card


def _names(members: dict[str, bytes], member: str, archive_path) -> list[str]:
    """The non-empty, stripped lines of a label names file (ASCII)."""
    try:
        text = members[member].decode("ascii")
    except UnicodeDecodeError as error:
        raise DulError(
            f"{archive_path}/{member} is not ASCII text (byte {error.start}); fetch the archive again"
        ) from error
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DulError(f"{archive_path}/{member} holds no label names; fetch the archive again")
    return names


def _records(members, split_members: list[str], n_label_bytes: int, archive_path, limits: list[int]):
    """Labels int64 (N, n_label_bytes) and images uint8 (N, 32, 32, 3) of the split's members, in order."""
    record = n_label_bytes + PIXELS
    parts = []
    for member in split_members:
        data = members[member]
        if len(data) % record:
            raise DulError(
                f"{archive_path}/{member}: {len(data)} bytes is not a whole number of {record}-byte records;"
                " the archive is truncated, fetch it again"
            )
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
        _check_labels(rows[:, :n_label_bytes], limits, f"{archive_path}/{member}")
        parts.append(rows)
    rows = np.concatenate(parts)
    labels = rows[:, :n_label_bytes].astype(np.int64)
    images = rows[:, n_label_bytes:].reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)
    return labels, np.ascontiguousarray(images)


def _check_labels(labels: np.ndarray, limits: list[int], where: str) -> None:
    for column, limit in enumerate(limits):
        bad = np.flatnonzero(labels[:, column] >= limit)
        if bad.size:
            raise DulError(
                f"{where}: record {bad[0]} has label byte {labels[bad[0], column]}, outside [0, {limit});"
                " the archive is damaged, fetch it again"
            )


def _check_count(split: str, count: int, expected: dict[str, int] | None, archive_path) -> None:
    if expected is not None and count != expected[split]:
        raise DulError(
            f"{archive_path}: {count} {split} images, expected {expected[split]};"
            " the archive is incomplete or not CIFAR, fetch it again"
        )
