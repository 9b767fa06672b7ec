"""binarized-mnist through ``ingest``: tiny ``.amat`` files in the published format.

Each file holds a few rows of 784 space-separated 0/1 digits;
``amat.EXPECTED_ROWS`` is set to the fixture's sizes and the pins to its
files' sha256, so the real row-count and checksum checks run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from components.data import SPLITS, amat, ingest, item_shape, read_card, read_ids, read_split, sources
from components.errors import DulError
from components.io import file_sha256

ROWS = {"train": 5, "validation": 2, "test": 3}
OUT_FILES = ["card.json", "test.parquet", "train.parquet", "validation.parquet"]


def _write(path, bits: np.ndarray) -> None:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in bits))


def _pin_files(folder, monkeypatch) -> None:
    pins = {name: sources.FilePin(amat.BASE_URL + name, file_sha256(folder / name)) for name in amat.FILES.values()}
    monkeypatch.setitem(sources.FILE_PINS, amat.DATASET, pins)


@pytest.fixture
def amat_src(tmp_path, monkeypatch):
    """A folder with the three files (5 / 2 / 3 rows), pinned; the bits each split holds."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "src"
    folder.mkdir()
    bits = {split: rng.integers(0, 2, (count, amat.N_VALUES), dtype=np.uint8) for split, count in ROWS.items()}
    for split, name in amat.FILES.items():
        _write(folder / name, bits[split])
    _pin_files(folder, monkeypatch)
    monkeypatch.setattr(amat, "EXPECTED_ROWS", dict(ROWS))
    return folder, bits


def test_ingest_writes_the_files_own_splits_as_0_1_pixels(amat_src, tmp_path):
    folder, bits = amat_src
    out = tmp_path / "data"
    card = ingest("binarized-mnist", out, source=str(folder), validation_fraction=0.3, seed=5)
    assert sorted(p.name for p in out.iterdir()) == OUT_FILES
    for split in SPLITS:
        X, y = read_split(out, split)
        assert X.dtype == np.float32 and X.shape == (ROWS[split], 784)
        np.testing.assert_array_equal(X, bits[split].astype(np.float32))  # exactly 0.0 / 1.0
        np.testing.assert_array_equal(y, np.full(ROWS[split], -1))
        np.testing.assert_array_equal(read_ids(out, split), np.arange(ROWS[split]))
    assert card == read_card(out)
    assert card["shape"] == [1, 28, 28] and card["n_features"] == 784 and card["image_shape"] == [28, 28]
    assert card["labels"] is False and card["n_labels"] == 0 and card["label_names"] == []
    assert card["binarization"] == "fixed (Larochelle & Murray 2011)"
    assert card["split"] == "the files' own train/valid/test"  # validation_fraction does not apply
    assert card["splits"] == {split: {"count": count} for split, count in ROWS.items()}
    assert [f["name"] for f in card["files"]] == list(amat.FILES.values())
    assert all(f["verified"] and f["sha256"] == file_sha256(folder / f["name"]) for f in card["files"])
    assert item_shape(card) == (1, 28, 28)


def test_ingest_is_byte_identical_on_rerun(amat_src, tmp_path):
    folder, _ = amat_src
    ingest("binarized-mnist", tmp_path / "a", source=str(folder))
    ingest("binarized-mnist", tmp_path / "b", source=str(folder))
    for name in OUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_file_url_mirror_is_fetched_into_the_cache(amat_src, tmp_path):
    folder, bits = amat_src
    card = ingest("binarized-mnist", tmp_path / "data", source=folder.as_uri(), cache_dir=tmp_path / "cache")
    assert [f["url"] for f in card["files"]] == [f"{folder.as_uri()}/{name}" for name in amat.FILES.values()]
    assert card["source"] == folder.as_uri() and all(f["verified"] for f in card["files"])
    np.testing.assert_array_equal(read_split(tmp_path / "data", "test")[0], bits["test"])
    assert len([p for p in (tmp_path / "cache").rglob("*.amat")]) == 3


def test_the_canonical_pins_refuse_other_files(amat_src, tmp_path, monkeypatch):
    folder, _ = amat_src
    monkeypatch.setitem(sources.FILE_PINS, amat.DATASET, amat.PINS)
    train = amat.PINS["binarized_mnist_train.amat"].sha256
    with pytest.raises(DulError, match=rf"binarized_mnist_train\.amat: checksum mismatch: expected sha256 {train}"):
        ingest("binarized-mnist", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data").exists()


def test_canonical_pins_are_sha256_of_the_published_urls():
    assert list(amat.PINS) == list(amat.FILES.values())
    for name, pin in amat.PINS.items():
        assert re.fullmatch(r"[0-9a-f]{64}", pin.sha256)
        assert pin.url == f"http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/{name}"
    assert amat.EXPECTED_ROWS == {"train": 50_000, "validation": 10_000, "test": 10_000}


def _row(values: list[str]) -> str:
    return " ".join(values) + "\n"


ZEROS = ["0"] * 784
# case -> (the train file's text, the line named, the message after "<file> line <n>: ")
MALFORMED = {
    "token 2": (_row(ZEROS) + _row(ZEROS[:9] + ["2"] + ZEROS[10:]) * 4, 2, r"value '2' at position 10 is not 0 or 1"),
    "token x": (_row(["x"] + ZEROS[1:]) * 5, 1, r"value 'x' at position 1 is not 0 or 1"),
    "token 01": (_row(ZEROS[:783] + ["01"]) * 5, 1, r"value '01' at position 784 is not 0 or 1"),
    "783 values": (_row(ZEROS) * 2 + _row(ZEROS[1:]) + _row(ZEROS) * 2, 3, r"783 values, expected 784"),
    "785 values": (_row(ZEROS + ["1"]) * 5, 1, r"785 values, expected 784"),
    "blank line": (_row(ZEROS) * 4 + "\n" + _row(ZEROS), 5, r"0 values, expected 784"),
    "one row too many": (_row(ZEROS) * 6, 6, r"more rows than the 5 expected"),
    "one row too few": (_row(ZEROS) * 4, 5, r"the file ends after 4 rows, 5 expected"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_file_is_refused_in_one_line_and_nothing_is_written(amat_src, tmp_path, monkeypatch, case):
    folder, _ = amat_src
    body, line, problem = MALFORMED[case]
    train = folder / "binarized_mnist_train.amat"
    train.write_text(body)
    _pin_files(folder, monkeypatch)
    out = tmp_path / "data"
    with pytest.raises(DulError) as caught:
        ingest("binarized-mnist", out, source=str(folder))
    message = str(caught.value)
    assert "\n" not in message
    assert re.match(rf"{re.escape(str(train))} line {line}: {problem}; ", message), message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporaries beside it either


def test_read_amat_takes_its_own_row_count(tmp_path):
    bits = np.eye(3, 784, dtype=np.uint8)
    _write(tmp_path / "x.amat", bits)
    np.testing.assert_array_equal(amat.read_amat(tmp_path / "x.amat", 3), bits)
    with pytest.raises(DulError, match=r"x\.amat line 4: the file ends after 3 rows, 4 expected"):
        amat.read_amat(tmp_path / "x.amat", 4)


def test_crlf_line_ends_are_read_as_the_same_bits(tmp_path):
    bits = np.eye(2, 784, k=5, dtype=np.uint8)
    (tmp_path / "x.amat").write_bytes(b"".join(b" ".join(b"%d" % v for v in row) + b"\r\n" for row in bits))
    np.testing.assert_array_equal(amat.read_amat(tmp_path / "x.amat", 2), bits)
