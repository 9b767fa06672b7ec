"""Tests for components.data: IDX reading, sources, ingest, read_split.

No network: MNIST-like data is small random IDX files written by
``write_idx`` into ``tmp_path``, with ``sources.CHECKSUMS`` pinned to their
contents; downloads go through ``file://`` URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.data import DATASETS, SPLITS, idx, ingest, read_card, read_split, sources
from components.data.idx import write_idx
from components.errors import DulError

N_TRAIN, N_TEST, SIDE = 50, 20, 28
FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- helpers


def _arrays(n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, SIDE, SIDE), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, SIDE, SIDE), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _pin(arrays: dict[str, np.ndarray]) -> dict[str, sources.Pin]:
    return {name: sources.Pin(hashlib.sha256(idx.encode(a)).hexdigest()) for name, a in arrays.items()}


def _file(folder: Path, name: str) -> Path:
    return folder / f"{name}.gz" if (folder / f"{name}.gz").exists() else folder / name


def _parquet_ids(data_dir: Path, split: str) -> np.ndarray:
    return pq.read_table(data_dir / f"{split}.parquet", columns=["id"]).column("id").to_numpy()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A folder with four small gzipped IDX files; 'mnist' pinned to them."""
    arrays = _arrays()
    folder = tmp_path / "src"
    for name, array in arrays.items():
        write_idx(folder / f"{name}.gz", array)
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", _pin(arrays))
    return folder, arrays


def _no_leftovers(parent: Path, keep: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == keep


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
def test_idx_roundtrip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a.idx", array, gzip=compress)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\x00\x00")
    np.testing.assert_array_equal(idx.read_idx(path, ndim=3), array)
    assert idx.encode(array)[:8] == bytes.fromhex("00000803 00000002".replace(" ", ""))


def test_idx_rejects_wrong_ndim(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DulError, match=r"labels\.gz has magic 0x00000801 .*expected 0x00000803"):
        idx.read_idx(path, ndim=3)


@pytest.mark.parametrize("compress", [True, False])
def test_read_shape_reads_the_header_only(tmp_path, compress):
    array = np.random.default_rng(0).integers(0, 256, (70, 50, 30), dtype=np.uint8)
    path = write_idx(tmp_path / "images", array, gzip=compress)
    path.write_bytes(path.read_bytes()[:-2000])  # cut the end: the header is still whole
    assert idx.read_shape(path, ndim=3) == (70, 50, 30)
    with pytest.raises(DulError, match=r"labels"):
        idx.read_shape(path, ndim=1, label="labels")
    with pytest.raises(DulError, match=r"truncated"):
        idx.read_idx(path, ndim=3)


def test_gzip_idx_stops_one_byte_past_its_promise(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx.encode(np.zeros(4, np.uint8)) + b"\0" * 5, mtime=0))
    message = r"labels\.gz has trailing bytes: it decompresses to more than the 12 bytes its header promises \(shape \(4,\)\)"
    with pytest.raises(DulError, match=message):
        idx.read_bytes(path)


# ---------------------------------------------------------------- ingest: IDX datasets


@pytest.mark.parametrize("compress", [True, False])
def test_ingest_local_folder(tmp_path, monkeypatch, compress):
    arrays = _arrays()
    folder = tmp_path / "src"
    for name, array in arrays.items():
        write_idx(folder / (f"{name}.gz" if compress else name), array, gzip=compress)
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", _pin(arrays))
    out = tmp_path / "data"
    card = ingest("mnist", out, source=str(folder), validation_fraction=0.1, seed=3)

    assert [card["splits"][s]["count"] for s in SPLITS] == [45, 5, 20]
    assert card["image_shape"] == [SIDE, SIDE] and card["source"] == str(folder)
    assert [f["verified"] for f in card["files"]] == [True] * 4
    assert card == read_card(out)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "test.parquet", "train.parquet", "validation.parquet"]

    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    train_ids, val_ids = _parquet_ids(out, "train"), _parquet_ids(out, "validation")
    np.testing.assert_array_equal(np.sort(np.concatenate([train_ids, val_ids])), np.arange(N_TRAIN))
    assert (np.diff(train_ids) > 0).all() and (np.diff(val_ids) > 0).all()  # rows in id order
    X, y = read_split(out, "validation")
    assert X.dtype == np.float32 and X.shape == (5, SIDE * SIDE) and y.dtype == np.int64
    np.testing.assert_array_equal(X, images[val_ids].reshape(5, -1).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels[val_ids])
    X, y = read_split(out, "test")
    np.testing.assert_array_equal(X * 255, arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, -1))
    label_counts = np.bincount(arrays["t10k-labels-idx1-ubyte"], minlength=10)
    assert card["splits"]["test"]["label_counts"] == {str(k): int(c) for k, c in enumerate(label_counts)}


