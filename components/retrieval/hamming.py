"""The semantic-hashing search engine: exact Hamming search over packed codes.

Codes are (N, W) uint64 words (``codes.pack_words``: code bit c is bit
63 - c % 64 of word c // 64, zero-padded), and the Hamming distance is

    d(h, g) = sum_w popcount(h_w XOR g_w).

Three ways to search them, all returning the brute-force answer:

- ``knn_search``: the blocked exact scan, O(N) per query;
- the semantic address space (``address.py``, codes of n <= 32 bits): all
  items within radius r, visiting sum_{i<=r} C(n, i) addresses per query;
- multi-index hashing (``mih.py``, 33 to 255 bits): exact k-NN that visits a
  few substring addresses and verifies what it finds.

On disk the index is a folder of ``.npy`` arrays, memory-mapped on load
(never pickled), and ``meta.json`` naming every array with its shape and type:

    words.npy                      (N, W) uint64  the codes
    address.{keys,offsets,docs,slots,filter}.npy  the table when n <= 32
    mih{i}.{keys,offsets,docs}.npy                substring i's table when n > 32

(``keys``, ``slots`` and ``filter`` are absent for a dense table). The folder
appears whole or not at all.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.errors import DulError
from components.io import atomic_path
from components.retrieval.address import (
    MAX_KEY_BITS,
    AddressTable,
    address_keys,
    ball_lookup,
    build_address_table,
    id_dtype,
)
from components.retrieval.codes import pack_words, words_from_packed
from components.retrieval.folder import open_arrays, read_meta
from components.retrieval.mih import MAX_BITS, MultiIndex, build_multi_index, mih_knn

HASH_FORMAT = "dul-hash-index/1"
_FIX = "rebuild it with `dvc repro index`"
_KEY_BITS = 40  # document ids in the scan's sort keys: dist << 40 | id


def knn_search(db_words, query_words, k: int, *, block: int = 1 << 20):
    """Exact k-NN by scanning: (N, W), (Q, W) uint64 -> indices (Q, k') int64, distances (Q, k') int32.

    k' = min(k, N). Nearest first, ties by lower index: the first k' columns
    of a stable argsort of the (Q, N) distances. The database goes ``block``
    rows at a time (transposed so each word is contiguous), so memory is
    O(block * W + Q * k) whatever N is.
    """
    db_words, query_words = np.asarray(db_words), np.asarray(query_words)
    n_items = len(db_words)
    k = min(int(k), n_items)
    if k < 1 or db_words.ndim != 2 or query_words.shape[1:] != db_words.shape[1:]:
        raise ValueError(f"need k >= 1 and words (N, W), (Q, W): {db_words.shape}, {query_words.shape}")
    best = np.full((len(query_words), k), np.iinfo(np.uint64).max, np.uint64)  # sort keys
    for start in range(0, n_items, block):
        columns = np.ascontiguousarray(db_words[start : start + block].T)  # (W, Nb)
        for i, words in enumerate(query_words):
            best[i] = _merge(best[i], _row_distances(words, columns), start)
    indices = (best & np.uint64(2**_KEY_BITS - 1)).astype(np.int64)
    return indices, (best >> np.uint64(_KEY_BITS)).astype(np.int32)


def _row_distances(words: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """One query's distances to a block: (W,), (W, Nb) -> (Nb,) uint16."""
    row = np.bitwise_count(words[0] ^ columns[0]).astype(np.uint16)
    for w in range(1, len(words)):
        row += np.bitwise_count(words[w] ^ columns[w])
    return row


def _merge(best: np.ndarray, row: np.ndarray, offset: int) -> np.ndarray:
    """The k smallest sort keys among ``best`` (k,) and block distances ``row`` (Nb,).

    The k-th smallest distance in the block is read off a histogram, so only
    items at or below it (and below the current k-th best) are keyed.
    """
    k = len(best)
    cut = np.searchsorted(np.cumsum(np.bincount(row)), min(k, len(row)) - 1, side="right")
    cut = min(int(cut), int(best[-1] >> np.uint64(_KEY_BITS)))
    candidates = np.flatnonzero(row <= cut)
    keys = (row[candidates].astype(np.uint64) << np.uint64(_KEY_BITS)) | (
        candidates.astype(np.uint64) + np.uint64(offset)
    )
    merged = np.concatenate([best, keys])
    return np.sort(merged)[:k] if len(merged) <= 4 * k else np.sort(np.partition(merged, k - 1)[:k])


