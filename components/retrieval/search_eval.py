"""The paper's comparison of search strategies, on the search index itself.

Salakhutdinov & Hinton (2009) report that using the semantic address space
as a filter, a Hamming-ball shortlist re-ranked by TF-IDF, is as precise as
TF-IDF over the whole collection and much faster. ``compare_search`` runs
each stored query item through three searches of the whole index (every
other item, all splits) and measures precision@k (the fraction of the k
results that share a label with the query) and the mean time per query:

- ``hash_rerank``: the code's shortlist (the radius-2 ball for codes of up to
  32 bits, grown to ``shortlist`` items by the nearest codes outside it; else
  the ``shortlist`` nearest codes) re-ranked by TF-IDF cosine;
- ``hash_only``: the same shortlist ranked by Hamming distance alone;
- ``tfidf_all``: TF-IDF cosine against every item (a sparse product).
"""

from __future__ import annotations

import time

import numpy as np

from components.retrieval.documents import SearchIndex
from components.retrieval.engine import search_item


def compare_search(index: SearchIndex, rows, k: int, shortlist: int = 100, label_sets: np.ndarray | None = None) -> dict:
    """``search/precision_at_{k}/<method>``, ``search/query_ms/<method>``, shortlist size and query count.

    ``label_sets`` (N, L) bool, one row per index item: a result is relevant when it shares any
    label with the query (multi-label corpora); without it, when its one label is the query's."""
    rows = np.asarray(rows, dtype=np.int64)
    k = min(int(k), len(index) - 1)
    labels = np.asarray(index.labels)
    tfidf = index.tfidf.copy()  # in memory, as a whole-collection TF-IDF engine would hold it
    methods = {
        "hash_rerank": lambda row: _hash(index, row, k, shortlist, True),
        "hash_only": lambda row: _hash(index, row, k, shortlist, False),
        "tfidf_all": lambda row: (_tfidf_top(tfidf, row, k), None),
    }
    metrics: dict = {"search/n_queries": len(rows)}
    for name, method in methods.items():
        method(int(rows[0]))  # warm up caches and memory maps, untimed
        precision, seconds, sizes = [], 0.0, []
        for row in rows:
            start = time.perf_counter()
            found, size = method(int(row))
            seconds += time.perf_counter() - start
            if not len(found):
                precision.append(0.0)
            elif label_sets is not None:
                precision.append(np.mean((label_sets[found] & label_sets[row]).any(axis=1)))
            else:
                precision.append(np.mean(labels[found] == labels[row]))
            sizes.append(size)
        metrics[f"search/precision_at_{k}/{name}"] = float(np.mean(precision))
        metrics[f"search/query_ms/{name}"] = 1e3 * seconds / max(len(rows), 1)
        if name == "hash_rerank":
            metrics["search/shortlist_mean"] = float(np.mean(sizes))
    return metrics


def _hash(index: SearchIndex, row: int, k: int, shortlist: int, rerank: bool) -> tuple[np.ndarray, int]:
    result = search_item(index, row, k, rerank=rerank, shortlist=shortlist)
    return np.array([hit["row"] for hit in result.hits], dtype=np.int64), result.shortlist


def _tfidf_top(tfidf, row: int, k: int) -> np.ndarray:
    """The k rows of largest cosine with ``row`` (itself left out); ties: lower row first."""
    scores = (tfidf @ tfidf[row].T).toarray().ravel()
    scores[row] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]
