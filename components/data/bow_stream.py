"""Bag-of-words splits for corpora larger than memory: written and read in batches.

``write_bow_stream`` makes two passes over a corpus given as a *factory*
``records(splits) -> iterable of (split, (id, labels, title, tokens))``
(called once per pass, so it re-opens its files; it may skip files that hold
no document of ``splits``):

1. count the tokens of the ``vocabulary_split`` documents and keep the
   ``vocab_size`` most frequent (``text.build_vocabulary``: by total count,
   ties alphabetical);
2. write each split's counts over that vocabulary with pyarrow's
   ``ParquetWriter``, ``row_group_size`` documents at a time.

Memory is one row group plus the token counter, whatever the corpus size.
Output: a folder (written atomically, whole or not at all) with **one file
per split**, ``<split>.parquet``, in row groups; the columns and metadata of
``components.data.text``'s BoW split (``id``, ``label``, ``title``,
``indices``, ``counts``; ``vocabulary_size``, ``vocabulary``), so
``text.read_bow_split`` reads a split that fits in memory. Added: metadata
``label_names`` (JSON) and ``multi_label``; for multi-label corpora a column
``labels`` list<int32> (sorted label indices, at least one) and ``label`` =
the smallest of them.

``iter_bow_batches(path, batch_size)`` streams a split back (``ParquetFile.
iter_batches``): counts as CSR float32 (b, V) and labels, int64 (b,), or with
``multi_label=True`` a bool (b, L) indicator matrix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, repeat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse

from components.data.text import (
    ROW_GROUP_SIZE,
    VOCABULARY_SIZE,
    _list_column,
    _vocabulary_size,
    build_vocabulary,
    counts_matrix,
)
from components.errors import DulError
from components.io import atomic_path

# (id, label or labels, title, tokens)
Record = tuple[str, "int | Sequence[int]", str, Sequence[str]]
Records = Callable[[set[str]], Iterable[tuple[str, Record]]]


def write_bow_stream(
    out_dir: str | os.PathLike,
    records: Records,
    *,
    label_names: Sequence[str],
    multi_label: bool = False,
    vocab_size: int = VOCABULARY_SIZE,
    splits: Sequence[str] = ("train", "test"),
    vocabulary_split: str = "train",
    row_group_size: int = ROW_GROUP_SIZE,
) -> dict:
    """Write ``<split>.parquet`` per split into ``out_dir``; return a summary.

    Summary: ``{"vocabulary_size", "splits": {split: {"count", "n_empty"}}}``,
    ``n_empty`` counting documents with no vocabulary word (kept, so every
    document keeps its row).
    """
    train_tokens = (rec[3] for split, rec in records({vocabulary_split}) if split == vocabulary_split)
    vocabulary = build_vocabulary(train_tokens, vocab_size)
    if not vocabulary:
        raise DulError(f"the {vocabulary_split} documents hold no tokens; check the source files ({out_dir} not written)")
    schema = _schema(vocabulary, label_names, multi_label)
    index = {word: column for column, word in enumerate(vocabulary)}
    summary = {"vocabulary_size": len(vocabulary), "splits": {}}
    with atomic_path(out_dir, is_dir=True) as tmp:
        writers = {split: _Split(tmp / f"{split}.parquet", schema, index, len(label_names)) for split in splits}
        try:
            for split, record in records(set(splits)):
                writers[split].add(record, row_group_size)
            for writer in writers.values():
                writer.flush()
        finally:
            for writer in writers.values():
                writer.writer.close()
        summary["splits"] = {split: writer.summary() for split, writer in writers.items()}
    return summary


def _schema(vocabulary: Sequence[str], label_names: Sequence[str], multi_label: bool) -> pa.Schema:
    fields = [
        ("id", pa.string()),
        ("label", pa.int64()),
        ("title", pa.string()),
        ("indices", pa.list_(pa.int32())),
        ("counts", pa.list_(pa.int32())),
    ] + ([("labels", pa.list_(pa.int32()))] if multi_label else [])
    metadata = {
        "vocabulary_size": str(len(vocabulary)),
        "vocabulary": json.dumps(list(vocabulary)),
        "label_names": json.dumps(list(label_names)),
        "multi_label": json.dumps(multi_label),
    }
    return pa.schema(fields, metadata=metadata)


class _Split:
    """One split's ParquetWriter and its buffer of up to a row group of records."""

    def __init__(self, path: Path, schema: pa.Schema, index: dict[str, int], n_labels: int):
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.schema, self.index, self.n_labels = schema, index, n_labels
        self.multi_label = "labels" in schema.names
        self.buffer: list[Record] = []
        self.count = self.n_empty = 0

    def add(self, record: Record, row_group_size: int) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= row_group_size:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = self._table(self.buffer)
            self.writer.write_table(table, row_group_size=len(self.buffer))
            self.count += len(self.buffer)
            self.buffer = []

    def summary(self) -> dict:
        return {"count": self.count, "n_empty": self.n_empty}

    def _table(self, batch: list[Record]) -> pa.Table:
        ids, labels, titles, token_lists = zip(*batch)
        counts = batch_counts(token_lists, self.index)
        self.n_empty += int(np.count_nonzero(np.diff(counts.indptr) == 0))
        offsets = pa.array(counts.indptr.astype(np.int32))
        columns = {
            "id": pa.array(ids, pa.string()),
            "label": pa.array(self._first_labels(labels), pa.int64()),
            "title": pa.array(titles, pa.string()),
            "indices": pa.ListArray.from_arrays(offsets, pa.array(counts.indices, pa.int32())),
            "counts": pa.ListArray.from_arrays(offsets, pa.array(counts.data, pa.int32())),
        }
        if self.multi_label:
            columns["labels"] = pa.array([sorted(set(label_list)) for label_list in labels], pa.list_(pa.int32()))
        return pa.table(columns, schema=self.schema)

    def _first_labels(self, labels) -> list[int]:
        firsts = [min(label_list) if label_list else -1 for label_list in labels] if self.multi_label else labels
        for label in firsts:
            if isinstance(label, bool) or not 0 <= int(label) < self.n_labels:
                raise ValueError(f"label {label!r} outside [0, {self.n_labels}) (a multi-label record needs >= 1)")
        return [int(label) for label in firsts]


