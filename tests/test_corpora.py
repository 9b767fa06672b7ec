"""Text corpora through ``ingest``: 20 Newsgroups as bag-of-words splits.

The real archive (../shared/data/20news-bydate) is used where it is present;
the download path is tested on a small archive in the same layout.
"""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from components.data import ingest, read_card, read_ids, read_split, sources
from components.data.text import read_bow_split, read_vocabulary
from components.errors import DulError
from components.io import file_sha256

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "20news-bydate"
TRAIN_COUNTS = [480, 584, 591, 590, 578, 593, 585, 594, 598, 597, 600, 595, 591, 594, 593, 599, 546, 564, 465, 377]
TEST_COUNTS = [319, 389, 394, 392, 385, 395, 390, 396, 398, 397, 399, 396, 393, 396, 394, 398, 364, 376, 310, 251]
real = pytest.mark.skipif(not (SOURCE / "20news-bydate.tar.gz").is_file(), reason=f"{SOURCE} is not here")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("news") / "prepared"
    ingest("20newsgroups", out, source=str(SOURCE), validation_fraction=0.1, seed=0)
    return out


@real
def test_20newsgroups_counts_match_its_readme(prepared):
    card = read_card(prepared)
    assert card["kind"] == "bow" and card["vocabulary_size"] == 2000 and card["n_labels"] == 20
    train = [card["splits"][s]["label_counts"][str(k)] for s in ("train", "validation") for k in range(20)]
    per_class = np.array(train).reshape(2, 20).sum(axis=0)
    assert per_class.tolist() == TRAIN_COUNTS
    assert [card["splits"]["test"]["label_counts"][str(k)] for k in range(20)] == TEST_COUNTS
    assert card["splits"]["validation"]["count"] == round(0.1 * 11314)
    assert card["files"][0]["verified"] is True


@real
def test_splits_read_back_as_counts(prepared):
    X, y = read_split(prepared, "test")
    assert X.shape == (7532, 2000) and X.dtype == np.float32 and (X >= 0).all()
    assert np.array_equal(X, np.rint(X)) and X.sum() > 0
    counts, labels, ids = read_bow_split(prepared / "test.parquet")
    assert np.array_equal(counts.toarray(), X) and np.array_equal(labels, y)
    assert ids[0].startswith("alt.atheism/")
    assert np.array_equal(read_ids(prepared, "test"), np.arange(7532))


@real
def test_the_vocabulary_comes_from_the_training_split_only(prepared):
    vocabulary = read_vocabulary(prepared / "train.parquet")
    assert len(vocabulary) == 2000 and read_vocabulary(prepared / "test.parquet") == vocabulary
    X_train, _ = read_split(prepared, "train")
    totals = X_train.sum(axis=0)
    # ranked by training count: a test-only word can't be in it, and the ranking is by training totals
    assert (np.diff(totals) <= 0).all()


@real
def test_rerun_is_byte_identical(prepared, tmp_path):
    ingest("20newsgroups", tmp_path / "again", source=str(SOURCE / "20news-bydate.tar.gz"), seed=0)
    for name in ("train.parquet", "validation.parquet", "test.parquet"):
        assert (tmp_path / "again" / name).read_bytes() == (prepared / name).read_bytes()
    again, first = read_card(tmp_path / "again"), read_card(prepared)
    assert again.pop("source") != first.pop("source") and again == first  # the card names the source as given


def _tiny_archive(path: Path) -> Path:
    return _archive(path, {
        "20news-bydate-train/comp.a/1": "Subject: disks\n\ndisk drive disk", "20news-bydate-train/rec.b/2":
        "Subject: cars\n\ncar engine car", "20news-bydate-train/rec.b/3": "Subject: more\n\nengine wheel",
        "20news-bydate-test/comp.a/4": "Subject: q\n\ndisk", "20news-bydate-test/rec.b/5": "Subject: r\n\ncar"})


