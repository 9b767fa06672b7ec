"""Tests for components.data.reuters on tiny SGML files in the Distribution 1.0 format.

The corpus below is small enough to work out the ModApte, R8 and R52
selections by hand (see ``DOCS``); it is written as latin-1 ``.sgm`` files
(with the real files' wire-header entities) into a folder and a tar.gz.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from components.data.reuters import load_reuters, parse_sgml
from components.errors import DulError

HEADER = '<!DOCTYPE lewis SYSTEM "lewis.dtd">\n'

# NEWID, LEWISSPLIT, TOPICS attribute, topics. ModApte candidates: TRAIN/TEST with TOPICS="YES".
# Categories with >= 1 train and >= 1 test candidate: acq, crude, earn (grain is train only).
DOCS = [
    (1, "TRAIN", "YES", ["earn"]),
    (2, "TRAIN", "YES", ["acq", "earn"]),
    (3, "TEST", "YES", ["earn"]),
    (4, "TEST", "YES", ["acq"]),
    (5, "TRAIN", "YES", ["grain"]),  # grain has no test document: dropped from "all"
    (6, "TRAIN", "NO", ["earn"]),  # TOPICS="NO": not ModApte
    (7, "NOT-USED", "YES", ["earn"]),
    (8, "TEST", "YES", []),  # no topic
    (9, "TRAIN", "YES", ["crude"]),
    (10, "TEST", "YES", ["crude", "acq"]),
    (11, "TRAIN", "YES", ["acq"]),
]


def document(newid: int, split: str, topics_attr: str, topics: list[str], brief: bool = False) -> str:
    topics_xml = "".join(f"<D>{t}</D>" for t in topics)
    head = (
        f'<REUTERS TOPICS="{topics_attr}" LEWISSPLIT="{split}" CGISPLIT="TRAINING-SET" OLDID="{5000 + newid}"'
        f' NEWID="{newid}">\n<DATE>26-FEB-1987 15:01:01.79</DATE>\n<TOPICS>{topics_xml}</TOPICS>\n'
        "<PLACES><D>usa</D></PLACES>\n<UNKNOWN> \n&#5;&#5;&#5;C T\n&#22;&#22;&#1;f0704&#31;reute\n</UNKNOWN>\n"
    )
    if brief:
        return head + f'<TEXT TYPE="BRIEF">&#2;\n******<TITLE>BRIEF {newid}</TITLE>\nBlah blah blah.\n&#3;\n</TEXT>\n</REUTERS>\n'
    return head + (
        f"<TEXT>&#2;\n<TITLE>STORY {newid} &lt;ABC&gt; CAF\xc9</TITLE>\n<DATELINE>    NEW YORK, Feb 26 - </DATELINE>"
        f"<BODY>Body of story {newid} &amp; more caf\xe9.\n Reuter\n&#3;</BODY></TEXT>\n</REUTERS>\n"
    )


def sgm(docs) -> bytes:
    return (HEADER + "".join(document(*doc) for doc in docs)).encode("latin-1")


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "reuters21578"
    folder.mkdir()
    (folder / "reut2-000.sgm").write_bytes(sgm(DOCS[:6]))
    (folder / "reut2-001.sgm").write_bytes(sgm(DOCS[6:8] + [(*DOCS[8], True)] + DOCS[9:]))
    (folder / "README.txt").write_text("not a .sgm file")
    return folder


def tar_gz(folder: Path, path: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=file.name)
    path.write_bytes(buffer.getvalue())
    return path


def test_modapte_all_keeps_the_categories_in_both_splits_multi_label(corpus, tmp_path):
    data = load_reuters(corpus, expected_documents=11)
    assert data["label_names"] == ["acq", "crude", "earn"]
    assert data["train"]["ids"] == ["1", "2", "9", "11"] and data["test"]["ids"] == ["3", "4", "10"]
    assert data["train"]["labels"] == [[2], [0, 2], [1], [0]]
    assert data["test"]["labels"] == [[2], [0], [0, 1]]
    assert data["source"] == {"name": "reuters21578", "verified": False}
    assert load_reuters(tar_gz(corpus, tmp_path / "reuters21578.tar.gz"), expected_documents=11)["train"] == data["train"]


def test_text_is_title_and_body_unescaped_latin1_without_the_sign_off(corpus):
    data = load_reuters(corpus, expected_documents=None)
    assert data["train"]["titles"][0] == "STORY 1 <ABC> CAF\xc9"
    assert data["train"]["texts"][0] == "STORY 1 <ABC> CAF\xc9\nBody of story 1 & more caf\xe9."
    assert data["train"]["datelines"][0] == "NEW YORK, Feb 26 -"
    assert data["train"]["titles"][2] == "BRIEF 9" and data["train"]["texts"][2] == "BRIEF 9\n****** \nBlah blah blah."


def test_r8_and_r52_keep_single_topic_documents(corpus):
    for subset in ("R8", "R52"):
        data = load_reuters(corpus, topics=subset, expected_documents=None)
        assert data["label_names"] == ["acq", "earn"]  # crude's only test document has two topics
        assert data["train"]["ids"] == ["1", "11"] and data["train"]["labels"] == [[1], [0]]
        assert data["test"]["ids"] == ["3", "4"] and data["test"]["labels"] == [[1], [0]]


def test_r52_takes_the_categories_with_single_topic_documents_in_both_splits(tmp_path):
    docs, newid = [], 0
    for rank in range(10):  # category c<rank> has 10 - rank training documents and one test document
        for split in ["TRAIN"] * (10 - rank) + ["TEST"]:
            newid += 1
            docs.append((newid, split, "YES", [f"c{rank}"]))
    (tmp_path / "reut2-000.sgm").write_bytes(sgm(docs))
    assert load_reuters(tmp_path, topics="R52", expected_documents=None)["label_names"] == [f"c{i}" for i in range(10)]
    r8 = load_reuters(tmp_path, topics="R8", expected_documents=None)  # R10, all single-topic: the first eight
    assert r8["label_names"] == [f"c{i}" for i in range(8)]
    assert len(r8["train"]["ids"]) == sum(range(3, 11)) and len(r8["test"]["ids"]) == 8


def test_r8_ranks_the_categories_by_all_their_training_documents_then_keeps_single_topic_ones(tmp_path):
    """The standard R8 (Cardoso-Cachopo 2007): grain is among the ten largest categories through
    its documents shared with wheat and corn, though money-supply has more single-topic ones;
    wheat and corn then have no single-topic document and drop out."""
    docs = []

    def add(split: str, topics: list[str], times: int = 1) -> None:
        for _ in range(times):
            docs.append((len(docs) + 1, split, "YES", topics))

    for i in range(7):  # seven large single-topic categories
        add("TRAIN", [f"c{i}"], 20)
        add("TEST", [f"c{i}"])
    add("TRAIN", ["grain"], 3)
    add("TEST", ["grain"])
    add("TRAIN", ["grain", "wheat"], 15)
    add("TEST", ["grain", "wheat"])
    add("TRAIN", ["corn", "grain"], 12)
    add("TEST", ["corn", "grain"])
    add("TRAIN", ["money-supply"], 10)
    add("TEST", ["money-supply"])
    (tmp_path / "reut2-000.sgm").write_bytes(sgm(docs))
    r8 = load_reuters(tmp_path, topics="R8", expected_documents=None)
    assert r8["label_names"] == sorted([f"c{i}" for i in range(7)] + ["grain"])
    assert len(r8["train"]["ids"]) == 7 * 20 + 3 and len(r8["test"]["ids"]) == 8  # single-topic documents only


def test_a_list_of_topics_selects_and_restricts_labels(corpus):
    data = load_reuters(corpus, topics=["earn", "grain"], expected_documents=None)
    assert data["label_names"] == ["earn", "grain"] and data["topics"] == ["earn", "grain"]
    assert data["train"]["ids"] == ["1", "2", "5"] and data["train"]["labels"] == [[0], [0], [1]]
    with pytest.raises(DulError, match=r"topic 'ern' has no ModApte document; did you mean 'earn'"):
        load_reuters(corpus, topics=["ern"], expected_documents=None)
    with pytest.raises(DulError, match=r"unknown Reuters topic subset 'R9'"):
        load_reuters(corpus, topics="R9", expected_documents=None)


def test_the_expected_document_count_catches_a_missing_file(corpus):
    (corpus / "reut2-001.sgm").unlink()
    with pytest.raises(DulError, match=r"6 documents, expected 21578; files are missing"):
        load_reuters(corpus)


def test_parse_sgml_reports_file_and_line():
    # each document takes 14 lines after the 1-line header: the second starts on line 16
    text = HEADER + document(1, "TRAIN", "YES", ["earn"]) + document(2, "TEST", "YES", ["acq"]).replace("</REUTERS>", "")
    with pytest.raises(DulError, match=r"^f\.sgm:16: <REUTERS> is not closed"):
        parse_sgml(text, "f.sgm")
    docs = parse_sgml(HEADER + document(1, "TRAIN", "YES", ["earn"]) * 1, "f.sgm")
    assert [(d["newid"], d["line"], d["topics"]) for d in docs] == [("1", 2, ["earn"])]


def test_a_folder_is_read_with_one_warning_that_it_is_unverified(corpus, tmp_path, capsys):
    load_reuters(corpus, expected_documents=11)
    assert capsys.readouterr().err == (
        f"warning: {corpus}: the 2 reut2-NNN.sgm files were read unverified, not checked against the pinned"
        " reuters21578.tar.gz checksum (md5 a22faadd7dde0dfdd784e60087209aa6); to verify them, point"
        " ingest.source at reuters21578.tar.gz instead\n"
    )
    load_reuters(tar_gz(corpus, tmp_path / "reuters21578.tar.gz"), expected_documents=11)
    assert capsys.readouterr().err == ""
