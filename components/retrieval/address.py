"""The semantic address space: documents stored at the address of their code.

Salakhutdinov & Hinton (2009), "Semantic hashing", section 4: with codes of
up to about 32 bits, the code itself is a memory address, and the documents
similar to a query are found by visiting the addresses within a small Hamming
ball around the query's code, without looking at any other document:

    ball(q, r) = {q XOR m : popcount(m) <= r},   |ball| = sum_{i<=r} C(n, i).

An ``AddressTable`` is a compressed-sparse-row map from an n-bit key
(n <= 32, code bit 0 most significant) to the documents holding that key:

    keys     (U,)     uint32  the U distinct keys, ascending (sparse layout)
    offsets  (U + 1,) uint32  documents with key keys[u] are docs[offsets[u]:offsets[u+1]]
    docs     (N,)     uint32  document ids, grouped by key, ascending within a key

When 2^n <= N the table is dense: ``keys`` is None and ``offsets`` has
2^n + 1 entries, indexed by the key itself. A sparse table also has

    slots    (S,)     uint64  an open-addressing hash of the keys: S a power of two >= 2 U,
                              slot (h(key) + i) mod S holds key << 32 | u (keys[u] == key) or EMPTY
    filter   (F / 8,) uint8   F >= 16 U bits, bit h_F(key) set for every key: most probes of
                              a Hamming ball miss, and most misses stop at this one read

so a lookup costs about one array read per probe (a binary search without
the slots, in tables written before they existed), plus one read per hit,
whatever N is. Document ids and offsets are uint64 when N >= 2^32.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_KEY_BITS = 32


@dataclass(frozen=True, eq=False)
class AddressTable:
    """A key -> documents map; arrays as in the module docstring."""

    n_bits: int
    keys: np.ndarray | None
    offsets: np.ndarray
    docs: np.ndarray
    slots: np.ndarray | None = None
    filter: np.ndarray | None = None

    @property
    def dense(self) -> bool:
        return self.keys is None

    def __len__(self) -> int:
        return len(self.docs)


def id_dtype(n_items: int) -> np.dtype:
    """The smallest unsigned type that holds document ids and offsets up to N."""
    return np.dtype(np.uint32 if n_items < 2**32 else np.uint64)


def table_problem(table: AddressTable, n_items: int) -> tuple[str, str] | None:
    """The first way a loaded ``table`` over ``n_items`` codes would send a lookup
    out of its arrays or to wrong documents: (the array, what is wrong), or None.

    Offsets rise from 0 to N, every document id is below N, keys (sparse) are
    ascending n-bit keys, every slot holds one key at its position in ``keys``
    (and U slots are used, so a probe for an absent key ends at an empty one),
    and the filter lets every key through. Reads each array once: O(size)."""
    offsets, docs = table.offsets, table.docs
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(docs) or np.any(offsets[1:] < offsets[:-1]):
        return "offsets", f"offsets do not rise from 0 to the {len(docs)} documents"
    if len(docs) and int(docs.max()) >= n_items:
        return "docs", f"document id {int(docs.max())} is beyond the {n_items} codes"
    if table.dense:
        return None
    keys = table.keys
    if len(keys) and (int(keys[-1]) >> table.n_bits or np.any(keys[1:] <= keys[:-1])):
        return "keys", f"keys are not ascending distinct {table.n_bits}-bit keys"
    return _slots_problem(table)


def _slots_problem(table: AddressTable) -> tuple[str, str] | None:
    """``table_problem`` for the hash slots and the filter of a sparse table."""
    keys, slots = table.keys, table.slots
    if slots is not None:
        held = slots[slots != EMPTY]
        positions = (held & _LOW).astype(np.int64)
        if len(held) != len(keys) or (len(held) and int(positions.max()) >= len(keys)):
            return "slots", f"slots do not hold the {len(keys)} keys' positions"
        if np.any((held >> np.uint64(32)) != keys[positions].astype(np.uint64)):
            return "slots", "slots hold keys at positions of other keys"
    if table.filter is not None and not _may_hold(table.filter, keys).all():
        return "filter", "filter rules out keys the table holds"
    return None


def build_address_table(keys: np.ndarray, n_bits: int, dense: bool | None = None,
                        hashed: bool = True) -> AddressTable:
    """Group documents by key: (N,) integer keys < 2^n_bits -> AddressTable.

    ``dense`` defaults to 2^n_bits <= N, where the dense offsets cost no more
    than the sparse keys would. Documents keep ascending order within a key
    (a stable argsort), so lookups list them in id order. ``hashed``: a
    sparse table gets its hash ``slots`` (16-32 bytes per distinct key, worth
    it for the Hamming ball's hundreds of probes a query; multi-index
    hashing's few probes do without).
    """
    keys = np.asarray(keys)
    if keys.ndim != 1 or len(keys) == 0:
        raise ValueError(f"keys must be (N,) with N >= 1, got shape {keys.shape}")
    if not 1 <= n_bits <= MAX_KEY_BITS:
        raise ValueError(f"address keys take 1 to {MAX_KEY_BITS} bits, got {n_bits}")
    keys = keys.astype(np.uint32, copy=False)
    dtype = id_dtype(len(keys))
    dense = 2**n_bits <= len(keys) if dense is None else dense
    docs = np.argsort(keys, kind="stable").astype(dtype)
    if dense:
        counts = np.bincount(keys, minlength=2**n_bits)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(dtype)
        return AddressTable(n_bits, None, offsets, docs)
    ordered = keys[docs]
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    offsets = np.concatenate([[0], starts, [len(keys)]]).astype(dtype)
    distinct = ordered[offsets[:-1]]
    if not hashed:
        return AddressTable(n_bits, distinct, offsets, docs)
    return AddressTable(n_bits, distinct, offsets, docs, hash_slots(distinct), hash_filter(distinct))


EMPTY = np.uint64(2**64 - 1)  # an empty slot (no key's slot: positions stay below 2^32 - 1)
_GOLDEN = np.uint32(0x9E3779B1)  # Fibonacci hashing: the top bits of key * 2^32 / phi
_LOW = np.uint64(0xFFFFFFFF)


def _home(keys: np.ndarray, slot_bits: int) -> np.ndarray:
    """Each key's first slot: the top ``slot_bits`` bits of key * golden (mod 2^32), int64."""
    return ((keys.astype(np.uint32, copy=False) * _GOLDEN) >> np.uint32(32 - slot_bits)).astype(np.int64)


def hash_slots(keys: np.ndarray) -> np.ndarray:
    """Open-addressing (linear probing) slots for U < 2^32 - 1 distinct uint32 ``keys``:
    (S,) uint64, S the power of two >= 2 U (at least 16), each slot EMPTY or
    key << 32 | u, u the key's position (the key is in the slot, so a probe
    reads one word, not the slot and then the key).

    Built in rounds, vectorised: in round i every key not yet placed tries
    slot home + i, and of the keys trying one empty slot the lowest position
    takes it; the result depends only on ``keys``, so the same codes give
    byte-identical files."""
    slot_bits = max(int(2 * len(keys) - 1).bit_length(), 4)
    mask = (1 << slot_bits) - 1
    slots = np.full(1 << slot_bits, EMPTY, np.uint64)
    home = _home(keys, slot_bits)
    waiting, step = np.arange(len(keys), dtype=np.int64), 0
    while len(waiting):
        tried = (home[waiting] + step) & mask
        free = np.flatnonzero(slots[tried] == EMPTY)
        taken, first = np.unique(tried[free], return_index=True)  # waiting is ascending: lowest position first
        placed = waiting[free[first]]
        slots[taken] = (keys[placed].astype(np.uint64) << np.uint64(32)) | placed.astype(np.uint64)
        keep = np.ones(len(waiting), bool)
        keep[free[first]] = False
        waiting, step = waiting[keep], step + 1
    return slots


def hash_filter(keys: np.ndarray) -> np.ndarray:
    """A one-hash Bloom filter of the keys: (F / 8,) uint8, F the power of two >= 16 U
    bits (at least 64, at most 2^32), bit ``_home(key, log2 F)`` set for each key,
    little-endian within a byte (so at most 1/16 of the bits are set: that is
    the share of absent keys it lets through)."""
    filter_bits = min(max(int(16 * len(keys) - 1).bit_length(), 6), 32)  # _home gives at most 32 bits
    at = np.unique(_home(keys, filter_bits))  # the set bits, ascending; memory grows with U, not F
    byte = at >> 3
    first = np.flatnonzero(np.concatenate([[True], byte[1:] != byte[:-1]]))
    bitmap = np.zeros(1 << (filter_bits - 3), np.uint8)
    bitmap[byte[first]] = np.bitwise_or.reduceat((1 << (at & 7)).astype(np.uint8), first)
    return bitmap


def _may_hold(bitmap: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Which probes the filter lets through: (P,) bool (every present key does)."""
    at = _home(probes, (8 * len(bitmap)).bit_length() - 1)
    return ((bitmap[at >> 3] >> (at & 7).astype(np.uint8)) & 1).astype(bool)


def _hash_find(slots: np.ndarray, probes: np.ndarray, bitmap: np.ndarray | None = None) -> np.ndarray:
    """Position of each (P,) uint32 probe's key through ``slots``, or -1: (P,) int64;
    probes the ``bitmap`` filter (``hash_filter``) rules out are not looked up."""
    if bitmap is not None:
        found = np.full(len(probes), -1, np.int64)
        maybe = np.flatnonzero(_may_hold(bitmap, probes))
        found[maybe] = _hash_find(slots, probes[maybe])
        return found
    slot_bits = len(slots).bit_length() - 1
    mask = len(slots) - 1
    found = np.full(len(probes), -1, np.int64)
    active, slot, wanted = np.arange(len(probes)), _home(probes, slot_bits), probes.astype(np.uint64)
    while len(active):
        held = slots[slot]
        empty = held == EMPTY
        match = ((held >> np.uint64(32)) == wanted) & ~empty
        found[active[match]] = (held[match] & _LOW).astype(np.int64)
        more = ~(match | empty)
        active, slot, wanted = active[more], (slot[more] + 1) & mask, wanted[more]
    return found


@lru_cache(maxsize=256)
def sphere_masks(n_bits: int, radius: int) -> np.ndarray:
    """All n-bit masks with exactly ``radius`` bits set: (C(n, r),) uint32, read-only."""
    if radius == 0 or radius > n_bits:
        masks = np.zeros(int(radius == 0), np.uint32)
    else:
        combos = np.array(list(itertools.combinations(range(n_bits), radius)), np.uint32)
        masks = np.bitwise_or.reduce(np.uint32(1) << combos, axis=1).astype(np.uint32)
    masks.flags.writeable = False
    return masks


def ball_masks(n_bits: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the Hamming ball, nearest first: (P,) uint32 masks and (P,) uint8 distances."""
    spheres = [sphere_masks(n_bits, r) for r in range(radius + 1)]
    distances = np.repeat(np.arange(radius + 1, dtype=np.uint8), [len(s) for s in spheres])
    return np.concatenate(spheres), distances


def lookup_ranges(table: AddressTable, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each probe's documents lie in ``table.docs``: starts, ends, int64 like ``probes``.

    An absent key gives an empty range (start == end).
    """
    probes = np.asarray(probes, dtype=np.uint32)
    if table.dense:
        at = probes.astype(np.int64)
        return table.offsets[at].astype(np.int64), table.offsets[at + 1].astype(np.int64)
    if len(table.keys) == 0:
        empty = np.zeros(probes.shape, np.int64)
        return empty, empty
    if table.slots is not None:
        position = _hash_find(table.slots, probes.ravel(), table.filter).reshape(probes.shape)
        found, at = position >= 0, np.maximum(position, 0)
    else:
        at = np.minimum(_search_sorted(table.keys, probes), len(table.keys) - 1)
        found = table.keys[at] == probes
    starts = np.where(found, table.offsets[at], 0).astype(np.int64)
    ends = np.where(found, table.offsets[at + 1], 0).astype(np.int64)
    return starts, ends


def _search_sorted(keys: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, probes)``, several times faster for many scattered probes.

    The probes are sorted first (with their positions in the low 32 bits of
    one uint64 key), so the binary searches sweep the keys in order and stay
    in cache instead of each missing it ~log2(U) times.
    """
    flat = probes.ravel()
    if len(flat) < 4096:
        return np.searchsorted(keys, probes).astype(np.int64)
    order = np.sort((flat.astype(np.uint64) << np.uint64(32)) | np.arange(len(flat), dtype=np.uint64))
    at = np.empty(len(flat), np.int64)
    at[(order & np.uint64(0xFFFFFFFF)).astype(np.int64)] = np.searchsorted(
        keys, (order >> np.uint64(32)).astype(np.uint32)
    )
    return at.reshape(probes.shape)


def expand_ranges(table: AddressTable, starts: np.ndarray, ends: np.ndarray):
    """The documents of each range: flat (P,) ranges -> (H,) probe index, (H,) doc ids int64."""
    counts = (ends - starts).ravel()
    probe = np.repeat(np.arange(len(counts)), counts)  # (H,)
    first = np.cumsum(counts) - counts  # where each probe's hits begin in the output
    positions = np.arange(len(probe)) + (starts.ravel() - first)[probe]
    return probe, table.docs[positions].astype(np.int64)


def ball_lookup(table: AddressTable, query_keys: np.ndarray, radius: int, block: int = 4096,
                threads: int | None = None):
    """Documents within Hamming distance <= ``radius`` of each query key.

    ``query_keys`` (Q,) n-bit keys (see ``address_keys``). Returns CSR arrays
    ``offsets`` (Q + 1,) int64, ``documents`` (H,) int64 and ``distances``
    (H,) uint8: query q's hits are ``documents[offsets[q]:offsets[q+1]]``,
    nearest first, then in ascending id within each probed address (so
    exactly once each). Probes sum_{i<=r} C(n, i) addresses per query; the
    cost grows with r and the number of hits, not with N. Batches of at
    least 256 queries are split over ``threads`` threads (default: the CPUs
    this process may use, at most 8; NumPy's gathers release the GIL), in
    blocks of at most ``block`` queries; the answer does not depend on either.
    """
    query_keys = np.asarray(query_keys)
    if query_keys.ndim != 1:
        raise ValueError(f"query keys must be (Q,), got shape {query_keys.shape}")
    if not 0 <= radius <= table.n_bits:
        raise ValueError(f"radius must lie in 0..{table.n_bits}, got {radius}")
    masks, mask_distances = ball_masks(table.n_bits, radius)

    def lookup(queries: np.ndarray):
        starts, ends = lookup_ranges(table, queries.astype(np.uint32)[:, None] ^ masks)  # (Qb, P)
        probe, docs = expand_ranges(table, starts, ends)
        return (ends - starts).sum(axis=1), docs, mask_distances[probe % len(masks)]

    threads = _threads(threads) if len(query_keys) >= 256 else 1
    size = max(1, min(block, -(-len(query_keys) // threads)))
    blocks = [query_keys[start : start + size] for start in range(0, len(query_keys), size)]
    if threads > 1 and len(blocks) > 1:
        parts = list(_pool(threads).map(lookup, blocks))
    else:
        parts = [lookup(queries) for queries in blocks]
    counts, documents, distances = zip(*parts) if parts else ((), (), ())
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([*counts, np.zeros(0, np.int64)]))]).astype(np.int64)
    return offsets, np.concatenate([*documents, np.zeros(0, np.int64)]), \
        np.concatenate([*distances, np.zeros(0, np.uint8)])


def _threads(threads: int | None) -> int:
    if threads is not None:
        return max(1, int(threads))
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="dul-ball")


def address_keys(words: np.ndarray, n_bits: int) -> np.ndarray:
    """(N, W) uint64 code words -> (N,) uint32 keys: the n <= 32 code bits, bit 0 highest."""
    if not 1 <= n_bits <= MAX_KEY_BITS:
        raise ValueError(f"address keys take 1 to {MAX_KEY_BITS} bits, got {n_bits}")
    return (np.asarray(words)[:, 0] >> np.uint64(64 - n_bits)).astype(np.uint32)
