"""cifar10, cifar100, reuters21578 and rcv1-v2 through ``ingest``, on tiny files in the documented formats.

The fixture writers of test_cifar, test_reuters and test_rcv1 build the
sources; the loaders' size checks (``cifar.EXPECTED``,
``reuters.EXPECTED_DOCUMENTS``, ``rcv1.EXPECTED``/``N_TOPICS``) are set to
the fixtures' sizes and the pins to their hashes, so the real checks run.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.config import parse_section
from components.data import (
    SPLITS,
    cifar,
    ingest,
    rcv1,
    read_card,
    read_ids,
    read_split,
    reuters,
    sources,
)
from components.data.text import (
    build_vocabulary,
    read_bow_split,
    read_vocabulary,
    tokenize,
)
from components.errors import DulError
from components.io import file_md5, file_sha256
from tests.test_cifar import CIFAR10_NAMES, cifar10_members, cifar100_members, tar_gz
from tests.test_rcv1 import TOPICS, mini_documents, write_mini
from tests.test_reuters import DOCS, sgm
from tests.test_reuters import tar_gz as reuters_tar_gz

FILES = ("card.json", *(f"{split}.parquet" for split in SPLITS))


def _pin(monkeypatch, dataset: str, name: str, sha256: str | None, md5: str | None = None) -> None:
    pins = {**sources.FILE_PINS[dataset], name: sources.FilePin("x", sha256, md5)}
    monkeypatch.setitem(sources.FILE_PINS, dataset, pins)


def _same_bytes(a, b) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in FILES)


def _validation_ids(out) -> list[str]:
    return read_bow_split(out / "validation.parquet")[2]


# ---------------------------------------------------------------- CIFAR


@pytest.fixture
def cifar10_src(tmp_path, monkeypatch):
    members, truth = cifar10_members()  # 10 training, 4 test images
    (tmp_path / "src").mkdir()
    archive = tar_gz(tmp_path / "src" / "cifar-10-binary.tar.gz", members)
    _pin(monkeypatch, "cifar10", "cifar-10-binary.tar.gz", file_sha256(archive))
    monkeypatch.setitem(cifar.EXPECTED, "train", 10)
    monkeypatch.setitem(cifar.EXPECTED, "test", 4)
    return archive, truth


def test_cifar10_stores_hwc_pixels_and_reads_back_3072_floats(cifar10_src, tmp_path):
    archive, truth = cifar10_src
    card = ingest("cifar10", tmp_path / "data", source=str(archive.parent), validation_fraction=0.2, seed=0)
    assert [card["splits"][s]["count"] for s in SPLITS] == [8, 2, 4]
    assert card["image_shape"] == [32, 32, 3] and card["label_names"] == CIFAR10_NAMES and card["n_labels"] == 10
    assert card["files"] == [{"name": archive.name, "sha256": file_sha256(archive), "verified": True}]
    assert card == read_card(tmp_path / "data")
    metadata = pq.read_schema(tmp_path / "data" / "train.parquet").metadata
    assert (metadata[b"height"], metadata[b"width"], metadata[b"channels"]) == (b"32", b"32", b"3")
    ids = np.sort(np.concatenate([read_ids(tmp_path / "data", s) for s in ("train", "validation")]))
    assert ids.tolist() == list(range(10))
    for split, (labels, images) in (("validation", truth["train"]), ("test", truth["test"])):
        X, y = read_split(tmp_path / "data", split)
        rows = read_ids(tmp_path / "data", split)
        assert X.dtype == np.float32 and X.shape == (len(rows), 3072) and 0 <= X.min() and X.max() <= 1
        np.testing.assert_array_equal(X * 255, images[rows].reshape(len(rows), 3072))  # H, W, then R G B
        np.testing.assert_array_equal(y, labels[rows])


def test_cifar_rerun_is_byte_identical_and_the_holdout_follows_the_seed(cifar10_src, tmp_path):
    archive, _ = cifar10_src
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        ingest("cifar10", tmp_path / name, source=str(archive), validation_fraction=0.3, seed=seed)
    assert _same_bytes(tmp_path / "a", tmp_path / "b")
    validation = [read_ids(tmp_path / name, "validation").tolist() for name in ("a", "c")]
    assert len(validation[0]) == len(validation[1]) == 3 and validation[0] != validation[1]


def test_cifar10_from_a_mirror_is_cached_with_its_url(cifar10_src, tmp_path):
    archive, _ = cifar10_src
    card = ingest("cifar10", tmp_path / "data", source=archive.parent.as_uri(), cache_dir=tmp_path / "cache")
    assert card["files"][0]["url"] == archive.parent.as_uri() + "/cifar-10-binary.tar.gz"
    assert card["files"][0]["verified"] is True
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == ["cifar-10-binary.tar.gz"]


def test_cifar100_keeps_fine_labels_and_names_the_superclasses(tmp_path, monkeypatch):
    members, truth = cifar100_members()  # 5 training, 3 test images
    archive = tar_gz(tmp_path / "cifar-100-binary.tar.gz", members)
    monkeypatch.setitem(cifar.EXPECTED, "train", 5)
    monkeypatch.setitem(cifar.EXPECTED, "test", 3)
    _pin(monkeypatch, "cifar100", archive.name, None)
    card = ingest("cifar100", tmp_path / "data", source=str(archive), validation_fraction=0.2)
    assert [card["splits"][s]["count"] for s in SPLITS] == [4, 1, 3] and card["n_labels"] == 100
    assert card["label_names"][:2] == ["fine0", "fine1"] and len(card["coarse_label_names"]) == 20
    assert card["files"][0]["verified"] is False  # nothing pinned
    X, y = read_split(tmp_path / "data", "test")
    assert X.shape == (3, 3072) and y.tolist() == truth["test"][0][:, 1].tolist()


@pytest.mark.parametrize("case", ["checksum", "missing"])
def test_a_bad_cifar_source_writes_nothing(cifar10_src, tmp_path, monkeypatch, case):
    archive, _ = cifar10_src
    if case == "checksum":
        _pin(monkeypatch, "cifar10", archive.name, "0" * 64)
        message = r"cifar-10-binary\.tar\.gz: checksum mismatch: expected sha256 0{64}, got [0-9a-f]{64}"
    else:
        archive.unlink()
        message = r"cifar-10-binary\.tar\.gz not found; put cifar-10-binary\.tar\.gz there"
    with pytest.raises(DulError, match=message):
        ingest("cifar10", tmp_path / "data", source=str(archive.parent))
    assert not (tmp_path / "data").exists()


def test_grey_datasets_record_one_channel(tmp_path):
    card = ingest("digits", tmp_path / "data")
    assert card["image_shape"] == [8, 8]
    assert pq.read_schema(tmp_path / "data" / "test.parquet").metadata[b"channels"] == b"1"


# ---------------------------------------------------------------- Reuters-21578


@pytest.fixture
def reuters_src(tmp_path, monkeypatch):
    """The 11 documents of test_reuters.DOCS in two .sgm files; ModApte 'all': 4 train, 3 test."""
    folder = tmp_path / "reuters"
    folder.mkdir()
    (folder / "reut2-000.sgm").write_bytes(sgm(DOCS[:6]))
    (folder / "reut2-001.sgm").write_bytes(sgm(DOCS[6:8] + [(*DOCS[8], True)] + DOCS[9:]))
    monkeypatch.setattr(reuters, "EXPECTED_DOCUMENTS", 11)
    return folder


def test_reuters_all_is_multi_label_bow_with_a_training_vocabulary(reuters_src, tmp_path):
    out = tmp_path / "data"
    card = ingest("reuters21578", out, source=str(reuters_src), validation_fraction=0.25, vocabulary_size=50)
    assert (card["kind"], card["multi_label"], card["n_labels"]) == ("bow", True, 3)
    assert card["label_names"] == ["acq", "crude", "earn"] and card["split"]["topics"] == "all"
    assert [card["splits"][s]["count"] for s in SPLITS] == [3, 1, 3]
    assert card["splits"]["test"]["label_counts"] == {"0": 2, "1": 1, "2": 1}  # docs 3 [earn], 4 [acq], 10 [acq, crude]
    assert [f["name"] for f in card["files"]] == ["reut2-000.sgm", "reut2-001.sgm"]
    assert {f["verified"] for f in card["files"]} == {False}
    table = pq.read_table(out / "test.parquet")
    assert table.column("id").to_pylist() == ["3", "4", "10"]
    assert table.column("labels").to_pylist() == [[2], [0], [0, 1]] and table.column("label").to_pylist() == [2, 0, 0]
    corpus = reuters.load_reuters(reuters_src, expected_documents=None)
    texts = dict(zip(corpus["train"]["ids"], corpus["train"]["texts"]))
    train_ids = read_bow_split(out / "train.parquet")[2]
    assert set(train_ids) | set(_validation_ids(out)) == {"1", "2", "9", "11"}
    vocabulary = read_vocabulary(out / "train.parquet")
    assert vocabulary == build_vocabulary([tokenize(texts[i]) for i in train_ids], 50)
    assert card["vocabulary_size"] == len(vocabulary) and read_vocabulary(out / "test.parquet") == vocabulary
    X, y = read_split(out, "test")
    assert X.dtype == np.float32 and X.shape == (3, len(vocabulary)) and y.tolist() == [2, 0, 0]
    from components.data import read_label_sets

    sets = read_label_sets(out, "test")  # every topic, not only the first: doc 10 is acq and crude
    assert sets.dtype == bool and sets.astype(int).tolist() == [[0, 0, 1], [1, 0, 0], [1, 1, 0]]


def test_reuters_r8_is_single_label_and_reads_from_the_archive(reuters_src, tmp_path, monkeypatch):
    archive = reuters_tar_gz(reuters_src, tmp_path / "reuters21578.tar.gz")
    _pin(monkeypatch, "reuters21578", archive.name, file_sha256(archive))
    card = ingest("reuters21578", tmp_path / "data", source=str(archive), validation_fraction=0.0, topics="R8")
    assert card["multi_label"] is False and card["label_names"] == ["acq", "earn"]
    assert [card["splits"][s]["count"] for s in SPLITS] == [2, 0, 2]
    assert card["files"] == [{"name": archive.name, "sha256": file_sha256(archive), "verified": True}]
    assert "labels" not in pq.read_schema(tmp_path / "data" / "train.parquet").names


def test_reuters_rerun_is_byte_identical_and_the_holdout_follows_the_seed(reuters_src, tmp_path):
    for name, seed in (("a", 0), ("b", 0), *((f"s{s}", s) for s in range(1, 6))):
        ingest("reuters21578", tmp_path / name, source=str(reuters_src), validation_fraction=0.5, seed=seed)
    assert _same_bytes(tmp_path / "a", tmp_path / "b")
    held_out = {tuple(_validation_ids(tmp_path / name)) for name in ("a", "s1", "s2", "s3", "s4", "s5")}
    assert len(held_out) > 1 and {len(ids) for ids in held_out} == {2}


def test_an_md5_pin_is_checked_where_no_sha256_is_known(reuters_src, tmp_path, monkeypatch):
    """Reuters-21578's archive is pinned by its published md5 only."""
    assert sources.FILE_PINS["reuters21578"]["reuters21578.tar.gz"].md5 == "a22faadd7dde0dfdd784e60087209aa6"
    archive = reuters_tar_gz(reuters_src, tmp_path / "reuters21578.tar.gz")
    _pin(monkeypatch, "reuters21578", archive.name, None, file_md5(archive))
    card = ingest("reuters21578", tmp_path / "data", source=str(archive), validation_fraction=0.0)
    assert card["files"][0]["verified"] is True
    _pin(monkeypatch, "reuters21578", archive.name, None, "0" * 32)
    with pytest.raises(DulError, match=r"reuters21578\.tar\.gz: checksum mismatch: expected md5 0{32}, got [0-9a-f]{32}"):
        ingest("reuters21578", tmp_path / "data2", source=str(archive), validation_fraction=0.0)
    assert not (tmp_path / "data2").exists()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pin": "0" * 64}, r"reuters21578\.tar\.gz: checksum mismatch: expected sha256 0{64}"),
    ({"remove": ("headers",)}, r"ingest\.remove is \['headers'\] but it applies to 20newsgroups only"),
    ({"topics": "R88"}, r"ingest\.topics is 'R88'; did you mean 'R8'\? choose one of: all, R52, R8$"),
])
def test_bad_reuters_input_writes_nothing(reuters_src, tmp_path, monkeypatch, kwargs, message):
    archive = reuters_tar_gz(reuters_src, tmp_path / "reuters21578.tar.gz")
    if "pin" in kwargs:
        _pin(monkeypatch, "reuters21578", archive.name, kwargs.pop("pin"))
    with pytest.raises(DulError, match=message):
        ingest("reuters21578", tmp_path / "data", source=str(tmp_path), **kwargs)
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- RCV1-v2


