"""Datasets for dul: fetch, verify, split, store as Parquet, read back.

``ingest(dataset, out_dir, ...)`` turns ``digits`` (scikit-learn's 8x8
digits), ``mnist``, ``fashion-mnist`` or ``20newsgroups`` (bag-of-words) into ``train``/``validation``/``test``
Parquet files and a ``card.json``; ``read_split(out_dir, split)`` gives back
``X`` float32 (N, H*W) in [0, 1] and ``y`` int64 (N,); ``read_card``
the card. Formats: ``components.data.ingest``; sources and pinned checksums:
``components.data.sources``; the IDX reader: ``components.data.idx``.
"""

from components.data.ingest import DATASETS, SPLITS, ingest, read_card, read_ids, read_split

__all__ = ["DATASETS", "SPLITS", "ingest", "read_card", "read_ids", "read_split"]
