"""Tests for components.data.rcv1 (LYRL2004 token files, qrels, splits) and
components.data.bow_stream (two-pass Parquet writer, batched reader).

A miniature RCV1 is written here in the documented formats: five token
files (gzip) and a qrels file, 40 documents with ids 100..139.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.data import rcv1
from components.data.bow_stream import (
    in_memory_records,
    iter_bow_batches,
    write_bow_stream,
)
from components.data.text import (
    build_vocabulary,
    count_vectors,
    read_bow_split,
    read_vocabulary,
)
from components.errors import DulError

TOPICS = ["C15", "CCAT", "E21", "ECAT", "GCAT"]
WORDS = [f"w{i}" for i in range(30)]


def mini_documents(n: int = 40, seed: int = 0) -> dict[str, tuple[list[str], list[str]]]:
    """docid -> (tokens, topic names); word i drawn with weight 1/(i+1), a document may be empty."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, len(WORDS) + 1)
    documents = {}
    for k in range(n):
        tokens = [WORDS[i] for i in rng.choice(len(WORDS), int(rng.integers(0, 40)), p=weights / weights.sum())]
        topics = sorted(rng.choice(TOPICS, int(rng.integers(1, 4)), replace=False).tolist())
        documents[str(100 + k)] = (tokens, topics)
    documents["100"] = ([], ["CCAT"])  # an empty document is a record too
    return documents


def write_mini(folder: Path, documents: dict, train_ids: list[str]) -> Path:
    """The five token files (train: ``train_ids``; the rest over four test parts) and the qrels."""
    folder.mkdir(parents=True, exist_ok=True)
    test_ids = [d for d in documents if d not in train_ids]
    parts = [train_ids] + [test_ids[i::4] for i in range(4)]
    for name, ids in zip(rcv1.TRAIN_FILES + rcv1.TEST_FILES, parts):
        rcv1.write_token_file(folder / name, [(d, documents[d][0]) for d in ids], line_tokens=7)
    rcv1.write_qrels(folder / rcv1.QRELS_FILE, [(d, documents[d][1]) for d in reversed(list(documents))])
    return folder


@pytest.fixture
def mini(tmp_path):
    documents = mini_documents()
    train_ids = [str(d) for d in range(100, 110)]
    return write_mini(tmp_path / "rcv1", documents, train_ids), documents, train_ids


def test_token_file_records_span_several_lines(tmp_path):
    path = tmp_path / "t.dat"
    path.write_text(".I 7\n.W\nalpha beta\ngamma\n\n.I 8\n.W\n\n.I 9\n.W\ndelta\n")
    assert list(rcv1.iter_token_file(path)) == [("7", ["alpha", "beta", "gamma"]), ("8", []), ("9", ["delta"])]


def test_qrels_become_sorted_topic_indices_per_document(mini):
    folder, documents, _ = mini
    qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE, expected_topics=5)
    assert qrels.topic_names == TOPICS
    assert qrels.doc_ids.tolist() == list(range(100, 140))
    row = qrels.row(105)
    assert [TOPICS[t] for t in qrels.topics[qrels.indptr[row] : qrels.indptr[row + 1]]] == documents["105"][1]
    assert qrels.row(99) == -1 and qrels.row(140) == -1
    with pytest.raises(DulError, match=r"5 topics, expected 103"):
        rcv1.read_qrels(folder / rcv1.QRELS_FILE)


def test_lyrl2004_split_is_the_train_file_then_the_four_test_files(mini):
    folder, documents, train_ids = mini
    qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE, expected_topics=None)
    records = list(rcv1.iter_rcv1(folder, qrels=qrels, expected=False))
    assert [split for split, _ in records] == ["train"] * 10 + ["test"] * 30
    assert [record[0] for _, record in records[:10]] == train_ids
    assert sorted(record[0] for _, record in records) == sorted(documents)
    for _, (docid, labels, title, tokens) in records:
        assert tokens == documents[docid][0] and [TOPICS[t] for t in labels] == documents[docid][1]
        assert title == " ".join(tokens[:10])
    only_train = list(rcv1.iter_rcv1(folder, qrels=qrels, splits=["train"], expected=False))
    assert only_train == records[:10]
    with pytest.raises(DulError, match=r"RCV1 split sizes \{'train': 10, 'test': 30\}, expected"):
        list(rcv1.iter_rcv1(folder, qrels=qrels))


