"""Retrieval quality as the semantic-hashing papers measure it.

Salakhutdinov & Hinton (2009), "Semantic hashing": every test document
queries the training documents; a retrieved document is *relevant* when it
shares a label with the query (any label, for multi-label corpora). A
method ranks the whole database for each query (Hamming distance between
codes, or cosine similarity between real vectors), and for each cut-off n
(documents retrieved):

    precision(n) = mean over queries of  relevant in top n / n
    recall(n)    = mean over queries of  relevant in top n / relevant in database

Ties (documents at the same distance) are ordered by one of two rules,
``ties=``:

- ``"index"`` (the default: the pipeline's stages use it, as did every
  figure stored before ``"random"`` existed): the lower database index first. It depends on the database's order, and ingested
  corpora are stored label by label (20 Newsgroups: newsgroup 0's posts
  first), so where a cut-off falls inside a run of ties (short codes: at
  8 bits a Hamming ball holds hundreds of posts) it takes the lowest labels
  first, whatever the query's label. On bydate's validation posts, 8-bit
  codes from the K-NN graph's eigenvectors score 0.232 by it and 0.290 by
  ``"random"``: the rule, not the codes, moved the figure.
- ``"random"``: the tie runs in a uniformly random order, in exact
  expectation, so no seed and no database order enters: a cut-off that
  takes m of a run of t tied documents, r of them relevant, counts m * r / t
  hits. Without ties both rules agree exactly.

Queries with no relevant document in the database are left out of the
recall mean (their recall is undefined). Precision-recall curves are these
pairs over a grid of cut-offs; precision@100 is precision(100).

Cosine takes dense arrays or scipy.sparse matrices (TF-IDF vectors of a
whole corpus): a sparse database is never densified whole. Memory is a
query block's similarities, (block, N), plus a block of database rows
(``dense_blocks``) densified to compute them with the same float32 BLAS
product as a dense database, so both give the same bits (see ``_unit`` and
``_similarities``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from components.retrieval.codes import hamming_distances

METRICS = ("hamming", "cosine")
TIES = ("index", "random")


def label_matrix(labels, n_labels: int | None = None) -> np.ndarray:
    """Labels as a (N, L) bool matrix: from (N,) ints (one label each) or a list of label lists."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        n_labels = n_labels or int(labels.max()) + 1
        matrix = np.zeros((len(labels), n_labels), dtype=bool)
        matrix[np.arange(len(labels)), labels] = True
        return matrix
    n_labels = n_labels or 1 + max((max(row) for row in labels if len(row)), default=0)
    matrix = np.zeros((len(labels), n_labels), dtype=bool)
    for i, row in enumerate(labels):
        matrix[i, list(row)] = True
    return matrix


def default_cutoffs(n_database: int, points: int = 40) -> np.ndarray:
    """About ``points`` cut-offs spaced evenly in log scale from 1 to N, plus 100."""
    grid = np.geomspace(1, n_database, points).round().astype(np.int64)
    return np.unique(np.concatenate([grid, [min(100, n_database)]]))


