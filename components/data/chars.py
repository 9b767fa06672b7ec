"""Text as byte sequences: 20 Newsgroups post by post, character by character.

``ingest.representation: chars`` prepares 20 Newsgroups for sequence models
(WaveNet, n-gram models) instead of as bag-of-words counts. The posts and the
splits are those of the bag-of-words ingest (``components.data.corpora``):
the bydate archive, ``remove`` applied (headers, footers, quotes, as
scikit-learn's), validation a seeded ``validation_fraction`` of the training
posts, test the official test posts; every post is kept, empty ones too, so
every id stays.

Symbols are bytes 0-255: a post is its bytes as in the archive (it is read
as latin-1, which maps each byte to one character and back), so the
vocabulary is 256 whatever the text. On disk a split is one Parquet file with
columns ``id`` string, ``label`` int64 and ``text`` large_binary: Arrow keeps
a binary column as one uint8 buffer of every post's bytes plus an int64
offset per post, so reading it back is two array views (``read_sequences``).
The card (``sequence_card``) has ``"kind": "sequence"``, ``shape`` [null]
(one item: a sequence of any length), ``vocabulary_size`` 256 and, per
split, posts and characters.

A sequence model reads a split as one stream (``read_stream``): the posts in
id order, each followed by the end-of-post byte ``END`` (0, which no post of
the bydate archive holds), so a model learns where posts end and a stretch
that crosses a boundary says so. Bits per character are per byte of that
stream, the ``END`` bytes included.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data import fetch, newsgroups
from components.data.corpora_stream import holdout_mask
from components.errors import DulError
from components.io import atomic_path, write_json

END = 0  # the end-of-post byte of a split's stream
VOCABULARY_SIZE = 256  # bytes
ROW_GROUP_SIZE = 2_000  # posts per Parquet row group


def ingest_newsgroups_chars(out_dir, *, source=None, cache_dir=None, remove: tuple[str, ...] = (),
                            validation_fraction: float = 0.1, seed: int = 0) -> dict:
    """Write 20 Newsgroups' posts as byte sequences (see the module docstring) and the card
    to ``out_dir``, whole or not at all; return the card."""
    fetched = fetch.fetch_files("20newsgroups", source, cache_dir)
    [path] = fetched.paths.values()
    corpus = newsgroups.load_20newsgroups(path, remove=tuple(remove), expected_sha256=None)  # fetch checked the pin
    in_validation = holdout_mask(len(corpus["train"]["ids"]), validation_fraction, np.random.default_rng(seed),
                                 "20newsgroups")
    rows = {"train": np.flatnonzero(~in_validation), "validation": np.flatnonzero(in_validation),
            "test": np.arange(len(corpus["test"]["ids"]))}
    parts = {}
    for split, chosen in rows.items():
        origin = corpus["test" if split == "test" else "train"]
        texts = [origin["texts"][i].encode("latin-1") for i in chosen]
        parts[split] = ([origin["ids"][i] for i in chosen], origin["labels"][chosen], texts)
    for split, (_, _, texts) in parts.items():
        if not sum(map(len, texts)):
            raise DulError(f"20newsgroups as characters: the {split} split's {len(texts)} posts hold no characters"
                           f"{' after removing ' + ', '.join(remove) if remove else ''}; nothing was written"
                           + ("; raise ingest.validation_fraction" if split == "validation" and not texts else ""))
    n_labels = len(corpus["label_names"])
    splits = {split: _summary(labels, texts, n_labels) for split, (_, labels, texts) in parts.items()}
    split_info = {"seed": seed, "validation_fraction": validation_fraction, "remove": list(remove),
                  "test": "official test split"}
    card = sequence_card("20newsgroups", fetched.source, corpus["label_names"], splits, fetched.files, split_info)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, labels, texts) in parts.items():
            write_sequence_split(tmp / f"{split}.parquet", ids, labels, texts)
        write_json(tmp / "card.json", card)
    return card


def sequence_card(dataset: str, source, label_names, splits: dict, files, split_info: dict) -> dict:
    """The card of a byte-sequence corpus: deterministic (no timestamps, no cache paths)."""
    return {
        "dataset": dataset, "kind": "sequence", "source": source,
        "shape": [None], "n_features": None,  # one item: a sequence of any length
        "vocabulary_size": VOCABULARY_SIZE, "n_labels": len(label_names), "label_names": list(label_names),
        "multi_label": False,
        "preprocessing": {"symbols": "bytes 0-255: each post's bytes as in the archive",
                          "stream": f"the posts in id order, each followed by byte {END} (end of post)"},
        "split": split_info, "splits": splits, "files": files,
    }


def _summary(labels: np.ndarray, texts: list[bytes], n_labels: int) -> dict:
    return {"count": len(texts), "characters": int(sum(map(len, texts))),
            "stream_characters": int(sum(map(len, texts)) + len(texts)),
            "empty_documents": sum(1 for text in texts if not text.strip()),
            "label_counts": {str(k): int(c) for k, c in enumerate(np.bincount(labels, minlength=n_labels))}}


def write_sequence_split(path: str | os.PathLike, ids, labels: np.ndarray, texts: list[bytes]) -> None:
    """One split (Parquet: ``id``, ``label``, ``text`` large_binary), atomically."""
    if not len(ids) == len(labels) == len(texts):
        raise ValueError(f"{len(ids)} ids, {len(labels)} labels but {len(texts)} texts")
    table = pa.table({"id": pa.array(list(ids), pa.string()),
                      "label": pa.array(np.asarray(labels, dtype=np.int64)),
                      "text": pa.array(texts, pa.large_binary())})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")


def is_sequence_split(path: Path) -> bool:
    """Whether a split file holds byte sequences (a ``text`` column)."""
    try:
        return "text" in pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error


def read_sequences(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A sequence split's bytes: ``data`` uint8 (C,), every post's bytes end to end, and
    ``offsets`` int64 (N + 1,): post i is ``data[offsets[i]:offsets[i + 1]]``."""
    from components.data.ingest import _split_path

    path = _split_path(data_dir, split)
    try:
        column = pq.read_table(path, columns=["text"]).column("text")
    except (pa.ArrowException, OSError, KeyError) as error:
        raise DulError(f"{path} holds no byte sequences ({error}); run ingest with ingest.representation: chars") \
            from None
    if column.type != pa.large_binary():
        raise DulError(f"{path}: column 'text' is {column.type}, not large_binary; run ingest again")
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = array.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data[offsets[0]:offsets[-1]], offsets - offsets[0]


def read_stream(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """A sequence split as one stream uint8 (C + N,): each post followed by ``END``."""
    data, offsets = read_sequences(data_dir, split)
    return np.insert(data, offsets[1:], END)
