"""Bag-of-words count vectors, as the semantic-hashing papers use them.

Salakhutdinov & Hinton (2009, "Semantic hashing") model each document by the
counts of the 2000 most frequent words of the training set (word *counts*,
not TF-IDF; the constrained Poisson / replicated-softmax input layer needs
counts). Here:

- ``tokenize``: lowercase the text, take every maximal run of two or more
  ASCII letters (``TOKEN_PATTERN`` = ``[a-z][a-z]+``; digits, punctuation,
  ``_`` and non-ASCII letters separate tokens, one-letter runs are dropped),
  then drop ``STOP_WORDS`` (scikit-learn's ENGLISH_STOP_WORDS, 318 words).
  No stemming. ``CountVectorizer(token_pattern=TOKEN_PATTERN)`` tokenises
  the same way.
- ``build_vocabulary``: the ``size`` words with the largest total count over
  the given (training) documents, ranked by count, ties broken
  alphabetically; returned most frequent first. scikit-learn's
  ``max_features`` ranks the same way (total term count).
- ``count_vectors``: a CSR int32 (N, V) matrix of counts over the vocabulary.

On disk a split is one Parquet file with columns ``id`` string (e.g.
``sci.space/61116``), ``label`` int64, ``title`` string (shown beside search
results) and ``indices``/``counts`` list<int32>: each row's nonzero columns,
ascending, and their counts (a CSR row). The schema metadata holds
``vocabulary_size`` and ``vocabulary`` (JSON list). No timestamps: a re-run
writes identical bytes.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse

from components.errors import DulError
from components.io import atomic_path

TOKEN_PATTERN = r"[a-z][a-z]+"
VOCABULARY_SIZE = 2000
ROW_GROUP_SIZE = 10_000
COLUMNS = ("id", "label", "title", "indices", "counts")
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_INT32_MAX = np.iinfo(np.int32).max


def tokenize(text: str, stop_words: frozenset[str] | None = None) -> list[str]:
    """The words of ``text`` in order: lowercased runs of 2+ ASCII letters, minus
    ``stop_words`` (default ``STOP_WORDS``)."""
    stop_words = _stop_words() if stop_words is None else stop_words
    return [token for token in _TOKEN_RE.findall(text.lower()) if token not in stop_words]


@functools.cache
def _stop_words() -> frozenset[str]:
    # imported on first use: scikit-learn takes 0.5 s to import, which every
    # training worker (components.data) would otherwise pay
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def __getattr__(name: str):
    if name == "STOP_WORDS":  # scikit-learn's ENGLISH_STOP_WORDS, 318 words
        return _stop_words()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_vocabulary(token_lists: Iterable[Sequence[str]], size: int = VOCABULARY_SIZE) -> list[str]:
    """The ``size`` words of largest total count, most frequent first; ties alphabetical.

    Pass the *training* documents only, so that no test word leaks into the
    features. Fewer than ``size`` distinct words gives them all.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DulError(f"vocabulary size is {size!r}; it must be a positive integer (e.g. 2000)")
    totals: Counter[str] = Counter()
    for tokens in token_lists:
        totals.update(tokens)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:size]]


def count_vectors(token_lists: Iterable[Sequence[str]], vocabulary: Sequence[str]) -> scipy.sparse.csr_matrix:
    """Counts of each vocabulary word per document: CSR int32 (N, V), sorted indices.

    Tokens outside ``vocabulary`` are ignored.
    """
    index = _vocabulary_index(vocabulary)
    columns: list[int] = []
    indptr = [0]
    for tokens in token_lists:
        columns.extend(index[token] for token in tokens if token in index)
        indptr.append(len(columns))
    ones = np.ones(len(columns), dtype=np.int32)
    shape = (len(indptr) - 1, len(index))
    matrix = scipy.sparse.csr_matrix((ones, np.array(columns, dtype=np.int64), np.array(indptr)), shape=shape)
    matrix.sum_duplicates()  # one entry per (document, word), columns ascending
    return matrix


def _vocabulary_index(vocabulary: Sequence[str]) -> dict[str, int]:
    index = {word: column for column, word in enumerate(vocabulary)}
    if len(index) != len(vocabulary):
        repeated = next(word for word, count in Counter(vocabulary).items() if count > 1)
        raise DulError(f"the vocabulary holds {repeated!r} more than once; build it with build_vocabulary")
    return index


def write_bow_split(
    path: str | os.PathLike,
    ids: Sequence[str],
    labels: np.ndarray,
    counts: scipy.sparse.spmatrix,
    titles: Sequence[str],
    vocabulary: Sequence[str],
    label_sets: Sequence[Sequence[int]] | None = None,
) -> None:
    """Write one bag-of-words split to ``path`` (Parquet, atomically; see the module docstring).
    ``label_sets``: a multi-label corpus's every label per document, written as the ``labels``
    list column beside ``label`` (then each document's first label, or -1)."""
    counts = _canonical(counts)
    labels = np.asarray(labels)
    n_docs, n_words = counts.shape
    if label_sets is not None and len(label_sets) != n_docs:
        raise ValueError(f"{len(label_sets)} label sets but {n_docs} rows of counts")
    if not (len(ids) == len(labels) == len(titles) == n_docs):
        raise ValueError(f"{len(ids)} ids, {len(labels)} labels, {len(titles)} titles but {n_docs} rows of counts")
    if n_words != len(vocabulary):
        raise ValueError(f"counts have {n_words} columns but the vocabulary {len(vocabulary)} words")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    _vocabulary_index(vocabulary)
    offsets = pa.array(counts.indptr.astype(np.int32))
    table = pa.table(
        {
            "id": pa.array(list(ids), pa.string()),
            "label": pa.array(labels.astype(np.int64)),
            "title": pa.array(list(titles), pa.string()),
            "indices": pa.ListArray.from_arrays(offsets, pa.array(counts.indices.astype(np.int32))),
            "counts": pa.ListArray.from_arrays(offsets, pa.array(counts.data.astype(np.int32))),
            **({} if label_sets is None else
               {"labels": pa.array([sorted({int(label) for label in row}) for row in label_sets], pa.list_(pa.int32()))}),
        }
    ).replace_schema_metadata({"vocabulary_size": str(n_words), "vocabulary": json.dumps(list(vocabulary))})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")