def test_random_split_is_seeded_halves_of_the_collection(mini):
    folder, documents, _ = mini
    qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE, expected_topics=None)
    draws = [list(rcv1.iter_rcv1(folder, scheme="random", seed=s, qrels=qrels, expected=False)) for s in (0, 0, 1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    train = {record[0] for split, record in draws[0] if split == "train"}
    assert len(train) == 20 and len(draws[0]) == 40
    assert {record[0] for split, record in draws[0] if split == "test"} == set(documents) - train


def test_stream_to_parquet_matches_the_in_memory_bag_of_words(mini, tmp_path):
    folder, documents, train_ids = mini
    qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE, expected_topics=None)

    def records(wanted):
        return rcv1.iter_rcv1(folder, qrels=qrels, splits=wanted, expected=False)

    out = tmp_path / "bow"
    summary = write_bow_stream(out, records, label_names=TOPICS, multi_label=True, vocab_size=12, row_group_size=4)
    vocabulary = build_vocabulary([documents[d][0] for d in train_ids], 12)
    assert read_vocabulary(out / "train.parquet") == vocabulary and summary["vocabulary_size"] == 12
    train_counts = count_vectors([documents[d][0] for d in train_ids], vocabulary)
    n_empty = int((train_counts.getnnz(axis=1) == 0).sum())
    assert n_empty >= 1  # document 100 has no tokens
    assert summary["splits"]["train"] == {"count": 10, "n_empty": n_empty} and summary["splits"]["test"]["count"] == 30
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet"]
    assert pq.ParquetFile(out / "test.parquet").metadata.num_row_groups == 8  # 30 rows in groups of 4

    test_ids = [record[0] for _, record in records({"test"})]
    expected = count_vectors([documents[d][0] for d in test_ids], vocabulary)
    counts, label, ids = read_bow_split(out / "test.parquet")  # the text.py reader reads it too
    assert ids == test_ids and (counts != expected).nnz == 0 and counts.nnz > 50
    assert label.tolist() == [TOPICS.index(documents[d][1][0]) for d in test_ids]  # the smallest label

    batches = list(iter_bow_batches(out / "test.parquet", batch_size=7, multi_label=True))
    assert [b[0].shape for b in batches] == [(7, 12)] * 4 + [(2, 12)]
    assert batches[0][0].dtype == np.float32
    stacked = np.vstack([b[0].toarray() for b in batches])
    np.testing.assert_array_equal(stacked, expected.toarray())
    indicator = np.vstack([b[1] for b in batches])
    assert indicator.dtype == bool and indicator.shape == (30, 5)
    assert [[TOPICS[t] for t in np.flatnonzero(row)] for row in indicator] == [documents[d][1] for d in test_ids]
    single = np.concatenate([b[1] for b in iter_bow_batches(out / "test.parquet", batch_size=7)])
    assert single.tolist() == label.tolist()


def test_stream_writer_is_deterministic_and_takes_in_memory_corpora(tmp_path):
    splits = {
        "train": {"ids": ["a", "b"], "labels": [1, 0], "titles": ["A", "B"], "texts": ["x y y", "z y"]},
        "test": {"ids": ["c"], "labels": [1], "titles": ["C"], "texts": ["y q"]},
    }
    records = in_memory_records(splits, str.split)
    for name in ("a", "b"):
        write_bow_stream(tmp_path / name, records, label_names=["n", "p"], vocab_size=2)
    for split in ("train", "test"):
        assert (tmp_path / "a" / f"{split}.parquet").read_bytes() == (tmp_path / "b" / f"{split}.parquet").read_bytes()
    counts, labels, ids = read_bow_split(tmp_path / "a" / "train.parquet")
    assert read_vocabulary(tmp_path / "a" / "test.parquet") == ["y", "x"]
    assert counts.toarray().tolist() == [[2, 1], [1, 0]] and labels.tolist() == [1, 0] and ids == ["a", "b"]


def test_gzip_and_plain_token_files_read_alike(tmp_path):
    documents = [("1", ["a", "b"]), ("2", ["c"])]
    rcv1.write_token_file(tmp_path / "t.dat.gz", documents)
    rcv1.write_token_file(tmp_path / "t.dat", documents)
    assert gzip.decompress((tmp_path / "t.dat.gz").read_bytes()) == (tmp_path / "t.dat").read_bytes()
    assert list(rcv1.iter_token_file(tmp_path / "t.dat.gz")) == list(rcv1.iter_token_file(tmp_path / "t.dat"))