def test_ingest_is_byte_identical_on_rerun(fake_mnist, tmp_path):
    folder, _ = fake_mnist
    ingest("mnist", tmp_path / "a", source=folder, seed=1)
    ingest("mnist", tmp_path / "b", source=folder, seed=1)
    for name in ("card.json", *(f"{s}.parquet" for s in SPLITS)):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    ingest("mnist", tmp_path / "c", source=folder, seed=2)
    assert not np.array_equal(_parquet_ids(tmp_path / "a", "validation"), _parquet_ids(tmp_path / "c", "validation"))


def test_mirror_url_downloads_once_then_uses_cache(fake_mnist, tmp_path):
    folder, _ = fake_mnist
    cache = tmp_path / "cache"
    card = ingest("mnist", tmp_path / "a", source=folder.as_uri(), cache_dir=cache)
    assert card["source"] == folder.as_uri() + "/"
    assert [f["url"] for f in card["files"]] == [f"{folder.as_uri()}/{n}.gz" for n in sources.FILES]
    assert [f["verified"] for f in card["files"]] == [True] * 4
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert cached == sorted(f"{n}.gz" for n in sources.FILES)  # no .part leftovers
    assert str(cache) not in (tmp_path / "a" / "card.json").read_text()

    shutil.rmtree(folder)  # a second download would now fail
    assert ingest("mnist", tmp_path / "b", source=folder.as_uri(), cache_dir=cache) == card


def test_damaged_cache_file_is_fetched_again(fake_mnist, tmp_path):
    folder, _ = fake_mnist
    cache = tmp_path / "cache"
    card = ingest("mnist", tmp_path / "a", source=folder.as_uri(), cache_dir=cache)
    [cached] = cache.rglob("t10k-images-idx3-ubyte.gz")
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 2])
    assert ingest("mnist", tmp_path / "b", source=folder.as_uri(), cache_dir=cache) == card
    assert cached.read_bytes() == good


def test_default_source_downloads_canonical_url_into_dul_cache(fake_mnist, tmp_path, monkeypatch):
    folder, _ = fake_mnist
    monkeypatch.setitem(sources.CANONICAL_URLS, "mnist", folder.as_uri())
    monkeypatch.setenv("DUL_CACHE", str(tmp_path / "env-cache"))
    card = ingest("mnist", tmp_path / "data")
    assert card["source"] == folder.as_uri() + "/"
    assert len(list((tmp_path / "env-cache" / "mnist").rglob("*.gz"))) == 4


