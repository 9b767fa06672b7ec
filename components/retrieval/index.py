"""The retrieval index: every item's packed binary code in one ``.npz`` file.

Members (N items, C bits, B = ceil(C / 8) bytes):

    packed      (N, B) uint8    codes, eight bits a byte (``np.packbits``)
    labels      (N,) int64      class label of each item
    splits      (N,) <U10       "train", "validation" or "test"
    item_ids    (N,) int64      the item's position within its split
    thresholds  (C,) float32    per-bit thresholds that made the bits
    meta        () <U           JSON object: format, n_bits, dataset, ...

Everything loads with ``allow_pickle=False``; a damaged or stale file is a
``DulError`` that names the file and says to rebuild it.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from components.errors import DulError
from components.io import atomic_path
from components.retrieval.codes import knn, pack_bits

FORMAT = "dul-index/1"
SPLITS = ("train", "validation", "test")
_MEMBERS = ("packed", "labels", "splits", "item_ids", "thresholds", "meta")
_FIX = "re-run `dvc repro index`"


@dataclass(frozen=True, eq=False)
class Index:
    """A loaded index. Arrays as in the module docstring; ``n_bits`` is C."""

    packed: np.ndarray
    n_bits: int
    labels: np.ndarray
    splits: np.ndarray
    item_ids: np.ndarray
    thresholds: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.packed)


def write_index(path, *, bits, labels, splits, item_ids, thresholds, meta: dict) -> None:
    """Pack ``bits`` (N, C) bool and write the index to ``path``, atomically.

    ``meta`` is stored as JSON with ``format`` and ``n_bits`` filled in.
    Inconsistent shapes or unknown split names are a ValueError (a bug in the
    caller, not the user's input).
    """
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2 or bits.shape[0] == 0 or bits.shape[1] == 0:
        raise ValueError(f"bits must be (N, C) with N, C >= 1, got shape {bits.shape}")
    n_items, n_bits = bits.shape
    columns = {
        "labels": np.asarray(labels, dtype=np.int64),
        "splits": np.asarray(splits, dtype="<U10"),
        "item_ids": np.asarray(item_ids, dtype=np.int64),
    }
    for name, column in columns.items():
        if column.shape != (n_items,):
            raise ValueError(f"{name} must be ({n_items},), got {column.shape}")
    if not np.isin(columns["splits"], SPLITS).all():
        raise ValueError(f"splits must be one of {SPLITS}, got {np.unique(columns['splits'])}")
    thresholds = np.asarray(thresholds, dtype=np.float32)
    if thresholds.shape != (n_bits,):
        raise ValueError(f"thresholds must be ({n_bits},), got {thresholds.shape}")
    if meta.get("n_bits", n_bits) != n_bits:
        raise ValueError(f"meta n_bits {meta['n_bits']} != bits width {n_bits}")
    meta_json = json.dumps({**meta, "format": FORMAT, "n_bits": n_bits}, sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f, packed=pack_bits(bits), thresholds=thresholds, meta=np.array(meta_json), **columns
        )


def load_index(path) -> Index:
    """Read and validate the index at ``path``; any problem is a DulError."""
    arrays = _read_members(path)
    meta = _parse_meta(path, arrays["meta"])
    index = Index(
        packed=arrays["packed"],
        n_bits=meta["n_bits"],
        labels=arrays["labels"],
        splits=arrays["splits"],
        item_ids=arrays["item_ids"],
        thresholds=arrays["thresholds"],
        meta=meta,
    )
    _validate(path, index)
    return index


def search(index: Index, item: int, k: int = 10) -> list[dict]:
    """The k items nearest to row ``item`` by Hamming distance, itself left out.

    Returns one dict per neighbour, nearest first (ties: lower row first):
    rank (1-based), item (row), split, item_id, label, distance. Fewer than k
    come back only when the index holds fewer than k other items.
    """
    n_items = len(index)
    if not _is_int(item) or not 0 <= item < n_items:
        raise DulError(f"item {item!r} is not in the index: choose a row from 0 to {n_items - 1}")
    if not _is_int(k) or k < 1:
        raise DulError(f"k = {k!r} is not valid: choose k >= 1 ({n_items - 1} other items exist)")
    k = min(int(k), n_items - 1)
    if k == 0:
        return []
    rows, distances = knn(index.packed[item : item + 1], index.packed, k, exclude=np.array([item]))
    return [
        {
            "rank": rank,
            "item": int(row),
            "split": str(index.splits[row]),
            "item_id": int(index.item_ids[row]),
            "label": int(index.labels[row]),
            "distance": int(distance),
        }
        for rank, (row, distance) in enumerate(zip(rows[0], distances[0]), start=1)
    ]


def format_results(index: Index, item: int, results: list[dict], seconds: float) -> str:
    """A plain-text table of ``search`` results: query line, one row each, summary."""
    label = int(index.labels[item])
    header = (
        f"query: item {item} ({index.splits[item]} #{index.item_ids[item]}), "
        f"label {_label_text(index, label)}, {index.n_bits} bits, {len(index)} items"
    )
    table = [("rank", "item", "split", "id", "label", "distance")]
    table += [
        (r["rank"], r["item"], r["split"], r["item_id"], _label_text(index, r["label"]),
         r["distance"])
        for r in results
    ]
    widths = [max(len(str(row[c])) for row in table) for c in range(len(table[0]))]
    lines = ["  ".join(_cell(value, width) for value, width in zip(row, widths)) for row in table]
    same = sum(r["label"] == label for r in results)
    footer = f"{same} of {len(results)} share the query's label; searched in {seconds * 1e3:.1f} ms"
    return "\n".join([header, *lines, footer])


def _is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _cell(value, width: int) -> str:
    """Numbers right-aligned, text left-aligned."""
    return str(value).rjust(width) if isinstance(value, int) else str(value).ljust(width)


def _label_text(index: Index, label: int) -> str:
    """``7 (seven)`` when meta names the labels, else ``7``."""
    names = index.meta.get("label_names")
    if isinstance(names, list) and 0 <= label < len(names):
        return f"{label} ({names[label]})"
    return str(label)


def _read_members(path) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path``, read eagerly, or a DulError."""
    if not os.path.exists(path):
        raise DulError(f"index file {path} does not exist: {_FIX}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array
            raise DulError(f"index file {path} is a bare array, not an index archive: {_FIX}")
        with archive:
            missing = [name for name in _MEMBERS if name not in archive.files]
            if missing:
                raise DulError(f"index file {path} lacks {', '.join(missing)}: {_FIX}")
            return {name: archive[name] for name in _MEMBERS}
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError, zlib.error) as error:
        raise DulError(f"index file {path} is damaged or not an index ({error}): {_FIX}") from error


def _parse_meta(path, meta: np.ndarray) -> dict:
    """The JSON object in the ``meta`` member, checked for format and n_bits."""
    try:
        parsed = json.loads(str(meta[()]))
    except (ValueError, IndexError) as error:
        raise DulError(f"index file {path} has unreadable meta ({error}): {_FIX}") from error
    if not isinstance(parsed, dict):
        raise DulError(f"index file {path} has meta that is not a JSON object: {_FIX}")
    if parsed.get("format") != FORMAT:
        raise DulError(
            f"index file {path} has format {parsed.get('format')!r}, "
            f"this dul reads {FORMAT!r}: {_FIX}"
        )
    n_bits = parsed.get("n_bits")
    if not _is_int(n_bits) or n_bits < 1:
        raise DulError(f"index file {path} has meta n_bits {n_bits!r}, not a positive int: {_FIX}")
    return parsed


def _validate(path, index: Index) -> None:
    """Check types and that every member agrees on N and C, or raise DulError."""
    problem = _problem(index)
    if problem:
        raise DulError(f"index file {path} is inconsistent: {problem}: {_FIX}")


def _problem(index: Index) -> str | None:
    """A description of the first inconsistency in ``index``, or None."""
    packed, n_bits = index.packed, index.n_bits
    if packed.dtype != np.uint8 or packed.ndim != 2 or len(packed) == 0:
        return f"packed is {packed.dtype} {packed.shape}, expected (N >= 1, B) uint8"
    n_bytes = math.ceil(n_bits / 8)
    if packed.shape[1] != n_bytes:
        return f"packed has {packed.shape[1]} bytes per item but n_bits {n_bits} needs {n_bytes}"
    if n_bits % 8 and np.any(packed[:, -1] & (0xFF >> (n_bits % 8))):
        return f"packed has bits set beyond n_bits {n_bits}"
    thresholds = index.thresholds
    if thresholds.shape != (n_bits,) or thresholds.dtype.kind != "f":
        return f"thresholds are {thresholds.dtype} {thresholds.shape}, expected ({n_bits},) float"
    for name, kind in (("labels", "i"), ("splits", "U"), ("item_ids", "i")):
        column = getattr(index, name)
        if column.shape != (len(packed),) or column.dtype.kind != kind:
            return f"{name} is {column.dtype} {column.shape}, expected ({len(packed)},) like packed"
    if not np.isin(index.splits, SPLITS).all():
        return f"splits hold names other than {', '.join(SPLITS)}"
    return None
