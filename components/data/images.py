"""Image datasets -> train/validation/test Parquet + card (``ingest``'s image path).

``ingest_images`` writes, into ``out_dir`` (whole or not at all):

- ``train.parquet``, ``validation.parquet``, ``test.parquet``: one row per
  image, columns ``id`` int64 (the item's index in its source split, to trace
  it back), ``label`` int64 and ``pixels`` fixed_size_binary(H*W*C) (uint8,
  row-major, channels last: R, G, B of a pixel side by side); the schema
  metadata holds ``height``, ``width`` and ``channels`` (1 for the grey
  datasets). Rows are in ``id`` order. No timestamps: a re-run gives
  byte-identical files.
- ``card.json``: dataset, source, ``image_shape`` ([H, W] for grey images,
  [H, W, C] for colour ones: CIFAR's [32, 32, 3]), ``shape`` (one item as
  models see it, channels first: [1, H, W], CIFAR's [3, 32, 32]) and
  ``n_features`` (its product), ``labels`` (false where the dataset has
  none), label names, split sizes and label counts, and the sha256 of every
  source file with whether it matched a pinned hash.

``digits`` has no official split: a seeded shuffle holds out
``test_fraction`` as test, then ``validation_fraction`` of the rest. The
others keep their official test set and hold out ``validation_fraction`` of
the official training set: ``mnist`` / ``fashion-mnist`` (IDX files,
``components.data.sources``) and ``cifar10`` / ``cifar100`` (the binary
archives, ``components.data.cifar``, fetched by ``components.data.fetch``;
CIFAR-100's labels are the 100 fine classes, the card also names the 20
superclasses). ``binarized-mnist`` (``components.data.amat``) keeps the
files' own train/valid/test (``validation_fraction`` does not apply); its
pixels are stored as 0/255 and its labels as -1: it has none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data import amat, cifar, fetch, idx, sources
from components.errors import DulError
from components.io import atomic_path, write_json

SPLITS = ("train", "validation", "test")
CIFAR = ("cifar10", "cifar100")
DATASETS = (*sources.DATASETS, amat.DATASET, *CIFAR)
ROW_GROUP_SIZE = 10_000
# official split of the IDX datasets -> (images file, labels file)
IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# One split in memory: ids int64 (N,), labels int64 (N,), pixels uint8 (N, H, W) or (N, H, W, C)
Split = tuple[np.ndarray, np.ndarray, np.ndarray]


def ingest_images(dataset: str, out_dir, *, source=None, validation_fraction: float = 0.1,
                  test_fraction: float = 0.2, seed: int = 0, cache_dir=None) -> dict:
    """Write ``dataset``'s three splits and its card to ``out_dir``; return the card."""
    rng = np.random.default_rng(seed)
    if dataset == "digits":
        if source is not None:
            raise DulError("digits ships with scikit-learn and has no ingest.source; leave ingest.source empty")
        loaded = _digits(rng, validation_fraction, test_fraction)
    elif dataset in CIFAR:
        loaded = _cifar(dataset, source, cache_dir, rng, validation_fraction)
    elif dataset == amat.DATASET:
        loaded = _binarized(source, cache_dir)
    else:
        loaded = _idx_dataset(dataset, source, cache_dir, rng, validation_fraction)
    splits, files, source_name, names = loaded
    split_info = _split_info(dataset, seed, validation_fraction, test_fraction)
    card = _card(dataset, source_name, splits, files, names, split_info)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for name in SPLITS:
            _write_split(tmp / f"{name}.parquet", *splits[name])
        write_json(tmp / "card.json", card)
    return card


