"""The search index folder: everything ``dul search`` needs to answer a query.

Semantic hashing (Salakhutdinov & Hinton 2009) finds a query's neighbours by
its binary code and re-ranks that shortlist by TF-IDF cosine similarity. The
index stage writes one self-contained folder (N items, C bits, V words):

    meta.json                   format, kind, dataset, n_bits, n_items, label names, files
    hash/                       ``hamming.write_hash_index`` of the codes (address table or MIH)
    thresholds.npy  (C,) float32     the bits are ``encode(x) > thresholds``
    ids.npy         (N,) <U          document id (``sci.space/61116``; ``test/42`` for images)
    titles.npy      (N,) <U          title (first line) shown beside a result
    labels.npy      (N,) int64       label of each item
    splits.npy      (N,) <U10        train, validation or test
    encoder.pt                        the encoder's checkpoint (any family with codes; ``weights_only`` loadable)

and for bag-of-words data (``kind`` "bow") also

    vocabulary.json                   the V words, column j of the counts is word j
    idf.npy         (V,) float32      smooth IDF of the training documents
    tfidf.{indptr,indices,data}.npy   each item's L2-normalised TF-IDF row (CSR)

IDF is scikit-learn's smooth IDF, 1 + log((1 + N_train) / (1 + df)), the one
the TF-IDF baseline uses. ``meta.json``'s ``query_length`` is the median
word count of the training documents: a shorter free-text query is encoded
as a document of that length with the query's word proportions (engine.py). Nothing is pickled: arrays load with
``allow_pickle=False`` (memory-mapped), the encoder with ``weights_only=True``.
The folder appears whole or not at all; a missing, truncated or mismatched
file is a DulError that names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from components.data.text import tokenize
from components.errors import DulError
from components.io import atomic_path
from components.models import registry
from components.models.base import Encoder
from components.retrieval.address import table_problem
from components.retrieval.folder import open_arrays, read_json, read_meta
from components.retrieval.hamming import HashIndex, load_hash_index, write_hash_index

SEARCH_FORMAT = "dul-search-index/1"
TITLE_CHARS = 120
_FIX = "rebuild it with `dvc repro index`"


@dataclass(frozen=True, eq=False)
class SearchIndex:
    """A loaded search folder; arrays as in the module docstring (``tfidf`` a CSR matrix)."""

    folder: Path
    meta: dict
    hash: HashIndex
    model: Encoder
    thresholds: np.ndarray
    ids: np.ndarray
    titles: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    vocabulary: list[str] | None = None
    idf: np.ndarray | None = None
    tfidf: scipy.sparse.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_bits(self) -> int:
        return self.hash.n_bits

    @property
    def is_text(self) -> bool:
        return self.meta.get("kind") == "bow"

    @cached_property
    def word_columns(self) -> dict[str, int]:
        """Each vocabulary word's column (built once: a query looks its words up here)."""
        return {word: column for column, word in enumerate(self.vocabulary or ())}

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Each id's row, the first where an id repeats (built once: a --doc query looks it up here)."""
        rows: dict[str, int] = {}
        for row, item_id in enumerate(self.ids.tolist()):
            rows.setdefault(str(item_id), row)
        return rows

    def label_name(self, label: int) -> str:
        names = self.meta.get("label_names") or []
        return str(names[label]) if 0 <= label < len(names) else str(label)


def smooth_idf(train_counts) -> np.ndarray:
    """(N, V) counts -> (V,) float32 IDF, 1 + log((1 + N) / (1 + df)) (scikit-learn's smooth IDF)."""
    counts = scipy.sparse.csr_matrix(train_counts)
    df = np.bincount(counts.indices[counts.data > 0], minlength=counts.shape[1])
    return (1 + np.log((1 + counts.shape[0]) / (1 + df))).astype(np.float32)


def tfidf_rows(counts, idf: np.ndarray) -> scipy.sparse.csr_matrix:
    """(N, V) counts -> (N, V) float32 CSR of counts * idf, each row L2-normalised (zero rows stay 0)."""
    weighted = scipy.sparse.csr_matrix(counts, dtype=np.float32).multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    weighted = scipy.sparse.diags(1 / np.where(norms > 0, norms, 1)) @ weighted
    weighted = scipy.sparse.csr_matrix(weighted, dtype=np.float32)
    weighted.sort_indices()
    return weighted