def batch_counts(token_lists: Sequence[Sequence[str]], index: dict[str, int]) -> scipy.sparse.csr_matrix:
    """Counts of the vocabulary words (``index``: word -> column) per document: CSR int32 (b, V), canonical."""
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    flat = list(chain.from_iterable(token_lists))
    columns = np.fromiter(map(index.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
    rows = np.repeat(np.arange(len(token_lists)), lengths)
    keep = columns >= 0
    ones = np.ones(int(keep.sum()), dtype=np.int32)
    matrix = scipy.sparse.csr_matrix((ones, (rows[keep], columns[keep])), shape=(len(token_lists), len(index)))
    matrix.sum_duplicates()
    return matrix


def iter_bow_batches(
    path: str | os.PathLike, batch_size: int = 1000, *, multi_label: bool = False
) -> Iterator[tuple[scipy.sparse.csr_matrix, np.ndarray]]:
    """Stream a BoW split: ``(counts CSR float32 (b, V), labels)`` per batch of up to ``batch_size`` rows.

    ``labels``: int64 (b,) from ``label``; with ``multi_label=True`` a bool
    (b, L) matrix from ``labels`` (L = len of the ``label_names`` metadata).
    Each batch is checked like ``text.read_bow_split`` checks a whole split.
    """
    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.schema_arrow.metadata or {}
        columns = ["label", "indices", "counts"] + (["labels"] if multi_label else [])
        n_words = _vocabulary_size(metadata, path)
        n_labels = len(json.loads(metadata[b"label_names"])) if multi_label else 0
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            table = pa.Table.from_batches([batch])
            yield _counts(table, n_words, path), _labels(table, n_labels, path, multi_label)
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        raise DulError(f"{path} is not a readable bag-of-words split ({error!r}); write it again") from error


def _counts(table: pa.Table, n_words: int, path) -> scipy.sparse.csr_matrix:
    return counts_matrix(table, n_words, path).astype(np.float32)


def _labels(table: pa.Table, n_labels: int, path, multi_label: bool) -> np.ndarray:
    if not multi_label:
        label = table.column("label")
        if not pa.types.is_integer(label.type) or label.null_count:
            raise DulError(f"{path}: column 'label' is {label.type} with {label.null_count} nulls; write the split again")
        return label.to_numpy().astype(np.int64, copy=False)
    indptr, values = _list_column(table, "labels", path)
    if values.size and (values.min() < 0 or values.max() >= n_labels):
        raise DulError(f"{path}: label indices outside [0, {n_labels}); write the split again")
    rows = np.repeat(np.arange(table.num_rows), np.diff(indptr))
    matrix = np.zeros((table.num_rows, n_labels), dtype=bool)
    matrix[rows, values] = True
    return matrix


def in_memory_records(splits: dict[str, dict], tokenize: Callable[[str], list[str]]) -> Records:
    """A ``records`` factory over loaded splits ``{split: {"ids", "labels", "titles", "texts"}}``
    (as ``load_reuters`` / ``load_20newsgroups`` return them), tokenising each text per pass."""

    def records(wanted: set[str]) -> Iterator[tuple[str, Record]]:
        for split in sorted(wanted & set(splits)):
            part = splits[split]
            for record in zip(part["ids"], part["labels"], part["titles"], map(tokenize, part["texts"])):
                yield split, record

    return records