@dataclass(frozen=True, eq=False)
class HashIndex:
    """A loaded (or built) hash index: codes plus whichever tables were built."""

    n_bits: int
    words: np.ndarray  # (N, W) uint64
    address: AddressTable | None = None
    mih: MultiIndex | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


def build_hash_index(words, n_bits: int, *, address=None, substrings=None) -> HashIndex:
    """Build the tables for (N, W) uint64 codes of n_bits bits, in memory.

    ``address`` (default n <= 32) builds the semantic address space;
    ``substrings`` m (default Norouzi's n / log2 N when n > 32, 0 for none)
    builds the multi-index. Zero items is a DulError.
    """
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if len(words) == 0:
        raise DulError("cannot build a hash index over 0 items: encode at least one document first")
    if words.ndim != 2 or words.shape[1] != math.ceil(n_bits / 64) or not 1 <= n_bits <= MAX_BITS:
        raise ValueError(f"words {words.shape} do not hold {n_bits}-bit codes (1..{MAX_BITS})")
    start = time.perf_counter()
    address = n_bits <= MAX_KEY_BITS if address is None else address
    table = build_address_table(address_keys(words, n_bits), n_bits) if address else None
    mih = None
    if substrings or (substrings is None and n_bits > MAX_KEY_BITS):
        mih = build_multi_index(words, n_bits, substrings)
    seconds = time.perf_counter() - start
    return HashIndex(n_bits, words, table, mih, {"build_seconds": seconds})


def write_hash_index(folder, codes_bits, *, address=None, substrings=None, meta=None) -> dict:
    """Build the index of (N, C) bool codes and write it to ``folder``; returns ``index_stats``."""
    bits = np.asarray(codes_bits, dtype=bool)
    if bits.ndim != 2 or bits.shape[1] == 0:
        raise ValueError(f"codes must be (N, C) bool with C >= 1, got shape {bits.shape}")
    if len(bits) == 0:
        raise DulError("cannot build a hash index over 0 items: encode at least one document first")
    index = build_hash_index(pack_words(bits), bits.shape[1], address=address, substrings=substrings)
    save_hash_index(folder, index, meta=meta)
    return index_stats(folder) | {"build_seconds": index.meta["build_seconds"]}