@pytest.fixture
def rcv1_src(tmp_path, monkeypatch):
    """40 documents (100..139), 10 of them (100..109) in the training file; 5 topics."""
    documents, train_ids = mini_documents(), [str(d) for d in range(100, 110)]
    folder = write_mini(tmp_path / "rcv1", documents, train_ids)
    _pin(monkeypatch, "rcv1-v2", rcv1.QRELS_FILE, file_sha256(folder / rcv1.QRELS_FILE))
    monkeypatch.setattr(rcv1, "N_TOPICS", len(TOPICS))
    monkeypatch.setitem(rcv1.EXPECTED, "lyrl2004", {"train": 10, "test": 30})
    monkeypatch.setitem(rcv1.EXPECTED, "random", {"train": 20, "test": 20})
    return folder, documents, train_ids


def test_rcv1_streams_multi_label_splits_with_a_seeded_holdout(rcv1_src, tmp_path):
    folder, documents, train_ids = rcv1_src
    out = tmp_path / "data"
    card = ingest("rcv1-v2", out, source=str(folder), validation_fraction=0.2, vocabulary_size=20)
    assert (card["kind"], card["multi_label"], card["label_names"]) == ("bow", True, TOPICS)
    assert [card["splits"][s]["count"] for s in SPLITS] == [8, 2, 30]
    assert card["source"] == str(folder) and card["split"]["rcv1_split"] == "lyrl2004"
    verified = {f["name"]: f["verified"] for f in card["files"]}  # the token files have no published hash
    assert len(verified) == 6 and verified == {name: name == rcv1.QRELS_FILE for name in verified}
    held_out = _validation_ids(out)
    train = read_bow_split(out / "train.parquet")[2]
    assert sorted(train + held_out, key=int) == train_ids
    vocabulary = read_vocabulary(out / "train.parquet")
    assert vocabulary == build_vocabulary([documents[d][0] for d in train], 20) and card["vocabulary_size"] == 20
    table = pq.read_table(out / "test.parquet", columns=["id", "label", "labels"])
    expected = [[TOPICS.index(t) for t in documents[d][1]] for d in table.column("id").to_pylist()]
    assert table.column("labels").to_pylist() == expected
    assert table.column("label").to_pylist() == [labels[0] for labels in expected]
    per_topic = np.sum([np.isin(range(5), labels) for labels in expected], axis=0)
    assert card["splits"]["test"]["label_counts"] == {str(k): int(n) for k, n in enumerate(per_topic)}
    X, y = read_split(out, "validation")
    assert X.shape == (2, 20) and X.dtype == np.float32 and y.dtype == np.int64


