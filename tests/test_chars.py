"""20 Newsgroups as byte sequences (ingest.representation: chars), on tiny archives in the
bydate layout: the posts' bytes exactly, the bag-of-words ingest's splits, the card, and
one-line refusals (an empty corpus, a sequence split read as rows, a fixed-size family
given sequences)."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import parse_section
from components.data import ingest, read_card, read_ids, sources
from components.data.chars import END, read_sequences, read_stream
from components.data.stream import open_split
from components.data.text import read_bow_split
from components.errors import DulError
from components.io import file_sha256
from components.models import registry
from tests.test_corpora import _archive

POSTS = {
    "20news-bydate-train/comp.a/1": "Subject: disks\n\ndisk drive caf\xe9\n",
    "20news-bydate-train/comp.a/2": "Subject: more\n\n> quoted\nreply\n",
    "20news-bydate-train/rec.b/3": "Subject: cars\n\ncar engine car",
    "20news-bydate-train/rec.b/4": "Subject: wheels\n\nwheel",
    "20news-bydate-train/rec.b/5": "Subject: empty\n\n",
    "20news-bydate-test/comp.a/6": "Subject: q\n\ndisk?",
    "20news-bydate-test/rec.b/7": "Subject: r\n\ncar!",
}


def _pinned(monkeypatch, archive):
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups",
                        {"20news-bydate.tar.gz": sources.FilePin("http://x/", file_sha256(archive))})


@pytest.fixture()
def archive(tmp_path, monkeypatch):
    path = _archive(tmp_path / "20news-bydate.tar.gz", POSTS)
    _pinned(monkeypatch, path)
    return path


def _chars(archive, out, **kw):
    return ingest("20newsgroups", out, source=str(archive), representation="chars", validation_fraction=0.4, **kw)


def test_posts_are_stored_byte_for_byte_in_the_bag_of_words_splits(archive, tmp_path):
    card = _chars(archive, tmp_path / "chars", remove=("headers",))
    ingest("20newsgroups", tmp_path / "bow", source=str(archive), validation_fraction=0.4, remove=("headers",))
    for split in ("train", "validation", "test"):  # the same posts in each split, in the same order
        assert read_ids(tmp_path / "chars", split).tolist() == list(range(card["splits"][split]["count"]))
        bow_ids = read_bow_split(tmp_path / "bow" / f"{split}.parquet")[2]
        data, offsets = read_sequences(tmp_path / "chars", split)
        posts = [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
        assert posts == [POSTS[f"20news-bydate-{'test' if split == 'test' else 'train'}/{i}"].encode()
                         .partition(b"\n\n")[2] for i in bow_ids]
        assert card["splits"][split]["characters"] == len(data) == sum(map(len, posts))
    assert b"caf\xc3\xa9" in read_sequences(tmp_path / "chars", "train")[0].tobytes() + \
        read_sequences(tmp_path / "chars", "validation")[0].tobytes()  # the archive's bytes, not re-encoded


def test_the_stream_ends_every_post_with_the_end_byte(archive, tmp_path):
    _chars(archive, tmp_path / "chars", remove=("headers",))
    stream = read_stream(tmp_path / "chars", "test")
    assert stream.dtype == np.uint8 and stream.tobytes() == b"disk?\x00car!\x00" and END == 0


def test_the_card_states_the_shape_and_kind(archive, tmp_path):
    card = _chars(archive, tmp_path / "chars", remove=("headers", "quotes"), seed=3)
    assert read_card(tmp_path / "chars") == card
    assert card["kind"] == "sequence" and card["shape"] == [None] and card["vocabulary_size"] == 256
    assert card["split"] == {"seed": 3, "validation_fraction": 0.4, "remove": ["headers", "quotes"],
                             "test": "official test split"}
    assert [card["splits"][s]["count"] for s in ("train", "validation", "test")] == [3, 2, 2]
    assert card["splits"]["test"]["characters"] == 9 and card["splits"]["test"]["stream_characters"] == 11
    assert sum(card["splits"][s]["empty_documents"] for s in ("train", "validation")) == 1


def test_a_rerun_writes_the_same_bytes(archive, tmp_path):
    _chars(archive, tmp_path / "a")
    _chars(archive, tmp_path / "b")
    for name in ("train.parquet", "validation.parquet", "test.parquet", "card.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_an_empty_corpus_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    posts = {name: "Subject: s\n\n" for name in POSTS}  # nothing after the headers
    path = _archive(tmp_path / "20news-bydate.tar.gz", posts)
    _pinned(monkeypatch, path)
    with pytest.raises(DulError, match="the train split's 3 posts hold no characters after removing headers; "
                                       "nothing was written") as caught:
        _chars(path, tmp_path / "data", remove=("headers",))
    assert "\n" not in str(caught.value) and not (tmp_path / "data").exists()


def test_sequences_go_to_sequence_families_only(archive, tmp_path):
    _chars(archive, tmp_path / "chars")
    for streaming in (False, True):  # what pretrain and finetune read through: whole, or a row group at a time
        with pytest.raises(DulError, match="holds byte sequences .* only a sequence family \\(wavenet\\) reads it"):
            open_split(tmp_path / "chars", "train", batch_size=2, streaming=streaming)
    params = registry.params_class("made")()
    with pytest.raises(DulError, match="made models fixed-size items, but this dataset's items are byte sequences"):
        registry.build("made", params, (None,))


def test_representation_chars_is_for_20newsgroups_bydate_only(tmp_path):
    assert parse_section("ingest", {"dataset": "20newsgroups", "representation": "chars"}).representation == "chars"
    with pytest.raises(DulError, match="prepares 20newsgroups \\(protocol bydate\\) as byte sequences, not mnist"):
        parse_section("ingest", {"dataset": "mnist", "representation": "chars"})
    with pytest.raises(DulError, match="not 20newsgroups \\(protocol vdsh\\)"):
        ingest("20newsgroups", tmp_path / "data", representation="chars", protocol="vdsh")
    with pytest.raises(DulError, match="did you mean 'chars'"):
        ingest("20newsgroups", tmp_path / "data", representation="char")
    assert not (tmp_path / "data").exists()