def test_offline_download_names_url_and_fix(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    url = sources.CANONICAL_URLS["fashion-mnist"] + "train-images-idx3-ubyte.gz"
    fix = r" \(no network\); put the four files in a folder and set ingest\.source to it$"
    with pytest.raises(DulError, match=re.escape(url) + fix):
        ingest("fashion-mnist", tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "data").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_bad_download_is_not_cached(fake_mnist, tmp_path, monkeypatch):
    folder, _ = fake_mnist
    monkeypatch.setitem(sources.CHECKSUMS["mnist"], "train-images-idx3-ubyte", sources.Pin("0" * 64))
    with pytest.raises(DulError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch .*expected sha256 0{64}"):
        ingest("mnist", tmp_path / "data", source=folder.as_uri(), cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not (tmp_path / "data").exists()


def test_gz_hash_pin_accepts_the_canonical_gzip(fake_mnist, tmp_path, monkeypatch):
    folder, _ = fake_mnist
    pins = {n: sources.Pin(None, hashlib.sha256(_file(folder, n).read_bytes()).hexdigest()) for n in sources.FILES}
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", pins)
    card = ingest("mnist", tmp_path / "data", source=folder)
    assert [f["verified"] for f in card["files"]] == [True] * 4


def _reorder_train_images(folder: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write the training images in reverse order; return their new (decompressed) sha256."""
    reordered = arrays["train-images-idx3-ubyte"][::-1]
    write_idx(folder / "train-images-idx3-ubyte.gz", reordered)
    return hashlib.sha256(idx.encode(reordered)).hexdigest()


def test_a_reordered_copy_is_refused_because_the_pin_covers_the_order(fake_mnist, tmp_path, monkeypatch):
    folder, arrays = fake_mnist
    for name, array in arrays.items():
        monkeypatch.setitem(sources.CANONICAL_SHAPES, name, array.shape)
    actual = _reorder_train_images(folder, arrays)
    pinned = sources.CHECKSUMS["mnist"]["train-images-idx3-ubyte"].sha256
    with pytest.raises(DulError) as raised:
        ingest("mnist", tmp_path / "data", source=folder)
    assert str(raised.value) == (
        f"{folder / 'train-images-idx3-ubyte.gz'}: checksum mismatch for mnist train-images-idx3-ubyte:"
        f" expected sha256 {pinned}, got {actual} (decompressed); it is a valid IDX file of the canonical shape"
        " (50, 28, 28), but the pin covers its exact bytes, the order of the images included, so a reordered or"
        " re-encoded copy is refused too; use the canonical files (leave ingest.source empty to download them"
        " from https://ossci-datasets.s3.amazonaws.com/mnist/)"
    )


def test_a_mismatch_of_another_shape_names_both_shapes(fake_mnist, tmp_path):
    folder, arrays = fake_mnist
    _reorder_train_images(folder, arrays)
    with pytest.raises(DulError, match=r"\(decompressed\); it holds shape \(50, 28, 28\), the canonical file"
                                       r" \(60000, 28, 28\); use the canonical files"):
        ingest("mnist", tmp_path / "data", source=folder)


def test_a_mismatch_that_is_no_idx_file_is_called_damaged(monkeypatch):
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", {"t10k-labels-idx1-ubyte": sources.Pin("0" * 64)})
    with pytest.raises(DulError, match=r"^x: checksum mismatch .*; the file is damaged or not the real one"):
        sources.verify("mnist", "t10k-labels-idx1-ubyte", None, b"junk", label="x")


def test_unpinned_files_are_marked_unverified(fake_mnist, tmp_path, monkeypatch):
    folder, _ = fake_mnist
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", {})
    card = ingest("mnist", tmp_path / "data", source=folder)
    assert [f["verified"] for f in card["files"]] == [False] * 4


# ---------------------------------------------------------------- ingest: bad input


def _rewrite(name: str, data: bytes):
    def mutate(folder: Path) -> None:
        path = _file(folder, name)
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)

    return mutate


def _truncate_gzip(folder: Path) -> None:
    path = _file(folder, "train-images-idx3-ubyte")
    path.write_bytes(path.read_bytes()[:-2000])


def _empty(folder: Path) -> None:
    _file(folder, "t10k-images-idx3-ubyte").write_bytes(b"")


def _remove(folder: Path) -> None:
    _file(folder, "t10k-labels-idx1-ubyte").unlink()


IMAGES = idx.encode(np.zeros((N_TRAIN, SIDE, SIDE), dtype=np.uint8))  # a valid, unpinned images file
TRAIN_IMAGES = "train-images-idx3-ubyte"
BAD_INPUTS = {  # case -> (mutation, regex the message must match, keep pins?)
    "truncated gzip": (_truncate_gzip, r"train-images-idx3-ubyte\.gz is a damaged or truncated gzip", True),
    "truncated payload": (_rewrite(TRAIN_IMAGES, IMAGES[:-10]), r"images-idx3-ubyte\.gz is truncated", True),
    "trailing bytes": (_rewrite(TRAIN_IMAGES, IMAGES + b"\0"), r"ubyte\.gz has trailing bytes", True),
    "wrong magic": (_rewrite(TRAIN_IMAGES, bytes([0, 0, 8, 1]) + IMAGES[8:]), r"expected 0x00000803", True),
    "not idx": (_rewrite(TRAIN_IMAGES, b"PK\x03\x04" + IMAGES[4:]), r"is not an IDX file", True),
    "wrong dtype": (_rewrite(TRAIN_IMAGES, bytes([0, 0, 0x0D, 3]) + IMAGES[4:]), r"type 0x0d \(float32\)", True),
    "zero bytes": (_empty, r"t10k-images-idx3-ubyte\.gz is empty \(0 bytes\)", True),
    "missing file": (_remove, r"t10k-labels-idx1-ubyte\.gz \(or t10k-labels-idx1-ubyte\) not found", True),
    "checksum": (_rewrite(TRAIN_IMAGES, IMAGES), r"train-images-idx3-ubyte\.gz: checksum mismatch", True),
    "count mismatch": (
        _rewrite("train-labels-idx1-ubyte", idx.encode(np.zeros(N_TRAIN - 1, dtype=np.uint8))),
        r"train-images-idx3-ubyte\.gz has 50 images but .*train-labels-idx1-ubyte\.gz has 49 labels",
        False,
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_cleanly(fake_mnist, tmp_path, monkeypatch, case):
    folder, _ = fake_mnist
    mutate, message, keep_pins = BAD_INPUTS[case]
    mutate(folder)
    if not keep_pins:
        monkeypatch.setitem(sources.CHECKSUMS, "mnist", {})
    with pytest.raises(DulError, match=message) as raised:
        ingest("mnist", tmp_path / "data", source=folder)
    assert "\n" not in str(raised.value)
    _no_leftovers(tmp_path, {"src"})


def test_failure_keeps_previous_output(fake_mnist, tmp_path):
    folder, _ = fake_mnist
    card = ingest("mnist", tmp_path / "data", source=folder)
    _truncate_gzip(folder)
    with pytest.raises(DulError):
        ingest("mnist", tmp_path / "data", source=folder, seed=5)
    assert read_card(tmp_path / "data") == card
    _no_leftovers(tmp_path, {"src", "data"})


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("fashion_mnist", r"unknown dataset 'fashion_mnist' .*did you mean 'fashion-mnist'\? choose one of: digits"),
        ("imagenet", r"unknown dataset 'imagenet' \(ingest\.dataset\); choose one of: digits, mnist, fashion-mnist, "),
    ],
)
def test_unknown_dataset(tmp_path, dataset, message):
    with pytest.raises(DulError, match=message):
        ingest(dataset, tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [("validation_fraction", 1.0), ("test_fraction", -0.1), ("validation_fraction", "0.1"), ("test_fraction", True)],
)
def test_bad_fraction(tmp_path, key, value):
    with pytest.raises(DulError, match=rf"ingest\.{key} is .*\[0, 1\)"):
        ingest("digits", tmp_path / "data", **{key: value})


def test_bad_source(tmp_path):
    with pytest.raises(DulError, match=r"ingest\.source .*nowhere does not exist"):
        ingest("mnist", tmp_path / "data", source=str(tmp_path / "nowhere"))
    with pytest.raises(DulError, match=r"digits ships with scikit-learn"):
        ingest("digits", tmp_path / "data", source=str(tmp_path))


def test_read_split_errors(tmp_path):
    choices = r"did you mean 'validation'\? choose one of: train, validation, test$"
    with pytest.raises(DulError, match=r"unknown split 'valid'; " + choices):
        read_split(tmp_path, "valid")
    with pytest.raises(DulError, match=re.escape(str(tmp_path / "train.parquet")) + " not found"):
        read_split(tmp_path, "train")
    with pytest.raises(DulError, match=r"card\.json not found"):
        read_card(tmp_path)


# ---------------------------------------------------------------- digits and real data


def test_digits(tmp_path):
    from sklearn.datasets import load_digits

    card = ingest("digits", tmp_path / "data", validation_fraction=0.1, test_fraction=0.2, seed=0)
    assert [card["splits"][s]["count"] for s in SPLITS] == [1294, 144, 359]
    totals = sum(np.array(list(card["splits"][s]["label_counts"].values())) for s in SPLITS)
    assert totals.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert card["image_shape"] == [8, 8] and card["n_labels"] == 10
    assert [f["verified"] for f in card["files"]] == [True, True]

    digits = load_digits()
    for split in SPLITS:
        X, y = read_split(tmp_path / "data", split)
        ids = _parquet_ids(tmp_path / "data", split)
        assert X.dtype == np.float32 and X.shape == (len(ids), 64) and y.dtype == np.int64
        assert 0 <= X.min() and X.max() <= 1
        np.testing.assert_array_equal(X * 255, np.rint(digits.data[ids] * 255 / 16))
        np.testing.assert_array_equal(y, digits.target[ids])


def test_pinned_hashes_are_sha256_hex():
    for dataset, pins in sources.CHECKSUMS.items():
        assert dataset in DATASETS
        for pin in pins.values():
            for value in (pin.sha256, pin.sha256_gz):
                assert value is None or re.fullmatch(r"[0-9a-f]{64}", value)
    assert set(sources.CHECKSUMS["mnist"]) == set(sources.FILES) == set(sources.CHECKSUMS["fashion-mnist"])


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_verifies_and_splits(tmp_path):
    card = ingest("fashion-mnist", tmp_path / "data", source=FASHION, validation_fraction=0.1)
    assert [card["splits"][s]["count"] for s in SPLITS] == [54_000, 6_000, 10_000]
    assert [f["verified"] for f in card["files"]] == [True] * 4
    pinned = [sources.CHECKSUMS["fashion-mnist"][n].sha256 for n in sources.FILES]
    assert [f["sha256"] for f in card["files"]] == pinned
    assert set(card["splits"]["test"]["label_counts"].values()) == {1000}
    X, y = read_split(tmp_path / "data", "test")
    assert X.shape == (10_000, 784) and X.dtype == np.float32 and np.bincount(y).tolist() == [1000] * 10


# ---------------------------------------------------------------- item shape: card, legacy cards, (N, C, H, W)


from components.data import as_images, item_shape  # noqa: E402  (this section's subject)


def test_image_cards_record_the_channels_first_shape(fake_mnist, tmp_path):
    folder, _ = fake_mnist
    card = ingest("mnist", tmp_path / "mnist", source=str(folder))
    assert card["shape"] == [1, SIDE, SIDE] and card["n_features"] == SIDE * SIDE and card["labels"] is True
    assert read_card(tmp_path / "mnist")["shape"] == [1, SIDE, SIDE]
    digits = ingest("digits", tmp_path / "digits")
    assert (digits["image_shape"], digits["shape"], digits["n_features"]) == ([8, 8], [1, 8, 8], 64)
    assert read_split(tmp_path / "digits", "test")[0].shape[1] == digits["n_features"]


def test_cifar_card_shape_is_3_32_32(tmp_path, monkeypatch):
    from components.data import cifar
    from tests.test_cifar import cifar10_members, tar_gz

    members, _ = cifar10_members()  # 10 training, 4 test images
    archive = tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    pins = {archive.name: sources.FilePin("x", hashlib.sha256(archive.read_bytes()).hexdigest())}
    monkeypatch.setitem(sources.FILE_PINS, "cifar10", pins)
    monkeypatch.setitem(cifar.EXPECTED, "train", 10)
    monkeypatch.setitem(cifar.EXPECTED, "test", 4)
    card = ingest("cifar10", tmp_path / "data", source=str(archive), validation_fraction=0.2)
    assert (card["image_shape"], card["shape"], card["n_features"]) == ([32, 32, 3], [3, 32, 32], 3072)
    assert item_shape(card) == (3, 32, 32)
    X, _ = read_split(tmp_path / "data", "train")
    assert as_images(X, item_shape(card)).shape == (8, 3, 32, 32)


def test_bag_of_words_cards_record_the_vocabulary_as_shape(tmp_path, monkeypatch):
    from tests.test_corpora import _tiny_archive

    archive = _tiny_archive(tmp_path / "20news-bydate.tar.gz")
    pins = {archive.name: sources.FilePin("x", hashlib.sha256(archive.read_bytes()).hexdigest())}
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups", pins)
    out = tmp_path / "data"
    card = ingest("20newsgroups", out, source=str(archive), validation_fraction=0.0, vocabulary_size=4)
    assert (card["shape"], card["n_features"], card["vocabulary_size"]) == ([4], 4, 4)
    assert read_card(out) == card and item_shape(card) == (4,)
    legacy = {key: value for key, value in card.items() if key not in ("shape", "n_features")}
    assert item_shape(legacy) == (4,)
    older = {key: value for key, value in legacy.items() if key != "vocabulary_size"}
    assert item_shape(older, out) == (4,)  # from the train split's schema metadata
    with pytest.raises(DulError, match=r"records no shape nor vocabulary_size; pass its data_dir"):
        item_shape(older)
    with pytest.raises(DulError, match=r"shape \(4,\) is not an image shape"):
        as_images(read_split(out, "train")[0], item_shape(card))


@pytest.mark.parametrize(
    ("card", "shape"),
    [({"image_shape": [28, 28]}, (1, 28, 28)), ({"image_shape": [32, 32, 3]}, (3, 32, 32)),
     ({"image_shape": [8, 6]}, (1, 8, 6)), ({"kind": "bow", "vocabulary_size": 2000}, (2000,)),
     ({"shape": [3, 4, 5], "image_shape": [9, 9]}, (3, 4, 5))],
)
def test_item_shape_of_cards_written_before_shape(card, shape):
    assert item_shape(card) == shape


def test_item_shape_refuses_a_card_without_any_shape():
    with pytest.raises(DulError, match=r"the card of mnist has no shape nor image_shape; run ingest again"):
        item_shape({"dataset": "mnist"})


def _colour_rows(count=2, height=2, width=3, constants=(10, 20, 30)) -> np.ndarray:
    """Flat rows as read_split gives them: row-major, channels last (R, G, B of a pixel side by side)."""
    pixel = np.array(constants, dtype=np.float32)  # (C,)
    return np.tile(pixel, (count, height * width))  # (N, H*W*C): 10, 20, 30, 10, 20, 30, ...


def test_as_images_moves_the_stored_channels_last_to_channels_first():
    X = _colour_rows()
    images = as_images(X, (3, 2, 3))
    assert images.shape == (2, 3, 2, 3)
    for channel, constant in enumerate((10, 20, 30)):
        assert (images[:, channel] == constant).all()
    naive = X.reshape(2, 3, 2, 3)  # what a plain reshape would give: channels mixed
    assert not (naive[:, 0] == 10).all()
    X[0, 3 * 4 + 1] = 99  # row 0, pixel (h=1, w=1), channel G
    assert images[0, 1, 1, 1] == 99  # a view: no copy


def test_as_images_works_on_torch_tensors_and_grey_images():
    torch = pytest.importorskip("torch")
    images = as_images(torch.from_numpy(_colour_rows()), (3, 2, 3))
    assert isinstance(images, torch.Tensor) and tuple(images.shape) == (2, 3, 2, 3)
    assert [images[:, c].unique().tolist() for c in range(3)] == [[10.0], [20.0], [30.0]]
    grey = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(as_images(grey, (1, 2, 3)), grey.reshape(2, 1, 2, 3))
    with pytest.raises(DulError, match=r"rows of shape \(2, 6\) do not hold 3x2x3 images"):
        as_images(grey, (3, 2, 3))
