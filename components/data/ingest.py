"""Ingest: a dataset's source files -> train/validation/test Parquet + card.

``ingest(dataset, out_dir, ...)`` dispatches on ``dataset``:

- image datasets (``components.data.images``: ``digits``, ``mnist``,
  ``fashion-mnist``, ``cifar10``, ``cifar100``, ``binarized-mnist``): one
  row per image, ``id``, ``label`` and ``pixels`` (uint8, H*W*C bytes,
  channels last); the card's ``image_shape`` is [H, W], or [H, W, C] for
  colour images;
- text corpora (``components.data.corpora``: ``20newsgroups``,
  ``reuters21578``, ``rcv1-v2``): bag-of-words splits; the card has
  ``"kind": "bow"`` and says whether the corpus is ``multi_label``;
- ``20newsgroups`` with ``representation="chars"`` (``components.data.chars``):
  each post as a byte sequence; the card has ``"kind": "sequence"``,
  ``vocabulary_size`` 256 and ``shape`` [null] (a sequence of any length);
  ``chars.read_stream`` reads a split back, not ``read_split``.

Every card has ``shape``, one item as models see it ([C, H, W] for images,
[V] for bag-of-words, [null] for sequences), and ``n_features``, its product; ``item_shape(card)``
gives it for older cards too, and ``as_images`` turns a split's flat rows
into (N, C, H, W).

Either way ``out_dir`` gets ``train.parquet``, ``validation.parquet``,
``test.parquet`` and ``card.json``, whole or not at all, byte-identical on a
re-run. ``read_split`` turns a split back into ``X`` float32 and ``y`` int64
(N,): (N, H*W*C) pixels in [0, 1] for images (CIFAR: (N, 3072)), (N, V) word
counts for text (``y`` = a multi-label document's first label).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data import chars, corpora, images, text
from components.data.images import SPLITS, channels_first, shape_fields
from components.errors import DulError, did_you_mean
from components.io import write_json

DATASETS = (*images.DATASETS, *corpora.TEXT_DATASETS)
REPRESENTATIONS = ("bow", "chars")  # text corpora: word counts | byte sequences (20newsgroups)


def ingest(
    dataset: str,
    out_dir: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    vocabulary_size: int = text.VOCABULARY_SIZE,
    remove: tuple[str, ...] = (),
    topics: str = "all",
    rcv1_split: str = "lyrl2004",
    protocol: str = "bydate",
    representation: str = "bow",
) -> dict:
    """Write ``dataset``'s three splits and its card to ``out_dir``; return the card.

    ``digits`` holds out ``test_fraction`` as test; every other dataset keeps
    its official test set (``test_fraction`` is ignored) and all hold out a
    seeded ``validation_fraction`` of the training set. ``source`` and
    ``cache_dir``: see ``components.data.fetch`` (``sources`` for the IDX
    files). Text corpora use ``vocabulary_size``, ``remove`` (20newsgroups),
    ``topics`` (reuters21578), ``rcv1_split`` (rcv1-v2) and ``protocol``
    (``vdsh``: the semantic-hashing papers' 20newsgroups); see
    ``components.data.corpora``. Image datasets ignore them.
    ``representation`` "chars": 20newsgroups' posts as byte sequences
    (``components.data.chars``; ``remove``, ``validation_fraction`` and
    ``seed`` apply, ``vocabulary_size`` does not).
    """
    if dataset not in DATASETS:
        raise DulError(f"unknown dataset '{dataset}' (ingest.dataset); {did_you_mean(dataset, DATASETS, cutoff=0.5)}")
    if protocol != "bydate" and dataset not in corpora.TEXT_DATASETS:
        raise DulError(f"ingest.protocol {protocol} prepares a text corpus, not {dataset}; use protocol bydate")
    _check_fraction("validation_fraction", validation_fraction)
    _check_fraction("test_fraction", test_fraction)
    if representation != "bow":
        if representation not in REPRESENTATIONS:
            raise DulError(f"unknown ingest.representation {representation!r}; "
                           f"{did_you_mean(representation, REPRESENTATIONS)}")
        if dataset != "20newsgroups" or protocol != "bydate":
            raise DulError(f"ingest.representation chars prepares 20newsgroups (protocol bydate) as byte sequences, "
                           f"not {dataset} (protocol {protocol}); use representation bow")
        return chars.ingest_newsgroups_chars(out_dir, source=source, cache_dir=cache_dir, remove=tuple(remove),
                                             validation_fraction=validation_fraction, seed=seed)
    if dataset in corpora.TEXT_DATASETS:
        card = corpora.ingest_text(dataset, out_dir, source=source, cache_dir=cache_dir,
                                   vocabulary_size=vocabulary_size, remove=remove,
                                   validation_fraction=validation_fraction, seed=seed, topics=topics,
                                   rcv1_split=rcv1_split, protocol=protocol)
        return _add_bow_shape(card, out_dir)
    return images.ingest_images(dataset, out_dir, source=source, validation_fraction=validation_fraction,
                                test_fraction=test_fraction, seed=seed, cache_dir=cache_dir)


def _add_bow_shape(card: dict, out_dir) -> dict:
    """Add ``shape`` [V] and ``n_features`` V to a bag-of-words card and rewrite it (atomically).

    A card left without them (a run killed between the two writes) still
    works: ``item_shape`` derives the shape from ``vocabulary_size``."""
    card = card | shape_fields([card["vocabulary_size"]])
    write_json(Path(out_dir) / "card.json", card)
    return card


def item_shape(card: dict, data_dir: str | os.PathLike | None = None) -> tuple[int | None, ...]:
    """One item's shape as models see it: (C, H, W) for images, (V,) for bag-of-words,
    (None,) for byte sequences (any length; only sequence families take them).

    The card's ``shape``; for a card written before it was recorded, derived
    from ``image_shape`` ([H, W] -> (1, H, W), [H, W, C] -> (C, H, W)) or,
    for a bag-of-words card, from ``vocabulary_size`` (else the train split's
    vocabulary in ``data_dir``)."""
    if "shape" in card:
        return tuple(None if side is None else int(side) for side in card["shape"])
    if card.get("kind") == "bow":
        return (_vocabulary_size(card, data_dir),)
    if "image_shape" in card:
        return channels_first(card["image_shape"])
    raise DulError(f"the card of {card.get('dataset', 'this dataset')} has no shape nor image_shape; run ingest again")


def _vocabulary_size(card: dict, data_dir) -> int:
    if "vocabulary_size" in card:
        return int(card["vocabulary_size"])
    if data_dir is None:
        raise DulError("the bag-of-words card records no shape nor vocabulary_size; pass its data_dir to item_shape")
    return len(text.read_vocabulary(_split_path(data_dir, "train")))


def as_images(X, shape):
    """Flat rows (N, H*W*C), channels last as stored, as images (N, C, H, W): a view, no copy.

    ``X`` is a numpy array or a torch tensor (the result is the same kind);
    ``shape`` is ``item_shape(card)``, (C, H, W)."""
    if len(shape) != 3:
        raise DulError(f"shape {tuple(shape)} is not an image shape (C, H, W); bag-of-words items are flat vectors")
    channels, height, width = (int(side) for side in shape)
    if X.ndim != 2 or X.shape[1] != channels * height * width:
        raise DulError(f"rows of shape {tuple(X.shape)} do not hold {channels}x{height}x{width} images; "
                       f"expected (N, {channels * height * width})")
    pixels = X.reshape(-1, height, width, channels)  # (N, H, W, C): a row is row-major, channels last
    permute = getattr(pixels, "permute", None)  # torch; numpy's transpose takes all axes instead
    return permute(0, 3, 1, 2) if permute is not None else pixels.transpose(0, 3, 1, 2)


def _check_fraction(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DulError(f"ingest.{key} is {value!r}; it must be a number in [0, 1)")


def read_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split written by ``ingest``: X float32 (N, H*W*C) in [0, 1], y int64 (N,).

    A row of X is one image as stored: row-major, channels last, so pixel
    (h, w) of channel c is column (h * W + w) * C + c (CIFAR's R, G, B of a
    pixel side by side). Models that take images as (N, C, H, W) reshape the
    rows to (N, H, W, C) and move the channel axis forward:
    ``as_images(X, item_shape(card))`` (a plain ``X.reshape(N, C, H, W)``
    would mix the channels of neighbouring pixels). Grey images have C = 1.
    For a bag-of-words split X is the float32 word counts (N, V) and y the
    ``label`` column (a multi-label document's first label). y is -1 for
    every item of a dataset without labels (the card's ``labels`` is false)."""
    path = _split_path(data_dir, split)
    if chars.is_sequence_split(path):
        raise DulError(f"{path} holds byte sequences (ingest.representation: chars), not fixed-size items; "
                       "only a sequence family (wavenet) reads it, or ingest with representation bow")
    if _is_bow(path):
        counts, labels, _ = text.read_bow_split(path)
        return counts.toarray().astype(np.float32), labels
    try:
        table = pq.read_table(path, columns=["label", "pixels"])
    except (pa.ArrowException, OSError, KeyError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error
    column = table.column("pixels")
    if not pa.types.is_fixed_size_binary(column.type):
        raise DulError(f"{path}: column 'pixels' is {column.type}, not fixed_size_binary; run ingest again")
    width = column.type.byte_width
    pixels = _pixel_bytes(column.combine_chunks(), width)  # (N, D) uint8, no per-row Python
    X = pixels.astype(np.float32)
    X /= np.float32(255)
    y = table.column("label").to_numpy().astype(np.int64, copy=False)
    return X, y


def read_label_sets(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """Each item's labels as a (N, L) bool matrix, L the card's label count: every label of
    a multi-label document (its ``labels`` column), else the one label ``read_split``'s y
    has (no row at all for a dataset without labels). Retrieval counts a hit when the
    query and the item share any label (Salakhutdinov & Hinton 2009; the field's rule)."""
    path = _split_path(data_dir, split)
    card = read_card(data_dir)
    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=["labels"] if "labels" in names else ["label"])
    except (pa.ArrowException, OSError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error
    y = table.column(table.column_names[0])
    n_labels = int(card.get("n_labels") or len(card.get("label_names") or []) or 0)
    if "labels" in names:
        rows = y.to_pylist()
        n_labels = max(n_labels, 1 + max((max(r) for r in rows if r), default=-1))
        matrix = np.zeros((len(rows), n_labels), dtype=bool)
        for i, row in enumerate(rows):
            matrix[i, row] = True
        return matrix
    labels = y.to_numpy().astype(np.int64, copy=False)
    n_labels = max(n_labels, int(labels.max()) + 1 if len(labels) else 0)
    matrix = np.zeros((len(labels), n_labels), dtype=bool)
    known = labels >= 0
    matrix[np.flatnonzero(known), labels[known]] = True
    return matrix


def _is_bow(path: Path) -> bool:
    try:
        return "counts" in pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error


def read_ids(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """Each item's id in its source split, int64 (N,): traces an item back to the raw data.

    Bag-of-words splits have string ids (``text.read_bow_split``); here their
    rows' positions in the split are returned."""
    path = _split_path(data_dir, split)
    if _is_bow(path) or chars.is_sequence_split(path):
        return np.arange(pq.read_metadata(path).num_rows, dtype=np.int64)
    try:
        return pq.read_table(path, columns=["id"]).column("id").to_numpy().astype(np.int64, copy=False)
    except (pa.ArrowException, OSError, KeyError) as error:
        raise DulError(f"{path} is not a readable dul split ({error}); run ingest again") from error


def _split_path(data_dir: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise DulError(f"unknown split '{split}'; {did_you_mean(split, SPLITS)}")
    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DulError(f"{path} not found; run ingest first (dul's ingest stage writes it)")
    return path


def _pixel_bytes(array: pa.FixedSizeBinaryArray, width: int) -> np.ndarray:
    """View the fixed-size binary column's data buffer as a (N, width) uint8 array."""
    if len(array) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=np.uint8, count=len(array) * width, offset=array.offset * width).reshape(
        len(array), width
    )


def read_card(data_dir: str | os.PathLike) -> dict:
    """The ``card.json`` that ``ingest`` wrote into ``data_dir``."""
    path = Path(data_dir) / "card.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DulError(f"{path} not found; run ingest first (dul's ingest stage writes it)") from error
    except (OSError, ValueError) as error:
        raise DulError(f"{path} is not a readable card ({error}); run ingest again") from error