def test_rcv1_rerun_is_byte_identical_and_random_halves_follow_the_seed(rcv1_src, tmp_path):
    folder, _, _ = rcv1_src
    for name, seed, scheme in (("a", 3, "lyrl2004"), ("b", 3, "lyrl2004"), ("c", 4, "lyrl2004"), ("r", 0, "random")):
        ingest("rcv1-v2", tmp_path / name, source=str(folder), seed=seed, validation_fraction=0.3, rcv1_split=scheme)
    assert _same_bytes(tmp_path / "a", tmp_path / "b")
    assert _validation_ids(tmp_path / "a") != _validation_ids(tmp_path / "c")
    assert [read_card(tmp_path / "r")["splits"][s]["count"] for s in SPLITS] == [14, 6, 20]


def test_rcv1_from_a_mirror_downloads_the_six_files(rcv1_src, tmp_path):
    folder, _, _ = rcv1_src
    card = ingest("rcv1-v2", tmp_path / "data", source=folder.as_uri() + "/", cache_dir=tmp_path / "cache")
    assert [f["url"] for f in card["files"]] == [f"{folder.as_uri()}/{name}" for name in sources.FILE_PINS["rcv1-v2"]]
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 6
    assert json.loads((tmp_path / "data" / "card.json").read_text())["splits"]["test"]["count"] == 30


