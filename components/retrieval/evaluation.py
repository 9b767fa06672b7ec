"""Retrieval quality as the semantic-hashing papers measure it.

Salakhutdinov & Hinton (2009), "Semantic hashing": every test document
queries the training documents; a retrieved document is *relevant* when it
shares a label with the query (any label, for multi-label corpora). A
method ranks the whole database for each query (Hamming distance between
codes, or cosine similarity between real vectors; ties go to the lower
database index), and for each cut-off n (documents retrieved):

    precision(n) = mean over queries of  relevant in top n / n
    recall(n)    = mean over queries of  relevant in top n / relevant in database

Queries with no relevant document in the database are left out of the
recall mean (their recall is undefined). Precision-recall curves are these
pairs over a grid of cut-offs; precision@100 is precision(100).
"""

from __future__ import annotations

import numpy as np

from components.retrieval.codes import hamming_distances

METRICS = ("hamming", "cosine")


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


def retrieval_curves(queries: np.ndarray, database: np.ndarray, query_labels: np.ndarray,
                     database_labels: np.ndarray, metric: str, cutoffs: np.ndarray | None = None,
                     block: int = 256) -> dict[str, np.ndarray]:
    """Mean precision and recall at each cut-off (see the module docstring).

    ``queries`` (Q, B) and ``database`` (N, B): packed uint8 codes for
    ``metric="hamming"``, real vectors for ``"cosine"``. Labels: (Q, L) and
    (N, L) bool matrices (``label_matrix``). Returns ``{"cutoff", "precision",
    "recall"}`` arrays of the cut-offs' length.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    n_items = len(database)
    cutoffs = default_cutoffs(n_items) if cutoffs is None else np.asarray(cutoffs, dtype=np.int64)
    if len(cutoffs) == 0 or cutoffs.min() < 1 or cutoffs.max() > n_items:
        raise ValueError(f"cut-offs must lie in [1, {n_items}]")
    if metric == "cosine":
        queries, database = _unit(queries), _unit(database)
    db_labels = database_labels.astype(np.float32)
    precision_sum = np.zeros(len(cutoffs))
    recall_sum, recall_count = np.zeros(len(cutoffs)), 0
    for start in range(0, len(queries), block):
        rows = slice(start, start + block)
        order = _ranking(queries[rows], database, metric)  # (b, N)
        relevant = (query_labels[rows].astype(np.float32) @ db_labels.T) > 0  # (b, N)
        hits = np.cumsum(np.take_along_axis(relevant, order, axis=1), axis=1)[:, cutoffs - 1]  # (b, C)
        precision_sum += (hits / cutoffs).sum(axis=0)
        total = relevant.sum(axis=1)
        has = total > 0
        recall_sum += (hits[has] / total[has, None]).sum(axis=0)
        recall_count += int(has.sum())
    return {"cutoff": cutoffs, "precision": precision_sum / len(queries),
            "recall": recall_sum / max(recall_count, 1)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def _ranking(queries: np.ndarray, database: np.ndarray, metric: str) -> np.ndarray:
    """Database indices best first for each query, ties by lower index: (b, N)."""
    if metric == "hamming":
        distances = hamming_distances(queries, database)
    else:
        distances = -(queries @ database.T)
    return np.argsort(distances, axis=1, kind="stable")
