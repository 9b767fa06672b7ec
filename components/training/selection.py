"""Which fine-tuning epoch to keep: ``finetune.keep``.

``last`` keeps the net after the last epoch. ``best_precision`` keeps the
epoch (0 = the pretrained net, before any fine-tuning) whose codes retrieve
best: the validation documents query the training documents, as the index
stage's test queries do, and the score is precision@100 (relevant = shares a
label; components/retrieval/evaluation.py). Binary code layers are compared
by Hamming distance between their median-thresholded bits, linear ones by
cosine between the real-valued codes: what ``index`` ranks by.

Semantic hashing needs this: fine-tuning fits the reconstruction of a noisy
code layer, and past the first epochs that makes the codes worse for
retrieval (README, "Semantic hashing on 20 Newsgroups"). The score is
measured on at most ``MAX_DATABASE`` training rows and ``MAX_QUERIES``
validation rows, the first ones in storage order, so it costs about one
extra validation pass per epoch at any corpus size.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from components.data.ingest import _is_bow, _pixel_bytes, _split_path
from components.data.text import _vocabulary_size, counts_matrix
from components.errors import DulError
from components.retrieval.codes import binarize, fit_thresholds, pack_bits
from components.retrieval.evaluation import label_matrix, retrieval_curves

KEEP_CHOICES = ("last", "best_precision")
MAX_DATABASE, MAX_QUERIES, CUTOFF = 10_000, 2_000, 100


def head_rows(data_dir: str | os.PathLike, split: str, n: int) -> tuple[torch.Tensor, np.ndarray | list]:
    """The first ``n`` rows of a split (fewer if it is shorter): X float32 as
    ``read_split`` gives it, and y int64 (for a multi-label corpus each row's
    list of labels), read without loading the rest."""
    path = _split_path(data_dir, split)
    bow = _is_bow(path)
    columns = ["label", "indices", "counts"] if bow else ["label", "pixels"]
    if bow and "labels" in pq.read_schema(path).names:  # multi-label: a hit shares any label
        columns[0] = "labels"
    try:
        reader = pq.ParquetFile(path)
        batch = next(reader.iter_batches(batch_size=n, columns=columns), None)
    except (pa.ArrowException, OSError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error
    if batch is None:
        raise DulError(f"{path} has no rows; run ingest again")
    table = pa.Table.from_batches([batch])
    if columns[0] == "labels":
        labels = table.column("labels").to_pylist()
    else:
        labels = table.column("label").to_numpy().astype(np.int64, copy=False)
    if bow:
        counts = counts_matrix(table, _vocabulary_size(reader.schema_arrow.metadata or {}, path), path)
        return torch.from_numpy(counts.toarray().astype(np.float32)), labels
    column = table.column("pixels")
    pixels = _pixel_bytes(column.combine_chunks(), column.type.byte_width)
    return torch.from_numpy(pixels.astype(np.float32) / np.float32(255)), labels


class RetrievalScore:
    """precision@100 of a net's codes, validation rows querying training rows."""

    def __init__(self, data_dir: str | os.PathLike):
        self.database, database_labels = head_rows(data_dir, "train", MAX_DATABASE)
        self.queries, query_labels = head_rows(data_dir, "validation", MAX_QUERIES)
        n_labels = 1 + max(max((max(row, default=-1) for row in labels), default=-1) if isinstance(labels, list)
                           else int(labels.max()) for labels in (database_labels, query_labels))
        self.database_labels = label_matrix(database_labels, n_labels)
        self.query_labels = label_matrix(query_labels, n_labels)

    @torch.no_grad()
    def __call__(self, net) -> float:
        device = next(net.parameters()).device
        database = net.encode(self.database.to(device)).cpu().numpy()
        queries = net.encode(self.queries.to(device)).cpu().numpy()
        if net.code_units == "binary":
            thresholds = fit_thresholds(database)
            database, queries = pack_bits(binarize(database, thresholds)), pack_bits(binarize(queries, thresholds))
            metric = "hamming"
        else:
            metric = "cosine"
        cutoff = min(CUTOFF, len(database))
        curves = retrieval_curves(queries, database, self.query_labels, self.database_labels, metric,
                                  np.array([cutoff]))
        return float(curves["precision"][0])