@pytest.mark.parametrize("case", ["missing qrels", "checksum", "bad split"])
def test_a_bad_rcv1_source_writes_nothing(rcv1_src, tmp_path, monkeypatch, case):
    folder, _, _ = rcv1_src
    kwargs = {}
    if case == "missing qrels":
        (folder / rcv1.QRELS_FILE).unlink()
        message = r"rcv1-v2\.topics\.qrels\.gz not found; put rcv1-v2\.topics\.qrels\.gz there and set ingest\.source"
    elif case == "checksum":
        _pin(monkeypatch, "rcv1-v2", rcv1.TEST_FILES[2], "0" * 64)
        message = r"lyrl2004_tokens_test_pt2\.dat\.gz: checksum mismatch: expected sha256 0{64}"
    else:
        kwargs, message = {"rcv1_split": "halves"}, r"ingest\.rcv1_split is 'halves'; choose one of: lyrl2004, random"
    with pytest.raises(DulError, match=message):
        ingest("rcv1-v2", tmp_path / "data", source=str(folder), **kwargs)
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- names and params


def test_an_unknown_dataset_lists_every_one(tmp_path):
    with pytest.raises(DulError, match=r"unknown dataset 'cifar' \(ingest\.dataset\); did you mean 'cifar10'\? "
                                       r"choose one of: digits, .*, cifar10, cifar100, 20newsgroups, reuters21578, rcv1-v2$"):
        ingest("cifar", tmp_path / "data")


