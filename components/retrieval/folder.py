"""Index folders: a ``meta.json`` that lists every ``.npy`` file with its shape
and dtype, and the files themselves, memory-mapped (never unpickled).

Shared by the hash index (``hamming``) and the search index (``documents``):
a missing, truncated or foreign file is a DulError that names it and says
how to rebuild it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.errors import DulError

FIX = "rebuild it with `dvc repro index`"


def read_json(path: Path):
    """A JSON file of an index folder; missing or unreadable is a DulError naming it."""
    if not path.is_file():
        raise DulError(f"{path} is missing: the index is incomplete; {FIX}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DulError(f"{path} is unreadable or truncated ({error}): {FIX}") from error


def read_meta(folder: Path, fmt: str, what: str) -> dict:
    """``folder/meta.json``, checked: format ``fmt``, positive n_bits and n_items, a file list."""
    path = folder / "meta.json"
    if not folder.is_dir():
        raise DulError(f"{what} {folder} does not exist: build it with `dvc repro index`")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DulError(f"{path} has format {found!r}, this dul reads {fmt!r}: {FIX}")
    for key in ("n_bits", "n_items"):
        if not isinstance(meta.get(key), int) or meta[key] < 1:
            raise DulError(f"{path} has {key} {meta.get(key)!r}, not a positive int: {FIX}")
    if not isinstance(meta.get("files"), dict):
        raise DulError(f"{path} does not list the index's files: {FIX}")
    return meta


def open_arrays(folder: Path, meta: dict) -> dict[str, np.ndarray]:
    """Every array meta.json lists, by name without ``.npy``, memory-mapped and checked."""
    return {name[: -len(".npy")]: open_array(folder, name, spec) for name, spec in meta["files"].items()}


def open_array(folder: Path, name: str, spec: dict) -> np.ndarray:
    """Memory-map one array, checking the shape and dtype meta.json gives it."""
    path = folder / name
    if not path.is_file():
        raise DulError(f"{path} is missing: the index is incomplete; {FIX}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DulError(f"{path} is truncated or damaged ({error}): {FIX}") from error
    if list(array.shape) != spec.get("shape") or array.dtype.str != spec.get("dtype"):
        raise DulError(f"{path} is {array.dtype.str} {list(array.shape)} but meta.json says "
                       f"{spec.get('dtype')} {spec.get('shape')}: truncated or from another build; {FIX}")
    return np.asarray(array)  # still the mapping, read-only; a plain ndarray gathers without np.memmap's overhead