def ingest_tiny_newsgroups(folder: Path, **options) -> Path:
    """Write the tiny archive into ``folder``, pin its hash and ingest it to ``folder``/prepared
    with ``options`` (validation_fraction, vocabulary_size, representation ...); returns that folder."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = _tiny_archive(folder / "20news-bydate.tar.gz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sources.FILE_PINS, "20newsgroups",
                      {"20news-bydate.tar.gz": sources.FilePin("http://x/", file_sha256(archive))})
        ingest("20newsgroups", folder / "prepared", source=str(archive), **options)
    return folder / "prepared"


def _archive(path: Path, posts: dict[str, str]) -> Path:
    """A 20news-bydate-layout tar.gz of ``posts`` (member name -> text)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, body in posts.items():
            data = body.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_download_from_a_mirror_is_verified_and_cached(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = _tiny_archive(mirror / "20news-bydate.tar.gz")
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups", {"20news-bydate.tar.gz": sources.FilePin("http://x/", file_sha256(archive))})
    card = ingest("20newsgroups", tmp_path / "data", source=mirror.as_uri(), cache_dir=tmp_path / "cache",
                  validation_fraction=0.0, vocabulary_size=4)
    assert card["files"][0]["url"] == mirror.as_uri() + "/20news-bydate.tar.gz"
    assert read_vocabulary(tmp_path / "data" / "train.parquet") == ["subject", "car", "disk", "engine"]
    assert len(list((tmp_path / "cache").rglob("20news-bydate.tar.gz"))) == 1


def test_a_download_with_the_wrong_checksum_is_refused_and_not_cached(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _tiny_archive(mirror / "20news-bydate.tar.gz")
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups", {"20news-bydate.tar.gz": sources.FilePin("http://x/", "0" * 64)})
    with pytest.raises(DulError, match=r"checksum mismatch: expected sha256 0000.*got [0-9a-f]{64}"):
        ingest("20newsgroups", tmp_path / "data", source=mirror.as_uri(), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "data").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_missing_archive_says_where_to_put_it(tmp_path):
    with pytest.raises(DulError, match=r"20news-bydate\.tar\.gz not found; put 20news-bydate\.tar\.gz there"):
        ingest("20newsgroups", tmp_path / "data", source=str(tmp_path))
    assert not (tmp_path / "data").exists()


def test_a_local_archive_with_the_wrong_checksum_is_an_error(tmp_path):
    archive = _tiny_archive(tmp_path / "20news-bydate.tar.gz")
    with pytest.raises(DulError, match=r"20news-bydate\.tar\.gz"):
        ingest("20newsgroups", tmp_path / "data", source=str(archive))
    assert not (tmp_path / "data").exists()


# ------------------------------------------------- the semantic-hashing papers' protocol (ingest.protocol: vdsh)

def test_the_vdsh_protocol_works_out_by_hand(tmp_path, monkeypatch):
    """Headers and quotes go; stop words go; a word in > 80% of training posts (max_df) or in < 3
    (min_df) goes; a post of <= 5 counted words goes; the test posts split in halves by seed."""
    body = "alpha beta gamma delta the and of\\n> quoted epsilon writes: zeta\\n"
    common = "common " * 2
    train = {f"20news-bydate-train/comp.a/{i}": f"From: x\\nSubject: s\\n\\n{common}{body}omega{i % 2} alpha"
             for i in range(1, 9)}
    train |= {f"20news-bydate-train/rec.b/{i}": f"Subject: s\\n\\nwheel wheel car car engine engine motor{i} "
              f"motor{i}" for i in range(9, 12)}
    train["20news-bydate-train/rec.b/12"] = "Subject: short\\n\\ncar wheel"  # 2 counted words: dropped
    test = {f"20news-bydate-test/{'comp.a' if i % 2 else 'rec.b'}/{i}": f"Subject: t\\n\\nalpha beta gamma delta car "
            f"wheel engine {i}" for i in range(20, 26)}
    archive = _archive(tmp_path / "20news-bydate.tar.gz", {k: v.replace("\\n", "\n") for k, v in (train | test).items()})
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups",
                        {"20news-bydate.tar.gz": sources.FilePin("http://x/", file_sha256(archive))})
    card = ingest("20newsgroups", tmp_path / "data", source=str(archive), protocol="vdsh", seed=0)
    vocabulary = read_vocabulary(tmp_path / "data" / "train.parquet")
    # common: in 8 of 12 posts (67%) kept; from, subject: headers gone; the, and, of: stop words; epsilon, zeta:
    # quoted lines gone; omega0/omega1: 4 posts each, kept; motor9..11: one post each (min_df 3), gone
    assert vocabulary == sorted(["alpha", "beta", "car", "common", "delta", "engine", "gamma", "omega0", "omega1",
                                 "wheel"])
    assert [card["splits"][s]["count"] for s in ("train", "validation", "test")] == [11, 3, 3]
    assert card["split"]["dropped"] == {"train": 1, "test": 0} and card["split"]["protocol"] == "vdsh"
    halves = [set(read_bow_split(tmp_path / "data" / f"{s}.parquet")[2]) for s in ("validation", "test")]
    assert not halves[0] & halves[1] and {i.split("/")[1] for i in halves[0] | halves[1]} == {str(i) for i in range(20, 26)}
    halves_by_seed = set()
    for seed in range(1, 5):  # the seed picks the halves; the training split stays
        other = ingest("20newsgroups", tmp_path / f"seed{seed}", source=str(archive), protocol="vdsh", seed=seed)
        assert other["splits"]["train"] == card["splits"]["train"]
        halves_by_seed.add(tuple(read_bow_split(tmp_path / f"seed{seed}" / "test.parquet")[2]))
    assert len(halves_by_seed | {tuple(sorted(halves[1]))}) > 1


def test_the_vdsh_protocol_is_refused_for_another_corpus_in_one_line(tmp_path):
    from components.config import parse_section

    with pytest.raises(DulError, match="20newsgroups and reuters21578 preparation, not rcv1-v2's"):
        parse_section("ingest", {"dataset": "rcv1-v2", "protocol": "vdsh"})
    with pytest.raises(DulError, match="prepares a text corpus, not digits"):
        ingest("digits", tmp_path / "data", protocol="vdsh")
    assert not (tmp_path / "data").exists()


@real
def test_the_vdsh_protocol_on_the_real_archive(tmp_path):
    card = ingest("20newsgroups", tmp_path / "data", source=str(SOURCE), protocol="vdsh", seed=0)
    assert card["vocabulary_size"] == 10_000
    assert [card["splits"][s]["count"] for s in ("train", "validation", "test")] == [10257, 3406, 3406]
    for split in ("train", "validation", "test"):
        counts, _, _ = read_bow_split(tmp_path / "data" / f"{split}.parquet")
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        assert lengths.min() >= 6 and lengths.max() <= 500
    vocabulary = set(read_vocabulary(tmp_path / "data" / "train.parquet"))
    assert not vocabulary & {"the", "and", "of", "is"} and {"god", "space", "windows"} <= vocabulary