def test_ingest_params_accept_the_new_keys():
    params = parse_section("ingest", {"dataset": "reuters21578", "topics": "R52", "rcv1_split": "random"})
    assert (params.topics, params.rcv1_split) == ("R52", "random")


def test_retrieval_selection_scores_multi_label_hits_by_any_topic(reuters_src, tmp_path):
    """fine-tuning's keep: best_precision reads every topic of a Reuters document, not the first."""
    from components.training import selection

    out = tmp_path / "data"
    ingest("reuters21578", out, source=str(reuters_src), validation_fraction=0.25, vocabulary_size=50)
    _, labels = selection.head_rows(out, "train", 10)
    train_ids = read_bow_split(out / "train.parquet")[2]
    topics = {"1": [2], "2": [0, 2], "9": [1], "11": [0]}  # test_reuters.DOCS, indices into acq, crude, earn
    assert labels == [topics[i] for i in train_ids]
    score = selection.RetrievalScore(out)
    assert score.database_labels.astype(int).tolist() == [[int(j in topics[i]) for j in range(3)] for i in train_ids]


def test_reuters_under_the_vdsh_protocol_keeps_the_top_topics_and_drops_unlabelled_test_documents(tmp_path,
                                                                                                 monkeypatch):
    """The papers' Reuters: the 20 most frequent ModApte topics (here 2 of 3, the protocol's count patched),
    multi-label; test documents without one of them dropped; the test split halved by seed."""
    from components.data import corpora, read_label_sets

    words = "oil price barrel crude opec market trade deal export"
    docs, newid = [], 0
    for topics, split, times in ((["crude"], "TRAIN", 4), (["trade"], "TRAIN", 3), (["crude", "trade"], "TRAIN", 2),
                                 (["acq"], "TRAIN", 1), (["crude"], "TEST", 3), (["acq"], "TEST", 2),
                                 (["trade", "acq"], "TEST", 1)):
        for _ in range(times):
            newid += 1
            docs.append((newid, split, "YES", topics))
    folder = tmp_path / "reuters"
    folder.mkdir()
    (folder / "reut2-000.sgm").write_bytes(sgm(docs).replace(b"Body of story", words.encode() * 1 + b" Body"))
    monkeypatch.setattr(reuters, "EXPECTED_DOCUMENTS", len(docs))
    monkeypatch.setattr(corpora, "REUTERS_VDSH_TOPICS", 2)
    monkeypatch.setitem(corpora.VDSH, "min_df", 1)  # the vocabulary rules are tested on 20 Newsgroups
    monkeypatch.setitem(corpora.VDSH, "max_df", 1.0)
    card = ingest("reuters21578", tmp_path / "data", source=str(folder), protocol="vdsh", seed=0)
    assert card["multi_label"] and card["label_names"] == ["crude", "trade"]  # acq: one training document
    assert card["split"]["dropped"]["test_unlabelled"] == 2  # the two acq-only test documents
    assert [card["splits"][s]["count"] for s in ("train", "validation", "test")] == [10, 2, 2]
    sets = {s: read_label_sets(tmp_path / "data", s) for s in ("validation", "test")}
    assert all(row.any() for part in sets.values() for row in part)  # every test document has a kept topic
    both = read_label_sets(tmp_path / "data", "train")
    assert both.sum(0).tolist() == [6, 5] and (both.sum(1) == 0).sum() == 1  # the acq training document stays
