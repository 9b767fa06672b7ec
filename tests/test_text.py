"""Tests for components.data.text (bag of words, Parquet splits) and
components.data.newsgroups (20 Newsgroups from its tar.gz).

The real archive (../shared/data/20news-bydate/20news-bydate.tar.gz, see its
README for the counts asserted here) is read once per module; tests that
need it are skipped where it is absent. Everything else runs on tiny
archives and tables built in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer

from components.data import newsgroups
from components.data.newsgroups import load_20newsgroups
from components.data.text import (
    STOP_WORDS,
    TOKEN_PATTERN,
    build_vocabulary,
    count_vectors,
    read_bow_split,
    read_titles,
    read_vocabulary,
    tokenize,
    write_bow_split,
)
from components.errors import DulError

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "20news-bydate" / "20news-bydate.tar.gz"
# per-class counts in sorted group order, from the archive's README
TRAIN_COUNTS = [480, 584, 591, 590, 578, 593, 585, 594, 598, 597, 600, 595, 591, 594, 593, 599, 546, 564, 465, 377]
TEST_COUNTS = [319, 389, 394, 392, 385, 395, 390, 396, 398, 397, 399, 396, 393, 396, 394, 398, 364, 376, 310, 251]
real = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} is not here")


@pytest.fixture(scope="module")
def news() -> dict:
    return load_20newsgroups(ARCHIVE)


@pytest.fixture(scope="module")
def train_tokens(news) -> list[list[str]]:
    return [tokenize(text) for text in news["train"]["texts"]]


@pytest.fixture(scope="module")
def vocabulary(train_tokens) -> list[str]:
    return build_vocabulary(train_tokens, size=2000)


# ---------------------------------------------------------------- real archive


@real
def test_the_real_archive_has_the_published_split(news):
    assert news["archive"] == {"name": ARCHIVE.name, "sha256": newsgroups.SHA256, "verified": True}
    assert len(news["label_names"]) == 20
    assert news["label_names"][0] == "alt.atheism" and news["label_names"][-1] == "talk.religion.misc"
    for split, expected in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        part = news[split]
        assert len(part["ids"]) == len(part["texts"]) == len(part["titles"]) == sum(expected)
        assert np.bincount(part["labels"], minlength=20).tolist() == expected
        assert len(set(part["ids"])) == len(part["ids"])
        assert part["n_empty"] == 0
    assert len(news["train"]["ids"]) == 11_314 and len(news["test"]["ids"]) == 7_532
    assert news["train"]["ids"][0] == "alt.atheism/49960"
    assert news["train"]["titles"][0] == "Alt.Atheism FAQ: Atheist Resources"


@real
def test_the_vocabulary_is_the_top_2000_train_words_by_total_count(news, train_tokens, vocabulary):
    assert len(vocabulary) == 2000 == len(set(vocabulary))
    assert not STOP_WORDS & set(vocabulary)
    assert build_vocabulary(train_tokens[::-1], size=2000) == vocabulary  # order of documents is irrelevant
    # independent ranking: scikit-learn's total counts, sorted by (-count, word)
    vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words=sorted(STOP_WORDS))
    totals = np.asarray(vectorizer.fit_transform(news["train"]["texts"]).sum(axis=0)).ravel()
    words = vectorizer.get_feature_names_out()
    assert vocabulary == [str(words[i]) for i in np.lexsort((words, -totals))[:2000]]


@real
def test_count_vectors_agree_with_scikit_learn_on_a_sample(news, vocabulary):
    rng = np.random.default_rng(0)
    texts = [news[split]["texts"][i] for split in ("train", "test") for i in rng.choice(len(news[split]["texts"]), 300)]
    ours = count_vectors([tokenize(text) for text in texts], vocabulary)
    theirs = CountVectorizer(vocabulary=vocabulary, token_pattern=TOKEN_PATTERN).transform(texts)
    assert ours.dtype == np.int32 and ours.shape == (600, 2000) and ours.has_canonical_format
    assert ours.sum() > 50_000
    assert (ours != theirs).nnz == 0


@real
def test_a_real_split_round_trips_through_parquet(tmp_path, news, vocabulary):
    part = news["test"]
    counts = count_vectors([tokenize(text) for text in part["texts"][:2000]], vocabulary)
    ids, labels, titles = part["ids"][:2000], part["labels"][:2000], part["titles"][:2000]
    path = tmp_path / "test.parquet"
    write_bow_split(path, ids, labels, counts, titles, vocabulary)
    read_counts, read_labels, read_ids = read_bow_split(path)
    assert read_counts.dtype == np.int32 and read_counts.shape == counts.shape
    assert (read_counts != counts).nnz == 0 and read_counts.nnz == counts.nnz > 0
    assert np.array_equal(read_labels, labels) and read_labels.dtype == np.int64
    assert read_ids == ids and read_titles(path) == titles and read_vocabulary(path) == vocabulary


@real
def test_remove_matches_scikit_learns_heuristics(news):
    twenty = pytest.importorskip("sklearn.datasets._twenty_newsgroups")
    if not hasattr(twenty, "strip_newsgroup_quoting"):
        pytest.skip("this scikit-learn has no strip_newsgroup_* helpers")
    texts = news["train"]["texts"][::25]
    for ours, theirs in (
        (newsgroups.strip_header, twenty.strip_newsgroup_header),
        (newsgroups.strip_footer, twenty.strip_newsgroup_footer),
        (newsgroups.strip_quoting, twenty.strip_newsgroup_quoting),
    ):
        stripped = [ours(text) for text in texts]
        assert stripped == [theirs(text) for text in texts]
        assert stripped != texts


# ---------------------------------------------------------------- text


def test_tokenize_keeps_lowercased_runs_of_two_or_more_letters_minus_stop_words():
    text = "Hello, WORLD! It's a x2y abc_def caf\xe9 42 NASA's Re: re-entry"
    assert tokenize(text) == ["hello", "world", "abc", "def", "caf", "nasa", "entry"]
    assert tokenize(text, stop_words=frozenset()) == [
        "hello", "world", "it", "abc", "def", "caf", "nasa", "re", "re", "entry"
    ]


def test_vocabulary_ranks_by_total_count_then_alphabetically():
    documents = [["beta", "alpha", "gamma", "gamma"], ["gamma", "delta", "beta"], ["alpha"]]
    assert build_vocabulary(documents, size=3) == ["gamma", "alpha", "beta"]
    assert build_vocabulary(documents, size=10) == ["gamma", "alpha", "beta", "delta"]
    with pytest.raises(DulError, match="positive integer"):
        build_vocabulary(documents, size=0)


def test_count_vectors_count_vocabulary_words_only():
    counts = count_vectors([["b", "a", "b", "zzz"], [], ["a"]], ["a", "b", "c"])
    assert counts.dtype == np.int32
    assert counts.toarray().tolist() == [[1, 2, 0], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(DulError, match="'a' more than once"):
        count_vectors([["a"]], ["a", "b", "a"])


def test_writing_a_split_is_deterministic_and_keeps_empty_rows(tmp_path):
    counts = scipy.sparse.csr_matrix(np.array([[0, 3, 0, 1], [0, 0, 0, 0], [7, 0, 0, 2]]))
    args = (["g/1", "g/2", "h/1"], np.array([0, 0, 1]), counts, ["one", "two", "three"], ["a", "b", "c", "d"])
    write_bow_split(tmp_path / "a.parquet", *args)
    write_bow_split(tmp_path / "b.parquet", *args)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    schema = pq.read_schema(tmp_path / "a.parquet")
    assert [schema.field(name).type for name in ("id", "label", "title")] == [pa.string(), pa.int64(), pa.string()]
    assert [schema.field(name).type.value_type for name in ("indices", "counts")] == [pa.int32(), pa.int32()]
    assert schema.metadata[b"vocabulary_size"] == b"4"
    read_counts, labels, ids = read_bow_split(tmp_path / "a.parquet")
    assert read_counts.toarray().tolist() == counts.toarray().tolist() and read_counts.shape == (3, 4)
    assert labels.tolist() == [0, 0, 1] and ids == ["g/1", "g/2", "h/1"]


def _hand_written(path: Path, indices, counts, value_type=None, vocabulary_size: str | None = "5") -> Path:
    value_type = value_type or pa.int32()
    table = pa.table(
        {
            "id": ["x/1", "x/2"],
            "label": pa.array([0, 1], pa.int64()),
            "title": ["a", "b"],
            "indices": pa.array(indices, pa.list_(pa.int32())),
            "counts": pa.array(counts, pa.list_(value_type)),
        }
    )
    metadata = {} if vocabulary_size is None else {"vocabulary_size": vocabulary_size}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


@pytest.mark.parametrize(
    "indices, counts, kwargs, needle",
    [
        ([[0, 2], [1]], [[3, -1], [2]], {}, "negative counts"),
        ([[0, 2], [1]], [[3.0, 1.5], [2.0]], {"value_type": pa.float64()}, "double, not integers"),
        ([[0, 5], [1]], [[3, 1], [2]], {}, "outside [0, 5)"),
        ([[2, 0], [1]], [[3, 1], [2]], {}, "not ascending and unique"),
        ([[0, 0], [1]], [[3, 1], [2]], {}, "not ascending and unique"),
        ([[0, 2], [1]], [[3], [2, 1]], {}, "differ in length"),
        ([[0, 2], [1]], [[3, 1], [2]], {"vocabulary_size": None}, "no vocabulary_size"),
    ],
    ids=["negative", "non-integer", "out-of-range", "unsorted", "duplicate", "ragged", "no-metadata"],
)
def test_reading_a_damaged_split_is_refused(tmp_path, indices, counts, kwargs, needle):
    path = _hand_written(tmp_path / "bad.parquet", indices, counts, **kwargs)
    with pytest.raises(DulError) as caught:
        read_bow_split(path)
    assert str(path) in str(caught.value) and needle in str(caught.value)


def test_a_sound_hand_written_split_reads(tmp_path):
    counts, labels, ids = read_bow_split(_hand_written(tmp_path / "ok.parquet", [[0, 2], [4]], [[3, 1], [2]]))
    assert counts.toarray().tolist() == [[3, 0, 1, 0, 0], [0, 0, 0, 0, 2]]
    assert labels.tolist() == [0, 1] and ids == ["x/1", "x/2"]


# ---------------------------------------------------------------- newsgroups on a tiny archive

POSTS = {
    "20news-bydate-train/sci.space/10": "From: a@b\nSubject: Re: orbits\n\nLow orbit.\n\n-- \nsig line\n",
    "20news-bydate-train/sci.space/9": "From: c@d\n\nno subject here\n> quoted moon\nIn article x, y writes:\n",
    "20news-bydate-train/alt.atheism/3": "Subject: caf\xe9\n\nbody\n",
    "20news-bydate-test/alt.atheism/4": "Subject: x\n\n",
    "20news-bydate-test/sci.space/1": "Subject: y\n\nrocket\n",
}


def _news_archive(folder: Path, posts: dict[str, str]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in posts.items():
            data = text.encode("latin-1")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = folder / "20news-bydate.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return path


def test_a_tiny_archive_loads_in_id_order_with_titles(tmp_path):
    news = load_20newsgroups(_news_archive(tmp_path, POSTS), expected_sha256=None)
    assert news["label_names"] == ["alt.atheism", "sci.space"]
    assert news["train"]["ids"] == ["alt.atheism/3", "sci.space/9", "sci.space/10"]  # numeric order
    assert news["train"]["labels"].tolist() == [0, 1, 1]
    assert news["train"]["titles"] == ["caf\xe9", "From: c@d", "Re: orbits"]
    assert news["train"]["texts"][2] == POSTS["20news-bydate-train/sci.space/10"]
    assert news["test"]["ids"] == ["alt.atheism/4", "sci.space/1"]
    assert news["archive"]["verified"] is False


def test_remove_strips_headers_footers_and_quotes_and_counts_empty_posts(tmp_path):
    path = _news_archive(tmp_path, POSTS)
    news = load_20newsgroups(path, expected_sha256=None, remove=("headers", "footers", "quotes"))
    # scikit-learn's footer rule needs a blank or "--" line; the quote lines go after it
    assert news["train"]["texts"] == ["body\n", "no subject here\n", "Low orbit.\n"]
    assert news["train"]["titles"][2] == "Re: orbits"  # titles come from the unstripped post
    assert (news["train"]["n_empty"], news["test"]["n_empty"]) == (0, 1)
    with pytest.raises(DulError, match="did you mean 'headers'"):
        load_20newsgroups(path, expected_sha256=None, remove=("header",))


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"README": "hi"}, "unexpected member README"),
        ({"20news-bydate-train/sci.space/notes": "hi"}, "unexpected member 20news-bydate-train/sci.space/notes"),
        ({"20news-bydate-dev/sci.space/5": "hi"}, "unexpected member 20news-bydate-dev/sci.space/5"),
        ({"20news-bydate-train/sci.med/5": "hi"}, "newsgroups sci.med are in one split only"),
    ],
)
def test_an_unexpected_layout_is_refused(tmp_path, extra, needle):
    path = _news_archive(tmp_path, POSTS | extra)
    with pytest.raises(DulError) as caught:
        load_20newsgroups(path, expected_sha256=None)
    assert str(path) in str(caught.value) and needle in str(caught.value)


def test_a_split_without_posts_is_refused(tmp_path):
    train_only = {name: text for name, text in POSTS.items() if "train" in name}
    with pytest.raises(DulError, match="no posts under 20news-bydate-test/"):
        load_20newsgroups(_news_archive(tmp_path, train_only), expected_sha256=None)


def test_the_real_archive_checksum_is_pinned_by_default(tmp_path):
    path = _news_archive(tmp_path, POSTS)
    with pytest.raises(DulError, match=f"checksum mismatch: expected sha256 {newsgroups.SHA256}"):
        load_20newsgroups(path)