def save_hash_index(folder, index: HashIndex, *, meta=None) -> None:
    """Write ``index`` as a folder of ``.npy`` arrays plus ``meta.json``, atomically."""
    arrays = {"words": index.words.astype("<u8", copy=False)}
    tables = {}
    if index.address is not None:
        arrays.update(_table_arrays("address", index.address))
        tables["address"] = {"n_bits": index.address.n_bits}
    if index.mih is not None:
        for i, table in enumerate(index.mih.tables):
            arrays.update(_table_arrays(f"mih{i}", table))
        tables["mih"] = {"starts": list(index.mih.starts), "widths": list(index.mih.widths)}
    files = {f"{name}.npy": {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()}
    # no timings on disk: the same codes must give byte-identical files (dvc repro anywhere)
    kept = {key: value for key, value in index.meta.items() if key != "build_seconds"}
    record = {**kept, **(meta or {}), "format": HASH_FORMAT, "n_bits": index.n_bits,
              "n_items": len(index), "tables": tables, "files": files}
    with atomic_path(folder, is_dir=True) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _table_arrays(prefix: str, table: AddressTable) -> dict[str, np.ndarray]:
    arrays = {f"{prefix}.offsets": table.offsets, f"{prefix}.docs": table.docs}
    if not table.dense:
        arrays[f"{prefix}.keys"] = table.keys
    if table.slots is not None:
        arrays[f"{prefix}.slots"] = table.slots
    if table.filter is not None:
        arrays[f"{prefix}.filter"] = table.filter
    return arrays


def load_hash_index(folder) -> HashIndex:
    """Memory-map the index in ``folder``, checking every array against meta.json (DulError)."""
    folder = Path(folder)
    meta = read_meta(folder, HASH_FORMAT, "hash index")
    arrays = open_arrays(folder, meta)
    words = arrays.get("words")
    if words is None or words.shape != (meta["n_items"], math.ceil(meta["n_bits"] / 64)):
        raise DulError(f"{folder}/words.npy is missing or the wrong shape for meta.json: {_FIX}")
    tables = meta.get("tables", {})
    address = mih = None
    if "address" in tables:
        address = _table(folder, arrays, "address", meta["n_bits"], len(words))
    if "mih" in tables:
        starts, widths = tuple(tables["mih"]["starts"]), tuple(tables["mih"]["widths"])
        parts = tuple(_table(folder, arrays, f"mih{i}", w, len(words)) for i, w in enumerate(widths))
        mih = MultiIndex(meta["n_bits"], starts, widths, parts)
    return HashIndex(meta["n_bits"], words, address, mih, meta)


def _table(folder: Path, arrays: dict, prefix: str, n_bits: int, n_items: int) -> AddressTable:
    """Assemble one address table, checking its arrays agree with each other and with N."""
    keys, offsets, docs = (arrays.get(f"{prefix}.{part}") for part in ("keys", "offsets", "docs"))
    n_keys = 2**n_bits if keys is None else len(keys)
    dtype = id_dtype(n_items)
    if offsets is None or docs is None or offsets.shape != (n_keys + 1,) or docs.shape != (n_items,) \
            or offsets.dtype != dtype or docs.dtype != dtype or int(offsets[-1]) != n_items:
        raise DulError(f"{folder}/{prefix}.*.npy do not form a table over {n_items} items: {_FIX}")
    slots = arrays.get(f"{prefix}.slots")  # absent in indexes written before it: binary search instead
    if slots is not None and (slots.dtype != np.uint64 or len(slots) < 2 * n_keys or len(slots) & (len(slots) - 1)):
        raise DulError(f"{folder}/{prefix}.slots.npy is not a hash of the {n_keys} keys: {_FIX}")
    bitmap = arrays.get(f"{prefix}.filter")
    if bitmap is not None and (slots is None or bitmap.dtype != np.uint8 or len(bitmap) < 8
                               or len(bitmap) & (len(bitmap) - 1)):
        raise DulError(f"{folder}/{prefix}.filter.npy is not a filter of the {n_keys} keys: {_FIX}")
    return AddressTable(n_bits, keys, offsets, docs, slots, bitmap)


def index_stats(folder) -> dict:
    """Items, bits, bytes on disk and bytes per item of the index in ``folder``
    (``write_hash_index`` adds the build seconds, which are not stored)."""
    folder = Path(folder)
    meta = read_meta(folder, HASH_FORMAT, "hash index")
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return {"n_items": meta["n_items"], "n_bits": meta["n_bits"], "bytes": size,
            "bytes_per_item": size / meta["n_items"],
            "tables": sorted(meta.get("tables", {}))}


def query_words(index: HashIndex, queries) -> np.ndarray:
    """Queries as (Q, C) bool bits or (Q, W) uint64 words -> words, checked against the index."""
    queries = np.asarray(queries)
    n_words = index.words.shape[1]
    if queries.ndim == 2 and queries.dtype == bool:
        if queries.shape[1] != index.n_bits:
            raise DulError(_mismatch(index, f"{queries.shape[1]}-bit"))
        return pack_words(queries)
    if queries.ndim == 2 and queries.dtype == np.uint8 and queries.shape[1] == -(-index.n_bits // 8):
        queries = words_from_packed(queries)
    if queries.ndim != 2 or queries.dtype != np.uint64 or queries.shape[1] != n_words:
        raise DulError(_mismatch(index, f"{queries.dtype} {queries.shape}"))
    spare = 64 * n_words - index.n_bits
    if spare and np.any(queries[:, -1] & np.uint64((1 << spare) - 1)):
        raise DulError(_mismatch(index, f"longer than {index.n_bits}-bit"))
    return queries


def _mismatch(index: HashIndex, found: str) -> str:
    return (f"query codes are {found} but the index holds {index.n_bits}-bit codes: "
            f"encode the queries with the model that built the index, or rebuild the index")


def hash_knn(index: HashIndex, queries, k: int):
    """Exact k-NN of each query (bits or words): indices (Q, min(k, N)), distances; MIH if built."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise DulError(f"k = {k!r} is not valid: choose k >= 1")
    words = query_words(index, queries)
    k = min(int(k), len(index))
    if index.mih is None:
        return knn_search(index.words, words, k)
    return mih_knn(index.words, index.mih, words, k, fallback=lambda q, kk: knn_search(index.words, q, kk))


def hash_ball(index: HashIndex, queries, radius: int):
    """Everything within ``radius`` of each query: CSR offsets, documents, distances (``ball_lookup``)."""
    if index.address is None:
        raise DulError(f"this index has no address table ({index.n_bits}-bit codes; it is built "
                       f"for codes of up to {MAX_KEY_BITS} bits): use k-NN search instead")
    if not isinstance(radius, (int, np.integer)) or not 0 <= radius <= index.n_bits:
        raise DulError(f"radius {radius!r} is not valid: choose 0 to {index.n_bits}")
    return ball_lookup(index.address, address_keys(query_words(index, queries), index.n_bits), radius)