def _canonical(counts: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
    """A CSR int32 copy: sorted indices, no duplicates, no stored zeros; counts must be whole and >= 0."""
    matrix = scipy.sparse.csr_matrix(counts, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    data = matrix.data
    if data.size and (data.min() < 0 or data.max() > _INT32_MAX or not np.array_equal(data, np.rint(data))):
        raise ValueError("counts must be whole numbers in [0, 2**31)")
    if matrix.nnz > _INT32_MAX:
        raise ValueError(f"{matrix.nnz} nonzero counts do not fit list<int32> offsets")
    matrix.data = data.astype(np.int32)
    return matrix


def read_bow_split(path: str | os.PathLike) -> tuple[scipy.sparse.csr_matrix, np.ndarray, list[str]]:
    """Load a split written by ``write_bow_split``: counts CSR int32 (N, V), labels int64 (N,), ids.

    The matrix is built from the Arrow list offsets and values directly (no
    loop over rows). A file that is not such a split (negative or
    non-integer counts, indices out of range or unsorted, missing columns)
    is a DulError naming it.
    """
    table = _read(path, ["id", "label", "indices", "counts"])
    n_words = _vocabulary_size(table.schema.metadata or {}, path)
    counts = counts_matrix(table, n_words, path)
    label = table.column("label")
    if not pa.types.is_integer(label.type) or label.null_count:
        raise DulError(f"{path}: column 'label' is {label.type} with {label.null_count} nulls; write the split again")
    ids = table.column("id").to_pylist()
    return counts, label.to_numpy().astype(np.int64, copy=False), ids


def counts_matrix(table: pa.Table, n_words: int, path) -> scipy.sparse.csr_matrix:
    """The ``indices``/``counts`` columns of ``table`` as a checked CSR int32 (rows, n_words):
    whole non-negative counts below 2**31, indices in range, ascending and unique per row."""
    indptr, indices = _list_column(table, "indices", path)
    count_indptr, values = _list_column(table, "counts", path)
    if not np.array_equal(indptr, count_indptr):
        raise DulError(f"{path}: rows of 'indices' and 'counts' differ in length; write the split again")
    if values.size and values.min() < 0:
        raise DulError(f"{path}: negative counts (min {values.min()}); write the split again")
    if values.size and values.max() > _INT32_MAX:
        raise DulError(f"{path}: counts over 2**31 - 1 (max {values.max()}); write the split again")
    if indices.size and (indices.min() < 0 or indices.max() >= n_words):
        raise DulError(f"{path}: word indices outside [0, {n_words}) (max {indices.max()}); write the split again")
    shape = (table.num_rows, n_words)
    counts = scipy.sparse.csr_matrix((values.astype(np.int32), indices.astype(np.int32), indptr), shape=shape)
    if not counts.has_canonical_format:
        raise DulError(f"{path}: a row's word indices are not ascending and unique; write the split again")
    return counts


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """The vocabulary stored in a split's schema metadata (column j of the counts is word j)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        vocabulary = json.loads(metadata[b"vocabulary"])
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        raise DulError(f"{path} holds no readable vocabulary ({error}); write the split again") from error
    if len(vocabulary) != _vocabulary_size(metadata, path):
        raise DulError(f"{path}: vocabulary and vocabulary_size disagree; write the split again")
    return vocabulary


def read_titles(path: str | os.PathLike) -> list[str]:
    """Each document's title, in row order."""
    return _read(path, ["title"]).column("title").to_pylist()


def _read(path: str | os.PathLike, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, KeyError) as error:
        raise DulError(f"{path} is not a readable bag-of-words split ({error}); write it again") from error


def _vocabulary_size(metadata: dict, path) -> int:
    try:
        size = int(metadata[b"vocabulary_size"])
    except (KeyError, ValueError) as error:
        raise DulError(f"{path}: no vocabulary_size in the schema metadata; not a bag-of-words split") from error
    if size < 0:
        raise DulError(f"{path}: vocabulary_size is {size}; write the split again")
    return size


def _list_column(table: pa.Table, name: str, path) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column as (row offsets int64 (N+1,) from 0, flat values (nnz,))."""
    column = table.column(name)
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise DulError(f"{path}: column '{name}' is {column.type}, not a list of integers; write the split again")
    if not pa.types.is_integer(column.type.value_type):
        raise DulError(f"{path}: column '{name}' holds {column.type.value_type}, not integers; write the split again")
    if table.num_rows == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    array = column.combine_chunks()
    values = array.flatten()
    if array.null_count or values.null_count:
        raise DulError(f"{path}: column '{name}' holds nulls; write the split again")
    offsets = array.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], values.to_numpy()


def read_doc_ids(path: str | os.PathLike) -> list[str]:
    """Each document's id, in row order (the ``id`` column alone: no counts read)."""
    return _read(path, ["id"]).column("id").to_pylist()
