"""Ingest: a dataset's source files -> train/validation/test Parquet + card.

``ingest`` writes, into ``out_dir`` (whole or not at all):

- ``train.parquet``, ``validation.parquet``, ``test.parquet``: one row per
  image, columns ``id`` int64 (the item's index in its source split, to trace
  it back), ``label`` int64 and ``pixels`` fixed_size_binary(H*W) (uint8,
  row-major); the schema metadata holds ``height`` and ``width``. Rows are in
  ``id`` order. No timestamps, so a re-run gives byte-identical files.
- ``card.json``: dataset, source, image shape, split sizes and label counts,
  and the sha256 of every source file with whether it matched a pinned hash.

``read_split`` turns a split back into ``X`` float32 (N, H*W) in [0, 1] and
``y`` int64 (N,).

Text corpora (``components.data.corpora``: ``20newsgroups``) are written as
bag-of-words splits instead; their card has ``"kind": "bow"`` and
``read_split`` gives ``X`` as float32 word counts (N, V).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data import corpora, idx, sources, text
from components.errors import DulError, did_you_mean
from components.io import atomic_path, write_json

SPLITS = ("train", "validation", "test")
DATASETS = (*sources.DATASETS, *corpora.TEXT_DATASETS)
ROW_GROUP_SIZE = 10_000
# official split of the IDX datasets -> (images file, labels file)
IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# One split in memory: ids int64 (N,), labels int64 (N,), pixels uint8 (N, H, W)
Split = tuple[np.ndarray, np.ndarray, np.ndarray]


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
) -> dict:
    """Write ``dataset``'s three splits and its card to ``out_dir``; return the card.

    ``digits`` has no official split: a ``seed``-ed shuffle holds out
    ``test_fraction`` as test, then ``validation_fraction`` of the rest as
    validation. ``mnist`` and ``fashion-mnist`` keep the official t10k test
    set and hold out ``validation_fraction`` of the official training set
    (``test_fraction`` is ignored). ``source`` and ``cache_dir``: see
    ``components.data.sources``. Text corpora use ``vocabulary_size`` and
    ``remove`` (see ``components.data.corpora``); image datasets ignore them.
    """
    if dataset not in DATASETS:
        raise DulError(f"unknown dataset '{dataset}' (ingest.dataset); {did_you_mean(dataset, DATASETS, cutoff=0.5)}")
    _check_fraction("validation_fraction", validation_fraction)
    _check_fraction("test_fraction", test_fraction)
    if dataset in corpora.TEXT_DATASETS:
        return corpora.ingest_text(dataset, out_dir, source=source, cache_dir=cache_dir, vocabulary_size=vocabulary_size,
                                   remove=remove, validation_fraction=validation_fraction, seed=seed)
    rng = np.random.default_rng(seed)
    if dataset == "digits":
        if source is not None:
            raise DulError("digits ships with scikit-learn and has no ingest.source; leave ingest.source empty")
        splits, files, source_name = _digits(rng, validation_fraction, test_fraction)
    else:
        splits, files, source_name = _idx_dataset(dataset, source, cache_dir, rng, validation_fraction)
    card = _card(dataset, source_name, splits, files, seed, validation_fraction, test_fraction)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for name in SPLITS:
            _write_split(tmp / f"{name}.parquet", *splits[name])
        write_json(tmp / "card.json", card)
    return card


def _check_fraction(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DulError(f"ingest.{key} is {value!r}; it must be a number in [0, 1)")


def _holdout(ids: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``ids`` and hold out round(fraction * len) of them; both parts sorted."""
    shuffled = rng.permutation(ids)
    count = int(round(fraction * len(ids)))
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


def _take(ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> Split:
    return ids.astype(np.int64), labels[ids].astype(np.int64), images[ids]


def _digits(rng: np.random.Generator, validation_fraction: float, test_fraction: float):
    """scikit-learn's 1,797 8x8 digits; pixels 0..16 stored as round(v * 255 / 16)."""
    from sklearn.datasets import load_digits  # import here: only this dataset needs it

    bunch = load_digits()
    values, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)  # (1797, 8, 8), (1797,)
    files = [
        sources.verify("digits", "load_digits-images", None, idx.encode(values), "scikit-learn load_digits"),
        sources.verify("digits", "load_digits-labels", None, idx.encode(labels.astype(np.uint8)), "load_digits"),
    ]
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    rest, test = _holdout(np.arange(len(labels)), test_fraction, rng)
    train, validation = _holdout(rest, validation_fraction, rng)
    _check_train(train, "digits")
    parts = {"train": train, "validation": validation, "test": test}
    splits = {name: _take(ids, labels, images) for name, ids in parts.items()}
    return splits, files, "sklearn.datasets.load_digits"