def write_search_index(folder, *, model: Encoder, thresholds, bits, ids, titles, labels, splits,
                       meta: dict, counts=None, vocabulary=None) -> dict:
    """Write the search folder atomically; returns the hash index's stats.

    ``bits`` (N, C) bool are the items' codes; ``counts`` (N, V) and
    ``vocabulary`` are given for bag-of-words data (``meta["kind"] == "bow"``),
    the IDF being fitted on the rows whose split is "train".
    """
    bits = np.asarray(bits, dtype=bool)
    n_items = len(bits)
    arrays = {"thresholds": np.asarray(thresholds, np.float32), "ids": np.asarray([str(i) for i in ids]),
              "titles": np.asarray([_title(t) for t in titles]), "labels": np.asarray(labels, np.int64),
              "splits": np.asarray(splits, "<U10")}
    for name in ("ids", "titles", "labels", "splits"):
        if arrays[name].shape != (n_items,):
            raise ValueError(f"{name} must be ({n_items},), got {arrays[name].shape}")
    if arrays["thresholds"].shape != (model.code_size,) or bits.shape[1] != model.code_size:
        raise ValueError(f"bits {bits.shape} and thresholds {arrays['thresholds'].shape} do not match the "
                         f"{model.code_size}-bit encoder")
    if counts is not None:
        counts = scipy.sparse.csr_matrix(counts)
        if counts.shape != (n_items, len(vocabulary)) or model.n_inputs != len(vocabulary):
            raise ValueError(f"counts {counts.shape}, {len(vocabulary)} words and a {model.n_inputs}-input encoder")
        train = counts[arrays["splits"] == "train"]
        idf = smooth_idf(train)
        rows = tfidf_rows(counts, idf)
        meta = {**meta, "query_length": float(np.median(np.asarray(train.sum(axis=1)).ravel())) if train.shape[0] else 0.0}
        arrays |= {"idf": idf, "tfidf.indptr": rows.indptr.astype(np.int64),
                   "tfidf.indices": rows.indices.astype(np.int32), "tfidf.data": rows.data}
    files = {f"{name}.npy": {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()}
    record = {**meta, "format": SEARCH_FORMAT, "n_bits": model.code_size, "n_items": n_items,
              "vocabulary_size": None if vocabulary is None else len(vocabulary), "files": files}
    with atomic_path(folder, is_dir=True) as tmp:
        stats = write_hash_index(tmp / "hash", bits)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        if vocabulary is not None:
            (tmp / "vocabulary.json").write_text(json.dumps(list(vocabulary)) + "\n")
        torch.save(model.to_checkpoint(), tmp / "encoder.pt")
        (tmp / "meta.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return stats


def _title(text) -> str:
    """The first non-empty line, at most TITLE_CHARS characters."""
    line = next((line.strip() for line in str(text or "").splitlines() if line.strip()), "")
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def load_search_index(folder) -> SearchIndex:
    """Open the folder written by ``write_search_index``, checking every file (DulError)."""
    folder = Path(folder)
    meta = read_meta(folder, SEARCH_FORMAT, "search index")
    arrays = open_arrays(folder, meta)
    for name in ("thresholds", "ids", "titles", "labels", "splits"):
        if name not in arrays:
            raise DulError(f"{folder}/meta.json does not list {name}.npy: the index is incomplete; {_FIX}")
    hash_index = load_hash_index(folder / "hash")
    _check_hash(folder / "hash", hash_index)
    model = _load_encoder(folder / "encoder.pt")
    vocabulary = _read_vocabulary(folder, meta) if meta.get("kind") == "bow" else None
    tfidf = None
    if vocabulary is not None:
        tfidf = _tfidf(folder, arrays, meta["n_items"], len(vocabulary))
    index = SearchIndex(folder, meta, hash_index, model, arrays["thresholds"], arrays["ids"], arrays["titles"],
                        arrays["labels"], arrays["splits"], vocabulary, arrays.get("idf"), tfidf)
    _check(index)
    _warm_up(index)
    return index


def _warm_up(index: SearchIndex) -> None:
    """Pay the one-time costs here, so a query's reported time is the query's:
    the tokenizer's stop words (they import scikit-learn) and torch's first
    forward pass took 4 s of the first query's 4.4 s on a loaded 2-core machine."""
    if index.vocabulary is not None:
        tokenize("")
        index.word_columns  # noqa: B018 (built here, once)
    with torch.no_grad():
        index.model.encode(torch.zeros(1, index.model.n_inputs))


def _load_encoder(path: Path) -> Encoder:
    if not path.is_file():
        raise DulError(f"{path} is missing: the index has no encoder to encode queries with; {_FIX}")
    try:
        model = registry.load(path)
    except DulError as error:
        raise DulError(f"{error}: {_FIX}") from None
    if not isinstance(model, Encoder):
        raise DulError(f"{path} holds a {model.family} model, which has no codes: {_FIX}")
    return model.eval()


def _read_vocabulary(folder: Path, meta: dict) -> list[str]:
    path = folder / "vocabulary.json"
    vocabulary = read_json(path)
    if not isinstance(vocabulary, list) or len(vocabulary) != meta.get("vocabulary_size"):
        raise DulError(f"{path} does not hold the {meta.get('vocabulary_size')} words meta.json says: {_FIX}")
    return vocabulary


def _tfidf(folder: Path, arrays: dict, n_items: int, n_words: int) -> scipy.sparse.csr_matrix:
    parts = [arrays.get(name) for name in ("tfidf.data", "tfidf.indices", "tfidf.indptr")]
    data, indices, indptr = parts
    if any(p is None for p in parts) or arrays.get("idf") is None or indptr.shape != (n_items + 1,) \
            or int(indptr[-1]) != len(data) or len(indices) != len(data) or arrays["idf"].shape != (n_words,):
        raise DulError(f"{folder}/tfidf.*.npy and idf.npy do not fit {n_items} items of {n_words} words: {_FIX}")
    if indptr[0] != 0 or np.any(indptr[1:] < indptr[:-1]):
        raise DulError(f"{folder}/tfidf.indptr.npy does not rise from 0 to {len(data)}: the index is damaged; {_FIX}")
    if len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < n_words:
        raise DulError(f"{folder}/tfidf.indices.npy holds words outside 0..{n_words - 1}: the index is damaged; "
                       f"{_FIX}")
    return scipy.sparse.csr_matrix((data, indices, indptr), shape=(n_items, n_words))


def _check_hash(folder: Path, index: HashIndex) -> None:
    """Every code fits n_bits, and every table's lookups stay in range (``table_problem``)."""
    spare = 64 * index.words.shape[1] - index.n_bits
    if spare and len(index.words) and np.any(index.words[:, -1] & np.uint64((1 << spare) - 1)):
        raise DulError(f"{folder}/words.npy has bits set beyond the {index.n_bits}-bit codes: the index is "
                       f"damaged; {_FIX}")
    tables = {"address": index.address} if index.address is not None else {}
    tables |= {f"mih{i}": table for i, table in enumerate(index.mih.tables)} if index.mih is not None else {}
    for prefix, table in tables.items():
        problem = table_problem(table, len(index))
        if problem:
            raise DulError(f"{folder}/{prefix}.{problem[0]}.npy is out of range ({problem[1]}): the index is "
                           f"damaged; {_FIX}")


def _check(index: SearchIndex) -> None:
    """Every part agrees on N, C and V, and the encoder is the one the codes came from."""
    folder, n_items, n_bits = index.folder, len(index.ids), index.meta["n_bits"]
    if index.hash.n_bits != n_bits or len(index.hash) != n_items or index.meta["n_items"] != n_items:
        raise DulError(f"{folder}/hash holds {len(index.hash)} {index.hash.n_bits}-bit codes but meta.json "
                       f"says {index.meta['n_items']} {n_bits}-bit: {_FIX}")
    for name in ("titles", "labels", "splits"):
        if getattr(index, name).shape != (n_items,):
            raise DulError(f"{folder}/{name}.npy does not have one entry per item ({n_items}): {_FIX}")
    if index.thresholds.shape != (n_bits,):
        raise DulError(f"{folder}/thresholds.npy has {index.thresholds.shape} entries, not {n_bits}: {_FIX}")
    if index.model.code_size != n_bits:
        raise DulError(f"{folder}/encoder.pt makes {index.model.code_size}-bit codes but the index holds "
                       f"{n_bits}-bit codes (built with another model): {_FIX}")
    if index.vocabulary is not None and index.model.n_inputs != len(index.vocabulary):
        raise DulError(f"{folder}/encoder.pt reads {index.model.n_inputs} words but the index's vocabulary has "
                       f"{len(index.vocabulary)} (built with another vocabulary): {_FIX}")
