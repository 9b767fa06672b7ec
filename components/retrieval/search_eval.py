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

People type short queries, not documents: ``compare_title_queries`` runs the
same three searches with each query item's title (a post's subject line) as
free text, the item itself left out, and reports them under ``search/title/``.
"""

from __future__ import annotations

import time

import numpy as np

from components.data.text import count_vectors, tokenize
from components.retrieval.documents import SearchIndex, tfidf_rows
from components.retrieval.engine import search_item, search_text


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
            precision.append(_precision(found, int(row), labels, label_sets))
            sizes.append(size)
        metrics[f"search/precision_at_{k}/{name}"] = float(np.mean(precision))
        metrics[f"search/query_ms/{name}"] = 1e3 * seconds / max(len(rows), 1)
        if name == "hash_rerank":
            metrics["search/shortlist_mean"] = float(np.mean(sizes))
    return metrics


def compare_title_queries(index: SearchIndex, rows, k: int, shortlist: int = 100,
                          label_sets: np.ndarray | None = None) -> dict:
    """``search/title/precision_at_{k}/<method>`` and ``search/title/query_ms/<method>`` with each
    row's title as a free-text query (itself left out), ``search/title/n_queries``, and
    ``search/title/n_unsearchable``: titles with no word of the vocabulary, left out."""
    rows = np.asarray(rows, dtype=np.int64)
    k = min(int(k), len(index) - 1)
    labels, idf = np.asarray(index.labels), np.asarray(index.idf)
    queries = [(int(row), str(index.titles[row])) for row in rows if _searchable(index, str(index.titles[row]))]
    tfidf = index.tfidf.copy()
    methods = {
        "hash_rerank": lambda row, text: _rows(search_text(index, text, k, shortlist=shortlist, exclude=row)),
        "hash_only": lambda row, text: _rows(search_text(index, text, k, shortlist=shortlist, rerank=False,
                                                         exclude=row)),
        "tfidf_all": lambda row, text: _tfidf_query_top(tfidf, tfidf_rows(_counts(index, text), idf), row, k),
    }
    metrics: dict = {"search/title/n_queries": len(queries), "search/title/n_unsearchable": len(rows) - len(queries)}
    if not queries:
        return metrics
    for name, method in methods.items():
        method(*queries[0])  # warm up, untimed
        precision, seconds = [], 0.0
        for row, text in queries:
            start = time.perf_counter()
            found = method(row, text)
            seconds += time.perf_counter() - start
            precision.append(_precision(found, row, labels, label_sets))
        metrics[f"search/title/precision_at_{k}/{name}"] = float(np.mean(precision))
        metrics[f"search/title/query_ms/{name}"] = 1e3 * seconds / len(queries)
    return metrics


def _searchable(index: SearchIndex, text: str) -> bool:
    tokens = tokenize(text)
    return bool(tokens) and count_vectors([tokens], index.vocabulary).nnz > 0


def _counts(index: SearchIndex, text: str):
    return count_vectors([tokenize(text)], index.vocabulary)


def _rows(result) -> np.ndarray:
    return np.array([hit["row"] for hit in result.hits], dtype=np.int64)


def _precision(found: np.ndarray, row: int, labels: np.ndarray, label_sets: np.ndarray | None) -> float:
    if not len(found):
        return 0.0
    if label_sets is not None:
        return float(np.mean((label_sets[found] & label_sets[row]).any(axis=1)))
    return float(np.mean(labels[found] == labels[row]))


def _tfidf_query_top(tfidf, query, row: int, k: int) -> np.ndarray:
    """The k rows of largest cosine with a (1, V) TF-IDF ``query``, ``row`` left out."""
    scores = (tfidf @ query.T).toarray().ravel()
    scores[row] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]


def _hash(index: SearchIndex, row: int, k: int, shortlist: int, rerank: bool) -> tuple[np.ndarray, int]:
    result = search_item(index, row, k, rerank=rerank, shortlist=shortlist)
    return np.array([hit["row"] for hit in result.hits], dtype=np.int64), result.shortlist


def _tfidf_top(tfidf, row: int, k: int) -> np.ndarray:
    """The k rows of largest cosine with ``row`` (itself left out); ties: lower row first."""
    return _tfidf_query_top(tfidf, tfidf[row], row, k)
