"""Datasets for dul: fetch, verify, split, store as Parquet, read back.

``ingest(dataset, out_dir, ...)`` turns an image dataset (``digits``,
``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``binarized-mnist``:
the fixed binarization's ``.amat`` files, ``amat``) or a text corpus
(``20newsgroups``, ``reuters21578``, ``rcv1-v2``: bag-of-words) into
``train``/``validation``/``test`` Parquet files and a ``card.json``;
``read_split(out_dir, split)`` gives back ``X`` float32 ((N, H*W*C) pixels
in [0, 1], or (N, V) word counts) and ``y`` int64 (N,; -1 where the
dataset has no labels); ``read_card`` the card. ``item_shape(card)`` is one
item's shape as models see it ((C, H, W) for images, (V,) for text) and
``as_images(X, shape)`` turns flat rows (stored channels last) into
(N, C, H, W). Dispatch and readers: ``components.data.ingest``; formats:
``images``, ``corpora``; sources and pinned checksums: ``sources``,
``fetch``; the IDX reader: ``idx``. Training batches, in memory or
streamed from a split's Parquet file a row group at a time (for corpora
larger than memory): ``components.data.stream`` (imported on its own, as
it needs torch).
"""

from components.data.ingest import (
    DATASETS,
    SPLITS,
    as_images,
    ingest,
    item_shape,
    read_card,
    read_ids,
    read_label_sets,
    read_split,
)

__all__ = ["DATASETS", "SPLITS", "as_images", "ingest", "item_shape", "read_card", "read_ids", "read_label_sets", "read_split"]