def retrieval_curves(queries, database, query_labels: np.ndarray,
                     database_labels: np.ndarray, metric: str, cutoffs: np.ndarray | None = None,
                     block: int = 256, ties: str = "index") -> dict[str, np.ndarray]:
    """Mean precision and recall at each cut-off (see the module docstring).

    ``queries`` (Q, B) and ``database`` (N, B): packed uint8 codes for
    ``metric="hamming"``, real vectors for ``"cosine"`` (dense, or scipy.sparse:
    the same curves, never an (N, B) dense copy). Labels: (Q, L) and (N, L)
    bool matrices (``label_matrix``). ``ties``: ``"index"`` or ``"random"`` (see the
    module docstring). Returns ``{"cutoff", "precision", "recall"}`` arrays of the
    cut-offs' length.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if metric == "hamming" and (scipy.sparse.issparse(queries) or scipy.sparse.issparse(database)):
        raise ValueError("metric 'hamming' takes packed uint8 codes, not sparse matrices")
    n_items, n_queries = database.shape[0], queries.shape[0]
    cutoffs = default_cutoffs(n_items) if cutoffs is None else np.asarray(cutoffs, dtype=np.int64)
    if len(cutoffs) == 0 or cutoffs.min() < 1 or cutoffs.max() > n_items:
        raise ValueError(f"cut-offs must lie in [1, {n_items}]")
    if metric == "cosine":
        queries, database = _unit(queries), _unit(database)
    db_labels = database_labels.astype(np.float32)
    precision_sum = np.zeros(len(cutoffs))
    recall_sum, recall_count = np.zeros(len(cutoffs)), 0
    for start in range(0, n_queries, block):
        rows = slice(start, start + block)
        distances = _distances(queries[rows], database, metric)
        order = np.argsort(distances, axis=1, kind="stable")  # (b, N), ties by lower index
        relevant = (query_labels[rows].astype(np.float32) @ db_labels.T) > 0  # (b, N)
        cumulative = np.cumsum(np.take_along_axis(relevant, order, axis=1), axis=1, dtype=np.int32)  # (b, N)
        if ties == "index":
            hits = cumulative[:, cutoffs - 1]  # (b, C)
        else:
            hits = _expected_hits(cumulative, np.take_along_axis(distances, order, axis=1), cutoffs)
        precision_sum += (hits / cutoffs).sum(axis=0)
        total = relevant.sum(axis=1)
        has = total > 0
        recall_sum += (hits[has] / total[has, None]).sum(axis=0)
        recall_count += int(has.sum())
    return {"cutoff": cutoffs, "precision": precision_sum / n_queries,
            "recall": recall_sum / max(recall_count, 1)}


def _unit(vectors):
    """Rows scaled to unit L2 norm in float32 (zero rows stay zero); sparse stays sparse.

    A sparse row's norm is taken from its densified row (``dense_blocks``),
    so its sum of squares runs in the order NumPy sums the dense row, and
    each stored value is divided by it as the dense path divides."""
    if not scipy.sparse.issparse(vectors):
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)
    vectors = scipy.sparse.csr_matrix(vectors, dtype=np.float32, copy=True)
    vectors.sum_duplicates()
    rows = max(1, (1 << 20) // max(vectors.shape[1], 1))  # any blocks: a row's norm is its own sum
    norms = np.concatenate([np.linalg.norm(dense, axis=1) for _, dense in dense_blocks(vectors, rows)]
                           or [np.zeros(0, np.float32)])
    vectors.data /= np.repeat(np.where(norms > 0, norms, np.float32(1)), np.diff(vectors.indptr))
    return vectors


def _distances(queries, database, metric: str) -> np.ndarray:
    """(b, N), smaller is nearer: Hamming distances, or negated cosine similarities."""
    if metric == "hamming":
        return hamming_distances(queries, database)
    distances = _similarities(queries, database)
    np.negative(distances, out=distances)  # in place: one (b, N) array, not two
    return distances


def _expected_hits(cumulative: np.ndarray, ordered: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """(b, C) float: relevant documents in the top n when each run of tied distances comes in
    a uniformly random order, in expectation. ``cumulative`` (b, N): relevant in the first
    j + 1 of the index order; ``ordered`` (b, N): the distances in that order (ascending).
    The run holding position n - 1 spans [start, end); the top n takes n - start of its
    end - start documents, and each is relevant with the run's share."""
    n_items = ordered.shape[1]
    position = np.arange(n_items, dtype=np.int32)
    new_run = np.ones(ordered.shape, dtype=bool)
    new_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    starts = np.maximum.accumulate(np.where(new_run, position, 0), axis=1)[:, cutoffs - 1]  # (b, C)
    run_end = np.ones(ordered.shape, dtype=bool)  # last position of its run
    run_end[:, :-1] = new_run[:, 1:]
    ends = 1 + np.minimum.accumulate(np.where(run_end, position, n_items - 1)[:, ::-1], axis=1)[:, ::-1][:, cutoffs - 1]
    padded = np.concatenate([np.zeros((len(cumulative), 1), cumulative.dtype), cumulative], axis=1)  # hits in first j
    before = np.take_along_axis(padded, starts, axis=1)
    in_run = np.take_along_axis(padded, ends, axis=1) - before
    return before + (cutoffs - starts) * in_run / (ends - starts)


def _similarities(queries, database) -> np.ndarray:
    """``queries @ database.T`` (b, N) float32; a sparse database a block of rows at a time.

    Each block's product is the dense float32 product of the densified rows,
    which BLAS sums over the features in the same order as the whole product
    (verified for OpenBLAS): the blocks start at multiples of 64 rows, so its
    kernels' tails fall where the whole product's do, and hold at least 4 M
    values, so no block is small enough for its small-matrix kernels."""
    queries = queries.toarray() if scipy.sparse.issparse(queries) else queries  # (b, B)
    if not scipy.sparse.issparse(database):
        return queries @ database.T
    similarities = np.empty((queries.shape[0], database.shape[0]), dtype=np.result_type(queries, database))
    for rows, dense in dense_blocks(database):
        similarities[:, rows] = queries @ dense.T
    return similarities


def dense_blocks(matrix, rows: int | None = None):
    """(slice, dense rows) over a sparse (N, B) matrix, ``rows`` rows at a time (default: the
    least multiple of 64 rows holding 4 M values), the last block absorbing the remainder
    (so up to twice as many rows; one block when N < 2 * rows)."""
    n_rows, width = matrix.shape
    rows = rows or 64 * -(-(1 << 22) // (64 * max(width, 1)))  # 64 * ceil(4 M / (64 B)): rows * B >= 4 M
    starts = list(range(0, n_rows, rows))
    if len(starts) > 1 and n_rows - starts[-1] < rows:
        starts.pop()
    for start, stop in zip(starts, [*starts[1:], n_rows]):
        yield slice(start, stop), matrix[start:stop].toarray()
