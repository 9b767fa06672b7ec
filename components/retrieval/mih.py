"""Multi-index hashing: exact Hamming k-NN for long codes without a full scan.

Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
hashing" (CVPR 2012; TPAMI 2014). Each n-bit code is cut into m contiguous
substrings of about n / m <= 32 bits, and each substring gets its own
address table (``components.retrieval.address``). By the pigeonhole
principle, if ||h - g|| <= m r + j then some substring i satisfies
||h_i - g_i|| <= r (i <= j) or <= r - 1 (i > j). So visiting, in order,
radius r = 0, 1, ... of table j = 0 .. m-1 finds every item whose distance is
at most m r + j, and the search of a query stops as soon as k of the items
found lie within that bound: no unseen item can be nearer, so the answer
(distance, then index) is exactly the brute-force one, ties included.

A query whose search would visit a large part of the collection (codes
spread uniformly, or k near N) is answered by the blocked scan instead, which
gives the same answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from components.retrieval.address import (
    AddressTable,
    build_address_table,
    expand_ranges,
    lookup_ranges,
    sphere_masks,
)

MAX_BITS = 255  # distances must fit the 8 bits of the sort key below
_DOC_BITS = 40  # document ids must fit 40 bits of the sort key
# A query that has found N / _GIVE_UP items (or would probe as many addresses)
# is cheaper to scan: a verified candidate costs ~10x a scanned code.
_GIVE_UP = 64


@dataclass(frozen=True, eq=False)
class MultiIndex:
    """m substring tables over n-bit codes; substring i is code bits starts[i] .. + widths[i]."""

    n_bits: int
    starts: tuple[int, ...]
    widths: tuple[int, ...]
    tables: tuple[AddressTable, ...]


def default_substrings(n_bits: int, n_items: int) -> int:
    """Norouzi et al.'s choice m ~ n / log2 N, at least enough for 32-bit substrings."""
    m = round(n_bits / max(math.log2(max(n_items, 2)), 1.0))
    return min(n_bits, max(m, math.ceil(n_bits / 32), 1))


