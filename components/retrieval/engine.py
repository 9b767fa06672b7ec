"""Search a ``documents`` index: free text or a stored item, then TF-IDF re-ranking.

The paper's two-step search (Salakhutdinov & Hinton 2009, section 4): the
query is encoded and binarised with the stored thresholds, its semantic
address is probed for everything within Hamming radius r (default 2, codes
of up to 32 bits) or, for longer codes, the ``10 k`` nearest codes are found
by multi-index hashing; that shortlist is then re-ranked by the cosine
similarity of its TF-IDF vectors with the query's, for bag-of-words data.
A ball with fewer hits than the shortlist asks for (default 10 k) is
extended by the nearest codes outside it.

Short free-text queries. An encoder of word counts sees a three-word query
as a three-word document, and the codes of such tiny documents sit next to
the empty document's, far from the documents about those words (a Poisson
encoder's inputs grow with the length; at the length of a subject line its
biases dominate). So a query shorter than the index's ``query_length`` (the
median training document) is encoded as a document of that length with the
query's word proportions: its counts are scaled up before encoding. On 20
Newsgroups (bydate, 2,000 words, 32 bits), validation documents' subject
lines as queries: precision@10 0.143 -> 0.391 re-ranked, 0.128 -> 0.319 by
Hamming distance alone, against 0.386 for TF-IDF over the whole collection;
whole documents as queries are unchanged (0.516 -> 0.521). Longer queries are
encoded as they are, as the stored documents were.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from components.data.text import tokenize
from components.errors import DulError
from components.retrieval.address import MAX_KEY_BITS
from components.retrieval.codes import binarize
from components.retrieval.documents import SearchIndex
from components.retrieval.hamming import hash_ball, hash_knn

DEFAULT_RADIUS = 2


@dataclass
class SearchResult:
    """``hits``: one dict per result (rank, row, id, title, split, label, distance, score)."""

    query: str
    hits: list[dict]
    seconds: float
    shortlist: int
    method: str
    words: list[str] = field(default_factory=list)


def search_text(index: SearchIndex, text: str, k: int = 10, radius: int | None = None, *,
                rerank: bool = True, shortlist: int | None = None, exclude: int = -1) -> SearchResult:
    """The k documents nearest to free ``text``: its codes' shortlist, re-ranked by TF-IDF cosine
    (``exclude``: a row left out, e.g. the document a test query was taken from; -1 none)."""
    if not index.is_text:
        raise DulError(f"{index.folder} holds {index.meta.get('dataset', 'image')} images, not documents: "
                       f"search it by item with --doc ID or --item N")
    if not str(text).strip():
        raise DulError('the query is empty: give some words, e.g. dul search --index index/search "space shuttle"')
    start = time.perf_counter()
    tokens = tokenize(text)
    if not tokens:
        raise DulError(f"the query {text!r} has no searchable words (only stop words, digits or punctuation); "
                       f"try other words")
    columns, counts = _query_counts(index, tokens)
    if not len(columns):
        raise DulError(f"none of the query's words are in the {len(index.vocabulary)}-word vocabulary; "
                       f"try other words")
    _check_k(k)
    x = np.zeros((1, len(index.vocabulary)), np.float32)  # (1, V) the query's counts
    x[0, columns] = counts
    with torch.no_grad():
        code = index.model.encode(torch.from_numpy(query_inputs(index, x))).numpy()
    words = _pack_query(binarize(code, index.thresholds))  # (1, W): packed once, for the ball and the k-NN
    known = [index.vocabulary[j] for j in columns]
    query_tfidf = None
    if rerank:  # the query's L2-normalised TF-IDF, (V,) dense: as tfidf_rows makes it for one row
        weighted = counts * np.asarray(index.idf)[columns]
        query_tfidf = np.zeros(len(index.vocabulary), np.float32)
        query_tfidf[columns] = weighted / np.sqrt(np.sum(weighted * weighted))
    result = _search(index, words, k, radius, query_tfidf, shortlist, exclude=exclude, start=start)
    result.query, result.words = text, known
    return result


def query_inputs(index: SearchIndex, x: np.ndarray) -> np.ndarray:
    """The encoder's (1, V) float32 input for a query's (1, V) counts ``x``: scaled up to the index's
    ``query_length`` words when shorter (the module docstring), else the counts themselves."""
    length, target = float(x.sum()), float(index.meta.get("query_length") or 0.0)
    return x * np.float32(target / length) if 0 < length < target else x


def _query_counts(index: SearchIndex, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The vocabulary columns the tokens hit, ascending, and their counts (float32)."""
    lookup = index.word_columns
    found = np.fromiter((lookup[t] for t in tokens if t in lookup), np.int64)
    columns, counts = np.unique(found, return_counts=True)
    return columns, counts.astype(np.float32)


