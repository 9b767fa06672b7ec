"""Binary codes and Hamming-distance retrieval (semantic hashing).

Hinton & Salakhutdinov (2006) and Salakhutdinov & Hinton (2009), "Semantic
hashing": an autoencoder's code layer is thresholded into C bits, and items
whose codes lie a small Hamming distance apart are retrieved as neighbours.

Codes are packed eight bits to a byte (``np.packbits``, big-endian within a
byte, zero padding in the last byte), so the Hamming distance between two
items is ``popcount(a XOR b)`` summed over the packed bytes.
"""

from __future__ import annotations

import numpy as np

# Distances are at most 8 * bytes, so uint16 holds them (codes up to 65528
# bits) and halves the memory of a block of distances compared with int32.
_DISTANCE_DTYPE = np.uint16
_MAX_BYTES = 8191


def fit_thresholds(codes: np.ndarray) -> np.ndarray:
    """Per-bit thresholds that balance the bits: the median of each code unit.

    ``codes`` (N, C) real -> (C,) float32. With distinct values, ``codes >
    median`` is one for half the items (rounding down for odd N). The result is
    float32, the type stored in the index, so the stored thresholds reproduce
    the bits exactly.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"codes must be (N, C) with N >= 1, got shape {codes.shape}")
    return np.median(codes, axis=0).astype(np.float32)


def binarize(codes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Bits ``codes > thresholds``: (N, C) real, (C,) -> (N, C) bool."""
    codes, thresholds = np.asarray(codes), np.asarray(thresholds)
    if codes.ndim != 2 or thresholds.shape != (codes.shape[1],):
        raise ValueError(
            f"codes (N, C) and thresholds (C,) do not match: {codes.shape}, {thresholds.shape}"
        )
    return codes > thresholds


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack (N, C) bool bits into (N, ceil(C / 8)) uint8, eight bits a byte."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"bits must be (N, C), got shape {bits.shape}")
    return np.packbits(bits.astype(bool, copy=False), axis=1)


def hamming_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Hamming distances between packed codes: (Q, B), (N, B) uint8 -> (Q, N) int32."""
    query_words, database_words = _as_words(queries, database)
    return _distances(query_words, database_words).astype(np.int32)


def knn(
    queries: np.ndarray,
    database: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest database items to each query by Hamming distance.

    ``queries`` (Q, B) and ``database`` (N, B) are packed codes. Returns
    ``indices`` (Q, k) int64 and ``distances`` (Q, k) int32, nearest first,
    ties broken by the lower database index: exactly the first k columns of
    ``np.argsort(hamming_distances(queries, database), kind="stable")``.

    ``exclude`` (Q,) names one database index per query to leave out (the
    query's own item), or -1 for none. Queries go ``block`` at a time, so at
    most (block, N) distances are held at once.
    """
    query_words, database_words = _as_words(queries, database)
    n_queries, n_items = len(query_words), database_words.shape[1]
    exclude = _check_exclude(exclude, n_queries, n_items)
    limit = n_items - (exclude is not None and bool(np.any(exclude >= 0)))
    if not 1 <= k <= limit or block < 1:
        raise ValueError(f"need 1 <= k <= {limit} and block >= 1, got k={k}, block={block}")
    indices = np.empty((n_queries, k), np.int64)
    distances = np.empty((n_queries, k), np.int32)
    for start in range(0, n_queries, block):
        rows = slice(start, min(start + block, n_queries))
        dist = _distances(query_words[rows], database_words)  # (block, N)
        for i, row in enumerate(dist, start):
            indices[i] = _nearest(row, k, -1 if exclude is None else exclude[i])
            distances[i] = row[indices[i]]
    return indices, distances


def precision_at_k(
    query_labels: np.ndarray, database_labels: np.ndarray, neighbors: np.ndarray
) -> np.ndarray:
    """Mean precision at each cut-off: (Q,), (N,), (Q, k) -> (k,) float64.

    Entry j-1 is the fraction of the first j neighbours that share the query's
    label, averaged over queries. Labels are ints (one each) or (Q, L) and
    (N, L) bool matrices (multi-label: a neighbour is a hit when it shares any
    label with the query).
    """
    query_labels, neighbors = np.asarray(query_labels), np.asarray(neighbors)
    if neighbors.ndim != 2 or len(neighbors) != len(query_labels):
        raise ValueError(
            f"neighbors must be (Q, k) with Q = {len(query_labels)}, got {neighbors.shape}"
        )
    if query_labels.ndim == 2:  # label sets
        same = (np.asarray(database_labels)[neighbors] & query_labels[:, None, :]).any(axis=2)  # (Q, k)
    else:
        same = np.asarray(database_labels)[neighbors] == query_labels[:, None]  # (Q, k)
    hits = np.cumsum(same, axis=1)  # (Q, k)
    return (hits / np.arange(1, neighbors.shape[1] + 1)).mean(axis=0)