def _idx_dataset(dataset, source, cache_dir, rng: np.random.Generator, validation_fraction: float):
    """The official train/test IDX files; validation is held out of train."""
    fetched = sources.fetch(dataset, source, cache_dir)
    arrays, files = {}, []
    for name, ndim in sources.FILES.items():
        path = fetched.paths[name]
        raw = idx.read_bytes(path)
        arrays[name] = idx.parse(raw, str(path), ndim)
        entry = sources.verify(dataset, name, path, raw)
        files.append(entry | ({"url": fetched.urls[name]} if name in fetched.urls else {}))
    official = {split: _pair(arrays, fetched.paths, *names) for split, names in IDX_SPLITS.items()}
    train_shape, test_shape = (official[split][0].shape[1:] for split in ("train", "test"))
    if train_shape != test_shape:
        test_file = fetched.paths["t10k-images-idx3-ubyte"]
        raise DulError(f"{test_file} holds {test_shape} images but the training files {train_shape}; fetch them again")
    images, labels = official["train"]
    train, validation = _holdout(np.arange(len(labels)), validation_fraction, rng)
    _check_train(train, dataset)
    test_images, test_labels = official["test"]
    splits = {
        "train": _take(train, labels, images),
        "validation": _take(validation, labels, images),
        "test": _take(np.arange(len(test_labels)), test_labels, test_images),
    }
    return splits, files, fetched.source


def _pair(arrays: dict, paths: dict, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = arrays[images_name], arrays[labels_name]
    if len(images) != len(labels):
        raise DulError(
            f"{paths[images_name]} has {len(images)} images but {paths[labels_name]} has {len(labels)} labels;"
            " the files do not belong together, fetch them again"
        )
    return images, labels


def _check_train(train: np.ndarray, dataset: str) -> None:
    if len(train) == 0:
        raise DulError(f"ingest.validation_fraction/test_fraction leave no training items of {dataset}; lower them")


def _card(dataset, source, splits: dict[str, Split], files, seed, validation_fraction, test_fraction) -> dict:
    """The dataset card: deterministic (no timestamps, no cache paths)."""
    height, width = splits["train"][2].shape[1:]
    n_labels = int(max(int(labels.max()) for _, labels, _ in splits.values() if len(labels)) + 1)
    official_test = dataset != "digits"
    return {
        "dataset": dataset,
        "source": source,
        "image_shape": [int(height), int(width)],
        "n_labels": n_labels,
        "label_names": sources.LABEL_NAMES[dataset],
        "pixels": "uint8, row-major; read_split scales them to [0, 1] by / 255",
        "split": {
            "seed": seed,
            "validation_fraction": validation_fraction,
            "test_fraction": None if official_test else test_fraction,
            "test": "official t10k files" if official_test else "random, test_fraction of all items",
        },
        "splits": {name: _split_summary(splits[name][1], n_labels) for name in SPLITS},
        "files": files,
    }


def _split_summary(labels: np.ndarray, n_labels: int) -> dict:
    counts = np.bincount(labels, minlength=n_labels)
    return {"count": int(len(labels)), "label_counts": {str(k): int(c) for k, c in enumerate(counts)}}


def _write_split(path: Path, ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> None:
    """One Parquet file: id int64, label int64, pixels fixed_size_binary(H*W)."""
    count, height, width = images.shape
    pixels = pa.py_buffer(np.ascontiguousarray(images).tobytes())
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "label": pa.array(labels, pa.int64()),
            "pixels": pa.Array.from_buffers(pa.binary(height * width), count, [None, pixels]),
        }
    ).replace_schema_metadata({"height": str(height), "width": str(width)})
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, compression="zstd")


def read_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split written by ``ingest``: X float32 (N, H*W) in [0, 1], y int64 (N,).

    For a bag-of-words split X is the float32 word counts (N, V)."""
    path = _split_path(data_dir, split)
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
    if _is_bow(path):
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