def substring_layout(n_bits: int, m: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """m contiguous substrings of near-equal width covering bits 0 .. n-1: starts, widths."""
    if not 1 <= m <= n_bits or math.ceil(n_bits / m) > 32:
        raise ValueError(f"need 1 <= m <= {n_bits} substrings of at most 32 bits, got m={m}")
    widths = tuple(n_bits // m + (i < n_bits % m) for i in range(m))
    starts = tuple(int(s) for s in np.cumsum((0,) + widths[:-1]))
    return starts, widths


def _parts(start: int, width: int) -> list[tuple[int, int, int]]:
    """The (word, shift, width) pieces of code bits start .. start + width - 1, high first."""
    parts, bit, end = [], start, start + width
    while bit < end:
        word, low = divmod(bit, 64)
        take = min(end - bit, 64 - low)
        parts.append((word, 64 - low - take, take))  # the piece is (word >> shift) & (2^take - 1)
        bit += take
    return parts


def substring_keys(words: np.ndarray, start: int, width: int) -> np.ndarray:
    """(N, W) uint64 words -> (N,) uint32: code bits start .. start + width - 1, first highest."""
    key = np.zeros(len(words), np.uint64)
    for word, shift, take in _parts(start, width):
        piece = (words[:, word] >> np.uint64(shift)) & np.uint64((1 << take) - 1)
        key = (key << np.uint64(take)) | piece
    return key.astype(np.uint32)


def substring_distances(xor: np.ndarray, start: int, width: int) -> np.ndarray:
    """Hamming distance within one substring from XORed words: (H, W) -> (H,) uint8."""
    dist = np.zeros(len(xor), np.uint8)
    for word, shift, take in _parts(start, width):
        dist += np.bitwise_count(xor[:, word] & np.uint64(((1 << take) - 1) << shift))
    return dist


def build_multi_index(words: np.ndarray, n_bits: int, m: int | None = None) -> MultiIndex:
    """One address table per substring of the (N, W) uint64 codes."""
    words = np.asarray(words)
    if not 1 <= n_bits <= MAX_BITS or len(words) >= 2**_DOC_BITS:
        raise ValueError(f"multi-index hashing takes 1..{MAX_BITS} bits, < 2^40 items")
    starts, widths = substring_layout(n_bits, m or default_substrings(n_bits, len(words)))
    tables = tuple(
        build_address_table(substring_keys(words, s, w), w, hashed=False) for s, w in zip(starts, widths)
    )
    return MultiIndex(n_bits, starts, widths, tables)


def mih_knn(words, index: MultiIndex, query_words, k: int, *, fallback=None, block: int = 1024):
    """Exact k nearest codes: (N, W), (Q, W) uint64 -> indices (Q, k) int64, distances (Q, k) int32.

    Order: distance, then index, as the brute-force scan. ``k`` must be in
    1..N. ``fallback(query_words, k)``, if given, answers the queries whose
    search would touch more than N / 64 items or addresses.
    """
    indices = np.empty((len(query_words), k), np.int64)
    distances = np.empty((len(query_words), k), np.int32)
    for start in range(0, len(query_words), block):
        rows = slice(start, start + block)
        found = _search_block(words, index, query_words[rows], k, fallback is not None)
        indices[rows], distances[rows] = found
        costly = indices[rows][:, 0] < 0
        if costly.any():
            at = np.flatnonzero(costly) + start
            indices[at], distances[at] = fallback(query_words[at], k)
    return indices, distances


class _Search:
    """The state of one block's search: per-query distance histograms and candidates."""

    def __init__(self, n_queries: int, n_bits: int):
        self.histogram = np.zeros((n_queries, n_bits + 1), np.int64)  # found items by distance
        self.found = np.zeros(n_queries, np.int64)
        self.bound = np.full(n_queries, -1, np.int64)  # settled: the answer lies within it
        self.active = np.arange(n_queries)
        self.candidates: list[np.ndarray] = []  # sort keys: query << 48 | dist << 40 | doc

    def add(self, query: np.ndarray, doc: np.ndarray, dist: np.ndarray) -> None:
        n_queries, width = self.histogram.shape
        flat = np.bincount(query * width + dist, minlength=n_queries * width)
        self.histogram += flat.reshape(n_queries, width)
        self.found += flat.reshape(n_queries, width).sum(axis=1)
        key = (query.astype(np.uint64) << np.uint64(48)) | (dist.astype(np.uint64) << np.uint64(40))
        self.candidates.append(key | doc.astype(np.uint64))

    def settle(self, bound: int, k: int, n_items: int, give_up: np.ndarray) -> None:
        """Stop the queries with k items within ``bound``; mark ``give_up`` ones (-2)."""
        active = self.active
        within = self.histogram[active, : bound + 1].sum(axis=1)
        everything = self.found[active] == n_items  # then every distance is settled
        done = (within >= k) | everything
        self.bound[active[done]] = np.where(everything, self.histogram.shape[1], bound)[done]
        self.bound[active[give_up & ~done]] = -2
        self.active = active[~done & ~give_up]


def _search_block(words, index: MultiIndex, query_words, k: int, may_give_up: bool):
    """Search radii r = 0, 1, ... table by table until every query has settled."""
    n_items, m = len(words), len(index.tables)
    keys = [substring_keys(query_words, s, w) for s, w in zip(index.starts, index.widths)]
    state = _Search(len(query_words), index.n_bits)
    for radius in range(max(index.widths) + 1):
        for j in range(m):
            if len(state.active) == 0:
                return _answers(state, k)
            masks = sphere_masks(index.widths[j], radius)
            if len(masks):
                _probe(words, index, query_words, keys[j], j, radius, masks, state)
            give_up = (state.found[state.active] * _GIVE_UP > n_items) & may_give_up
            give_up |= may_give_up and len(masks) * m * _GIVE_UP > n_items
            state.settle(min(m * radius + j, index.n_bits), k, n_items, give_up)
    return _answers(state, k)


def _probe(words, index, query_words, keys, j, radius, masks, state: _Search) -> None:
    """Visit sphere ``radius`` of table j for the active queries; keep first discoveries."""
    active = state.active
    starts, ends = lookup_ranges(index.tables[j], keys[active][:, None] ^ masks)  # (A, P)
    probe, doc = expand_ranges(index.tables[j], starts, ends)  # (H,)
    query = active[probe // len(masks)]
    xor = words[doc] ^ query_words[query]  # (H, W)
    dist = np.zeros(len(doc), np.uint8)
    first = np.ones(len(doc), bool)  # not reachable earlier: smaller radius, or same in table < j
    for i, (s, w) in enumerate(zip(index.starts, index.widths)):
        sub = substring_distances(xor, s, w)
        dist += sub
        if i != j:
            first &= sub > radius if i < j else sub >= radius
    state.add(query[first], doc[first], dist[first])


def _answers(state: _Search, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest sort keys of each settled query; -1 rows for those given up."""
    n_queries = len(state.bound)
    keys = np.concatenate(state.candidates) if state.candidates else np.zeros(0, np.uint64)
    query = (keys >> np.uint64(48)).astype(np.int64)
    dist = ((keys >> np.uint64(40)) & np.uint64(255)).astype(np.int64)
    keys = np.sort(keys[dist <= state.bound[query]])
    first = np.searchsorted(keys, np.arange(n_queries, dtype=np.uint64) << np.uint64(48))
    settled = state.bound >= 0
    indices = np.full((n_queries, k), -1, np.int64)
    distances = np.full((n_queries, k), -1, np.int32)
    chosen = keys[first[settled, None] + np.arange(k)]  # (S, k)
    indices[settled] = (chosen & np.uint64(2**_DOC_BITS - 1)).astype(np.int64)
    distances[settled] = ((chosen >> np.uint64(40)) & np.uint64(255)).astype(np.int32)
    return indices, distances