def _as_words(queries: np.ndarray, database: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed (Q, B), (N, B) -> (Q, W) and (W, N) uint64 words, W = ceil(B / 8).

    Both are zero-padded to whole words, which adds nothing to a XOR count;
    the database is transposed so each word's column is contiguous.
    """
    queries, database = np.asarray(queries), np.asarray(database)
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"packed codes must be (Q, B) and (N, B), got {queries.shape}, {database.shape}"
        )
    if not 1 <= queries.shape[1] <= _MAX_BYTES:
        raise ValueError(f"packed codes must have 1 to {_MAX_BYTES} bytes, got {queries.shape[1]}")
    if queries.dtype != np.uint8 or database.dtype != np.uint8:
        raise ValueError(f"packed codes must be uint8, got {queries.dtype}, {database.dtype}")
    pad = ((0, 0), (0, -queries.shape[1] % 8))
    query_words = np.pad(queries, pad).view(np.uint64)
    database_words = np.ascontiguousarray(np.pad(database, pad).view(np.uint64).T)
    return query_words, database_words


def _distances(query_words: np.ndarray, database_words: np.ndarray) -> np.ndarray:
    """(Q, W), (W, N) uint64 words -> (Q, N) uint16 Hamming distances.

    One query at a time: the (N,) working arrays stay in cache, which is
    several times faster than broadcasting a (Q, N) XOR per word.
    """
    out = np.empty((len(query_words), database_words.shape[1]), _DISTANCE_DTYPE)
    for i, words in enumerate(query_words):
        row = out[i]
        np.bitwise_count(words[0] ^ database_words[0], out=row)
        for w in range(1, len(words)):
            row += np.bitwise_count(words[w] ^ database_words[w])
    return out


def _nearest(row: np.ndarray, k: int, excluded: int) -> np.ndarray:
    """Indices of the k smallest of (N,) small integers, stable: (k,) int64.

    Distances are small integers, so the k-th smallest value is read off a
    histogram; only items at or below it are sorted. Leaving out index
    ``excluded`` (-1: none) from the sorted k + 1 keeps the rest in order.
    """
    take = k + (excluded >= 0)
    cut = np.searchsorted(np.cumsum(np.bincount(row)), take)  # take-th smallest value
    candidates = np.flatnonzero(row <= cut)  # ascending index, so ties stay in order
    nearest = candidates[np.argsort(row[candidates], kind="stable")[:take]]
    return nearest[nearest != excluded][:k]


def _check_exclude(exclude: np.ndarray | None, n_queries: int, n_items: int) -> np.ndarray | None:
    """Validate ``exclude``: None, or (Q,) integers in [-1, N)."""
    if exclude is None:
        return None
    exclude = np.asarray(exclude)
    if exclude.shape != (n_queries,) or not np.issubdtype(exclude.dtype, np.integer):
        raise ValueError(
            f"exclude must be ({n_queries},) integers, got {exclude.dtype} {exclude.shape}"
        )
    if len(exclude) and (exclude.min() < -1 or exclude.max() >= n_items):
        raise ValueError(f"exclude entries must lie in [-1, {n_items}), -1 meaning none")
    return exclude.astype(np.int64)


def words_from_packed(packed: np.ndarray) -> np.ndarray:
    """Packed (N, B) uint8 -> (N, W) uint64 words, W = ceil(B / 8).

    Word w holds code bits 64w .. 64w + 63, the first one most significant
    (the bytes read big-endian), so a run of consecutive code bits is a run of
    consecutive word bits. Missing bytes are zero, which adds nothing to a
    XOR count.
    """
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.dtype != np.uint8:
        raise ValueError(f"packed codes must be (N, B) uint8, got {packed.dtype} {packed.shape}")
    padded = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    return padded.view(">u8").astype(np.uint64)


def pack_words(bits: np.ndarray) -> np.ndarray:
    """(N, C) bool bits -> (N, ceil(C / 64)) uint64 words; layout as ``words_from_packed``."""
    return words_from_packed(pack_bits(bits))


def packed_from_words(words: np.ndarray, n_bits: int) -> np.ndarray:
    """(N, W) uint64 words -> (N, ceil(n_bits / 8)) uint8, the inverse of ``words_from_packed``."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    return words.astype(">u8").view(np.uint8)[:, : -(-n_bits // 8)]