def _pack_query(bits: np.ndarray) -> np.ndarray:
    """(1, C) bool -> (1, ceil(C / 64)) uint64 words, the layout of ``codes.pack_words``: the bits
    padded to whole words before packing, where pack_words pads the bytes with ``np.pad`` (0.15 ms
    a call, a fifth of a query's time; codes.py stays as it is, as training stages depend on it)."""
    padded = np.zeros((len(bits), -(-bits.shape[1] // 64) * 64), bool)
    padded[:, : bits.shape[1]] = bits
    return np.packbits(padded, axis=1).view(">u8").astype(np.uint64)


def search_item(index: SearchIndex, item, k: int = 10, radius: int | None = None, *,
                rerank: bool = True, shortlist: int | None = None) -> SearchResult:
    """The k items nearest to a stored item (a string id or a row number), itself left out."""
    row = resolve_item(index, item)
    _check_k(k)
    start = time.perf_counter()
    bits = np.array(index.hash.words[row : row + 1], dtype=np.uint64)  # (1, W) words: the stored code
    query_tfidf = _dense_row(index.tfidf, row) if rerank and index.tfidf is not None else None
    result = _search(index, bits, k, radius, query_tfidf, shortlist, exclude=row, start=start)
    result.query = f"{index.ids[row]} (row {row}, {index.splits[row]}, {index.label_name(int(index.labels[row]))})"
    return result


def resolve_item(index: SearchIndex, item) -> int:
    """A row from a row number or a document id; an unknown id suggests close ones (DulError)."""
    n_items = len(index)
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if not 0 <= item < n_items:
            raise DulError(f"item {item} is not in the index: choose a row from 0 to {n_items - 1}")
        return int(item)
    row = index.row_of.get(str(item))
    if row is not None:
        return row
    close = difflib.get_close_matches(str(item), [str(i) for i in index.ids], n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"ids look like {index.ids[0]}"
    raise DulError(f"no document has id {item!r} in {index.folder}: {hint}")


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DulError(f"k = {k!r} is not valid: choose k >= 1")


def _search(index: SearchIndex, bits: np.ndarray, k: int, radius: int | None, query_tfidf, shortlist: int | None,
            *, exclude: int, start: float) -> SearchResult:
    """Shortlist by the codes, re-rank by TF-IDF cosine if ``query_tfidf`` is given, take k."""
    k = min(int(k), len(index) - (exclude >= 0))
    rows, distances, method = candidates(index, bits, k, radius, shortlist, exclude, ordered=query_tfidf is None)
    scores = None
    if query_tfidf is not None and len(rows):
        scores = cosines(index.tfidf, rows, query_tfidf)
        order = np.lexsort((rows, distances, -scores))  # best cosine; ties: nearer code, lower row
        rows, distances, scores = rows[order], distances[order], scores[order]
        method += ", re-ranked by TF-IDF cosine"
    seconds = time.perf_counter() - start
    top = rows[:k]  # one gather per column: indexing the memory maps item by item cost 0.25 ms a query
    columns = zip(top.tolist(), index.ids[top].tolist(), index.titles[top].tolist(), index.splits[top].tolist(),
                  index.labels[top].tolist(), distances[:k].tolist(), [None] * k if scores is None else scores.tolist())
    hits = [{"rank": rank, "row": row, "id": str(item_id), "title": str(title), "split": str(split),
             "label": index.label_name(int(label)), "distance": int(distance),
             "score": None if score is None else float(score)}
            for rank, (row, item_id, title, split, label, distance, score) in enumerate(columns, start=1)]
    return SearchResult("", hits, seconds, len(rows), method)


def cosines(tfidf, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(S,) float64 dot products of CSR rows ``rows`` (S,) with a dense (V,) query: the cosines, as the
    rows and the query are L2-normalised. Gathers the rows' entries straight from the CSR arrays
    (a shortlist's few thousand), rather than slicing a CSR matrix (a ms of scipy overhead a query)."""
    starts = tfidf.indptr[rows].astype(np.int64)
    lengths = tfidf.indptr[rows + 1] - starts
    owner = np.repeat(np.arange(len(rows)), lengths)  # (E,) which row each gathered entry belongs to
    at = np.arange(len(owner)) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    products = tfidf.data[at] * query[tfidf.indices[at]]
    return np.bincount(owner, weights=products, minlength=len(rows))


def _dense_row(tfidf, row: int) -> np.ndarray:
    """Row ``row`` of a CSR matrix as a dense (V,) float32 vector."""
    start, stop = tfidf.indptr[row], tfidf.indptr[row + 1]
    dense = np.zeros(tfidf.shape[1], np.float32)
    dense[tfidf.indices[start:stop]] = tfidf.data[start:stop]
    return dense


def candidates(index: SearchIndex, bits: np.ndarray, k: int, radius: int | None, shortlist: int | None,
               exclude: int = -1, *, ordered: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """The shortlist for one query's (1, C) bits or (1, W) words: rows (S,), distances (S,), nearest first.

    With an address table (C <= 32): every item within ``radius`` (default
    2), extended by the nearest items outside it while there are fewer than
    ``shortlist`` (default 10 k): a sparse address space's ball may hold only
    a few items, too few for re-ranking to choose among (20 Newsgroups, 32
    bits: 11 on average; p@10 after re-ranking 0.456 against 0.559 with 100).
    Otherwise the ``shortlist`` (default 10 k) nearest codes. ``exclude`` (a
    row, or -1) is left out.

    ``ordered=False`` (re-ranking reorders the shortlist anyway) may give
    the same rows in another order among equal distances: it takes the
    ``shortlist`` nearest codes first, and when the last of them lies outside
    the radius those are exactly the ball and its extension, so the ball
    lookup is skipped (0.45 of 1.1 CPU ms a query on 100k documents, where
    a radius-2 ball of 32-bit codes is nearly always smaller than 100).
    """
    use_ball = index.hash.address is not None
    size = min(10 * k if shortlist is None else max(int(shortlist), k), len(index) - (exclude >= 0))
    if radius is not None and not use_ball:
        raise DulError(f"--radius needs codes of up to {MAX_KEY_BITS} bits (this index holds {index.n_bits}): "
                       f"leave --radius out to search by k nearest codes")
    if use_ball:
        radius = DEFAULT_RADIUS if radius is None else radius
        if not ordered and 0 <= radius:
            rows, distances = _nearest(index, bits, size, exclude)
            inside = int(np.count_nonzero(distances <= radius))
            if inside < len(rows):  # the ball holds fewer than `size`: all of it is among these
                return rows, distances, f"{inside} within Hamming radius {radius} + {len(rows) - inside} " \
                    "nearest outside it"
        _, rows, distances = hash_ball(index.hash, bits, min(radius, index.n_bits))
        rows, distances = _without(rows, distances.astype(np.int64), exclude)
        method = f"{len(rows)} within Hamming radius {radius}"
        if len(rows) < size:
            more, more_d = _nearest(index, bits, size, exclude)
            fresh = ~np.isin(more, rows)
            rows, distances = np.concatenate([rows, more[fresh]]), np.concatenate([distances, more_d[fresh]])
            method += f" + {int(fresh.sum())} nearest outside it"
        return rows, distances, method
    rows, distances = _nearest(index, bits, size, exclude)
    return rows, distances, f"{len(rows)} nearest codes"


def _nearest(index: SearchIndex, bits: np.ndarray, count: int, exclude: int) -> tuple[np.ndarray, np.ndarray]:
    rows, distances = hash_knn(index.hash, bits, count + (exclude >= 0))
    return _without(rows[0], distances[0].astype(np.int64), exclude)


def _without(rows: np.ndarray, distances: np.ndarray, exclude: int) -> tuple[np.ndarray, np.ndarray]:
    keep = rows != exclude
    return rows[keep].astype(np.int64), distances[keep]


def format_result(index: SearchIndex, result: SearchResult) -> str:
    """A readable table: the query, one row per hit, and the time taken."""
    header = f"query: {result.query!r}" if result.words else f"query: {result.query}"
    if result.words:
        header += f" -> words {', '.join(result.words[:8])}{' ...' if len(result.words) > 8 else ''}"
    header += f"\n{index.n_bits}-bit codes, {len(index)} items; shortlist: {result.method}"
    table = [("rank", "dist", "score", "label", "id", "title")]
    table += [(str(h["rank"]), str(h["distance"]), "-" if h["score"] is None else f"{h['score']:.3f}",
               h["label"], h["id"], _short(h["title"], 60)) for h in result.hits]
    if not any(h["title"] for h in result.hits):  # images: no titles
        table = [row[:-1] for row in table]
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    lines = ["  ".join(v.rjust(w) if c < 3 else v.ljust(w) for c, (v, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    footer = f"{len(result.hits)} results in {result.seconds * 1e3:.1f} ms"
    return "\n".join([header, *lines, footer])


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