def _holdout(ids: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``ids`` and hold out round(fraction * len) of them; both parts sorted."""
    shuffled = rng.permutation(ids)
    count = round(fraction * len(ids))
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


def _take(ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> Split:
    return ids.astype(np.int64), labels[ids].astype(np.int64), images[ids]


def _official(dataset, rng, validation_fraction, train: tuple, test: tuple) -> dict[str, Split]:
    """Hold validation out of the official (images, labels) ``train``; keep ``test`` whole."""
    (images, labels), (test_images, test_labels) = train, test
    kept, validation = _holdout(np.arange(len(labels)), validation_fraction, rng)
    _check_train(kept, dataset)
    return {
        "train": _take(kept, labels, images),
        "validation": _take(validation, labels, images),
        "test": _take(np.arange(len(test_labels)), test_labels, test_images),
    }


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
    return splits, files, "sklearn.datasets.load_digits", {"label_names": sources.LABEL_NAMES["digits"]}


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
    splits = _official(dataset, rng, validation_fraction, official["train"], official["test"])
    return splits, files, fetched.source, {"label_names": sources.LABEL_NAMES[dataset]}


def _cifar(dataset, source, cache_dir, rng: np.random.Generator, validation_fraction: float):
    """The binary archive's official train/test sets (fine labels for CIFAR-100); validation held out of train."""
    fetched = fetch.fetch_files(dataset, source, cache_dir)
    [path] = fetched.paths.values()
    load = cifar.load_cifar10 if dataset == "cifar10" else cifar.load_cifar100
    data = load(path, expected_sha256=None, expected=cifar.EXPECTED)  # fetch_files checked the pin
    parts = [(data[split]["images"], data[split]["labels"]) for split in ("train", "test")]
    splits = _official(dataset, rng, validation_fraction, *parts)
    names = {key: data[key] for key in ("label_names", "coarse_label_names") if key in data}
    return splits, fetched.files, fetched.source, names


def _binarized(source, cache_dir):
    """The three .amat files, each one split as it is; no labels."""
    splits, files, source_name = amat.load(source, cache_dir)
    return splits, files, source_name, {"labels": False, "label_names": [], "binarization": amat.BINARIZATION}


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


def _card(dataset, source, splits: dict[str, Split], files, names: dict, split_info) -> dict:
    """The dataset card: deterministic (no timestamps, no cache paths)."""
    image_shape = [int(side) for side in splits["train"][2].shape[1:]]
    labelled = names.get("labels", True)
    n_labels = _n_labels(splits, names) if labelled else 0
    layout = "(H, W, C) channels last" if len(image_shape) == 3 else "(H, W)"
    return {
        "dataset": dataset,
        "source": source,
        "image_shape": image_shape,
        **shape_fields(channels_first(image_shape)),
        "labels": labelled,
        "n_labels": n_labels,
        **names,
        "pixels": f"uint8, {layout}, row-major; read_split scales them to [0, 1] by / 255",
        "split": split_info,
        "splits": {name: _split_summary(splits[name][1], n_labels if labelled else None) for name in SPLITS},
        "files": files,
    }


def channels_first(image_shape) -> tuple[int, ...]:
    """A card's ``image_shape`` as models see one image: [H, W] -> (1, H, W), [H, W, C] -> (C, H, W)."""
    height, width, *channels = (int(side) for side in image_shape)
    return (channels[0] if channels else 1, height, width)


def shape_fields(shape) -> dict:
    """The card's ``shape`` (one item as models see it) and ``n_features`` (its product)."""
    return {"shape": [int(side) for side in shape], "n_features": int(np.prod(shape))}


def _n_labels(splits: dict[str, Split], names: dict) -> int:
    largest = max((int(labels.max()) for _, labels, _ in splits.values() if len(labels)), default=-1)
    return max(len(names["label_names"]), largest + 1)


def _split_info(dataset, seed, validation_fraction, test_fraction):
    if dataset == amat.DATASET:
        return "the files' own train/valid/test"
    official_test = dataset != "digits"
    return {
        "seed": seed,
        "validation_fraction": validation_fraction,
        "test_fraction": None if official_test else test_fraction,
        "test": _TEST.get(dataset, "official t10k files") if official_test else "random, test_fraction of all items",
    }


_TEST = {"cifar10": "official test_batch.bin", "cifar100": "official test.bin"}


def _split_summary(labels: np.ndarray, n_labels: int | None) -> dict:
    """The split's size and, for a labelled dataset (``n_labels`` not None), its count per label."""
    if n_labels is None:
        return {"count": len(labels)}
    counts = np.bincount(labels, minlength=n_labels)
    return {"count": len(labels), "label_counts": {str(k): int(c) for k, c in enumerate(counts)}}


def _write_split(path: Path, ids: np.ndarray, labels: np.ndarray, images: np.ndarray) -> None:
    """One Parquet file: id int64, label int64, pixels fixed_size_binary(H*W*C)."""
    count, height, width = images.shape[:3]
    channels = images.shape[3] if images.ndim == 4 else 1
    pixels = pa.py_buffer(np.ascontiguousarray(images).tobytes())
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "label": pa.array(labels, pa.int64()),
            "pixels": pa.Array.from_buffers(pa.binary(height * width * channels), count, [None, pixels]),
        }
    ).replace_schema_metadata({"height": str(height), "width": str(width), "channels": str(channels)})
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, compression="zstd")
