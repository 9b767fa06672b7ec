"""Reuters-21578, Distribution 1.0, with the ModApte split and its R8/R52 subsets.

Lewis, http://www.daviddlewis.com/resources/testcollections/reuters21578/.
The 22 SGML files ``reut2-000.sgm`` .. ``reut2-021.sgm`` (latin-1) are read
from ``reuters21578.tar.gz`` (in memory, through ``components.data.archive``)
or from a folder (unverified: only the archive has a pinned checksum, so a
folder's files are read with a warning on stderr). Each document is::

    <REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="5544" NEWID="1">
    <TOPICS><D>cocoa</D></TOPICS> ... <TEXT>&#2;
    <TITLE>BAHIA COCOA REVIEW</TITLE>
    <DATELINE>    SALVADOR, Feb 26 - </DATELINE><BODY>Showers continued ...
     Reuter
    &#3;</BODY></TEXT>
    </REUTERS>

Numeric entities (``&#5;``, control characters in the wire headers) become a
space, ``&lt; &gt; &amp;`` their characters; the closing " Reuter" line of a
body is dropped. A ``TYPE="UNPROC"`` text (no TITLE/BODY) is used whole.

**ModApte split** (Apte et al. 1994; the README's "Modified Apte"):
LEWISSPLIT="TRAIN" or "TEST" with TOPICS="YES" (9,603 / 3,299 documents).
The usual benchmark (Yang & Liu 1999; NLTK's ``reuters`` corpus) keeps only
the documents with at least one of the **90 categories that have at least
one training and one test document**: 7,769 / 3,019 documents in NLTK's
copy; the expectation for the raw SGML under this rule is 7,770 / 3,019
(not verified here: the data is not on this machine). The 9,603 / 3,299
figures count documents before that filter (some have no topic at all).
``topics``:

- ``"all"``: those 90 categories, multi-label (a document keeps each of its
  topics that is among the 90);
- ``"R52"`` / ``"R8"`` (Cardoso-Cachopo 2007): only documents with exactly one
  topic. R52: the categories with at least one such training and one such
  test document (52 on the real data; were there more, the 52 with the most
  such training documents, ties alphabetical). R8: the ten largest of the 90
  categories by *all* their training documents (R10: earn, acq, money-fx,
  grain, crude, trade, interest, ship, wheat, corn), then single-topic
  documents only, and the categories left with a training and a test
  document (wheat and corn are not; were more than eight left, the eight
  largest). Ranking by single-topic documents
  instead would take money-supply for grain. Expected 6,532 / 2,568 (R52)
  and 5,485 / 2,189 (R8: acq, crude, earn, grain, interest, money-fx, ship,
  trade);
- a list of topic names: documents with at least one of them, multi-label;
  a name that is no ModApte topic is a DulError.

``load_reuters`` returns ``{"train": {"ids", "texts", "titles", "datelines",
"labels"}, "test": {...}, "label_names": [sorted], "topics", "source"}``:
``ids`` the NEWID (str), ``texts`` title + "\\n" + body, ``labels`` a list of
sorted label-index lists (one index each for R8/R52). Documents are in NEWID
order. Strictness: an unclosed ``<REUTERS>`` or inner element, a missing or
repeated NEWID, an unknown LEWISSPLIT is a DulError naming file and line.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from components.data import archive, sources
from components.errors import DulError, did_you_mean

FILES = tuple(f"reut2-{i:03d}.sgm" for i in range(22))
EXPECTED_DOCUMENTS = 21_578
SUBSETS = {"all": None, "R52": 52, "R8": 8}
R8_POOL = 10  # R8's candidates: the R10 categories, largest by all training documents
SPLITS = {"TRAIN": "train", "TEST": "test", "NOT-USED": None}
_FILE_NAME = re.compile(r"(?:.*/)?(reut2-[0-9]{3}\.sgm)")
_TAG = re.compile(r"<REUTERS\b([^>]*)>|</REUTERS>")
_ATTRIBUTE = re.compile(r'([A-Z]+)="([^"]*)"')
_INNER = ("TOPICS", "TITLE", "DATELINE", "BODY", "TEXT")
_ENTITY = re.compile(r"&(#[0-9]+|lt|gt|amp|quot);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# a TEXT without BODY (TYPE="BRIEF" or "UNPROC"): drop its title and dateline, then any tag
_UNPROC = re.compile(r"<(TITLE|DATELINE)>.*?</\1>|<[^>]*>", re.DOTALL)
_SIGN_OFF = re.compile(r"\s*\breuter\s*$", re.IGNORECASE)


def load_reuters(
    source: str | os.PathLike,
    *,
    topics: str | Sequence[str] = "all",
    expected_sha256: str | None = None,
    expected_documents: int | None = EXPECTED_DOCUMENTS,
) -> dict:
    """The ModApte train/test documents of ``topics`` (see the module docstring).

    ``source``: ``reuters21578.tar.gz`` or a folder holding the ``.sgm``
    files. ``expected_documents``: all documents over all files (21,578);
    ``None`` accepts any number (the tests use tiny files).
    """
    documents = []
    for name, text in _sgm_texts(source, expected_sha256):
        documents.extend(parse_sgml(text, name))
    _check_documents(documents, source, expected_documents)
    modapte = [doc for doc in documents if SPLITS[doc["lewissplit"]] and doc["topics_attr"] == "YES"]
    label_names, pick = _subset(modapte, topics, source)
    index = {name: column for column, name in enumerate(label_names)}
    result: dict = {split: _split(modapte, split, index, pick) for split in ("train", "test")}
    result |= {"label_names": label_names, "topics": topics if isinstance(topics, str) else list(topics)}
    result["source"] = {"name": Path(source).name, "verified": expected_sha256 is not None}
    return result


def _sgm_texts(source, expected_sha256) -> Iterator[tuple[str, str]]:
    """(label for messages, latin-1 text) per ``reut2-NNN.sgm`` file, in name order."""
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _FILE_NAME.fullmatch(p.name))
        texts = [(str(p), p.read_bytes()) for p in found]
        if texts:
            _warn_unverified(path, len(texts))
    else:
        archive.verify_sha256(path, expected_sha256)
        members = archive.iter_members(path)
        texts = sorted((f"{path}/{name}", data) for name, data in members if _FILE_NAME.fullmatch(name))
    if not texts:
        raise DulError(f"{source} holds no reut2-NNN.sgm files; point to reuters21578.tar.gz or its folder")
    for name, data in texts:
        yield name, data.decode("latin-1")


def _warn_unverified(folder: Path, count: int) -> None:
    """One line on stderr: a folder's files have no pin; only the archive's is known."""
    [(name, pin)] = sources.FILE_PINS["reuters21578"].items()
    checksum = f"sha256 {pin.sha256}" if pin.sha256 else f"md5 {pin.md5}"
    print(f"warning: {folder}: the {count} reut2-NNN.sgm files were read unverified, not checked against the pinned"
          f" {name} checksum ({checksum}); to verify them, point ingest.source at {name} instead", file=sys.stderr)


def _check_documents(documents: list[dict], source, expected: int | None) -> None:
    seen: dict[str, dict] = {}
    for doc in documents:
        if doc["newid"] in seen:
            first = seen[doc["newid"]]
            raise DulError(
                f"{doc['file']}:{doc['line']}: NEWID {doc['newid']} repeats {first['file']}:{first['line']};"
                " the files are damaged, fetch them again"
            )
        seen[doc["newid"]] = doc
    if expected is not None and len(documents) != expected:
        raise DulError(
            f"{source}: {len(documents)} documents, expected {expected}; files are missing or damaged, fetch them again"
        )


def parse_sgml(text: str, name: str) -> list[dict]:
    """The documents of one ``.sgm`` file's text: dicts of newid, lewissplit, topics_attr,
    topics (list), title, body, dateline, file, line (of the ``<REUTERS`` tag)."""
    documents, start = [], None
    for match in _TAG.finditer(text):
        if match.group(0) != "</REUTERS>":
            if start is not None:
                raise DulError(f"{name}:{_line(text, start.start())}: <REUTERS> is not closed; fetch the file again")
            start = match
        elif start is None:
            raise DulError(f"{name}:{_line(text, match.start())}: </REUTERS> without <REUTERS>; fetch the file again")
        else:
            documents.append(_document(text, start, match.start(), name))
            start = None
    if start is not None:
        raise DulError(f"{name}:{_line(text, start.start())}: <REUTERS> is not closed; fetch the file again")
    if not documents:
        raise DulError(f"{name} holds no <REUTERS> documents; fetch the file again")
    return documents


def _document(text: str, start: re.Match, end: int, name: str) -> dict:
    line = _line(text, start.start())
    where = f"{name}:{line}"
    attributes = dict(_ATTRIBUTE.findall(start.group(1)))
    newid = attributes.get("NEWID", "")
    if not newid.isdigit():
        raise DulError(f"{where}: <REUTERS> has no numeric NEWID ({newid!r}); the file is damaged, fetch it again")
    if attributes.get("LEWISSPLIT") not in SPLITS:
        raise DulError(f"{where}: LEWISSPLIT={attributes.get('LEWISSPLIT')!r} is not TRAIN, TEST or NOT-USED; fetch the file again")
    body = text[start.end() : end]
    inner = {tag: _element(body, tag, where) for tag in _INNER}
    text_body = inner["BODY"] if inner["BODY"] is not None else _UNPROC.sub(" ", inner["TEXT"] or "")
    return {
        "newid": newid,
        "lewissplit": attributes["LEWISSPLIT"],
        "topics_attr": attributes.get("TOPICS", ""),
        "topics": [_unescape(d).strip() for d in re.findall(r"<D>(.*?)</D>", inner["TOPICS"] or "", re.DOTALL)],
        "title": _unescape(inner["TITLE"] or "").strip(),
        "dateline": _unescape(inner["DATELINE"] or "").strip(),
        "body": _SIGN_OFF.sub("", _unescape(text_body)).strip(),
        "file": name,
        "line": line,
    }


def _element(body: str, tag: str, where: str) -> str | None:
    """The content of the first ``<TAG ...>...</TAG>`` (None if absent); an unclosed one is a DulError."""
    opened = len(re.findall(rf"<{tag}\b[^>]*>", body))
    if opened != body.count(f"</{tag}>"):
        raise DulError(f"{where}: <{tag}> opened {opened} times but closed {body.count(f'</{tag}>')}; fetch the file again")
    match = re.search(rf"<{tag}\b[^>]*>(.*?)</{tag}>", body, re.DOTALL)
    return match.group(1) if match else None


def _unescape(text: str) -> str:
    return _ENTITY.sub(_entity, text)


def _entity(match: re.Match) -> str:
    code = match.group(1)
    if code[0] != "#":
        return _NAMED[code]
    number = int(code[1:])
    return " " if number < 32 or 127 <= number < 160 or number > 0x10FFFF else chr(number)


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _subset(modapte: list[dict], topics, source) -> tuple[list[str], bool]:
    """The label names of ``topics`` and whether documents must hold exactly one topic."""
    if isinstance(topics, str):
        if topics not in SUBSETS:
            raise DulError(f"unknown Reuters topic subset {topics!r}; {did_you_mean(topics, SUBSETS)}, or a list")
        single = topics != "all"
        eligible = _both_splits(modapte, single)
        if topics == "R8":  # R10 by all training documents, then those left with single-topic ones in both splits
            every = _both_splits(modapte, single=False)
            pool = sorted(every, key=lambda name: (-every[name], name))[:R8_POOL]
            return sorted([name for name in pool if name in eligible][: SUBSETS["R8"]]), single
        ranked = sorted(eligible, key=lambda name: (-eligible[name], name))
        return sorted(ranked[: SUBSETS[topics]]), single
    known = {name for doc in modapte for name in doc["topics"]}
    for name in topics:
        if name not in known:
            raise DulError(f"{source}: topic {name!r} has no ModApte document; {did_you_mean(name, sorted(known))}")
    return sorted(set(topics)), False


def _both_splits(modapte: list[dict], single: bool) -> Counter:
    """Training-document counts of the topics with >= 1 train and >= 1 test document."""
    counts = {"train": Counter(), "test": Counter()}
    for doc in modapte:
        if not single or len(doc["topics"]) == 1:
            counts[SPLITS[doc["lewissplit"]]].update(set(doc["topics"]))
    return Counter({name: n for name, n in counts["train"].items() if counts["test"][name]})


def _split(modapte: list[dict], split: str, index: dict[str, int], single: bool) -> dict:
    kept = []
    for doc in modapte:
        labels = sorted({index[name] for name in doc["topics"] if name in index})
        if SPLITS[doc["lewissplit"]] == split and labels and (not single or len(doc["topics"]) == 1):
            kept.append((int(doc["newid"]), doc, labels))
    kept.sort(key=lambda item: item[0])
    return {
        "ids": [doc["newid"] for _, doc, _ in kept],
        "texts": [f"{doc['title']}\n{doc['body']}" for _, doc, _ in kept],
        "titles": [doc["title"] for _, doc, _ in kept],
        "datelines": [doc["dateline"] for _, doc, _ in kept],
        "labels": [labels for _, _, labels in kept],
    }
