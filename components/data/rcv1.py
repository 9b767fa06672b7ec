"""RCV1-v2 from the LYRL2004 token files, streamed one document at a time.

Lewis, Yang, Rose & Li (2004), "RCV1: A new benchmark collection for text
categorization research", JMLR 5, online appendices 8 and 12
(http://www.ai.mit.edu/projects/jmlr/papers/volume5/lewis04a/). Files:

- ``lyrl2004_tokens_train.dat.gz`` and ``lyrl2004_tokens_test_pt0..3.dat.gz``
  (gzip, or the same names without ``.gz``), records separated by a blank
  line; the tokens are lowercased, stop-worded, Porter-stemmed::

      .I 2286
      .W
      recov recoveri excit brought mexic city ...
      (more token lines)

- ``rcv1-v2.topics.qrels.gz``: one line ``<topic> <docid> 1`` per label.

``iter_token_file`` yields ``(docid, tokens)`` per record; ``iter_rcv1``
yields ``(split, (docid, labels, title, tokens))`` over the whole collection
(the record format of ``components.data.bow_stream``), never holding more
than one document's tokens. ``labels`` are sorted indices into the 103 topic
names (sorted), ``title`` the first ``TITLE_TOKENS`` stems (RCV1's token
files carry no headline). Splits (``scheme``):

- ``"lyrl2004"``: the train file (23,149 documents) / the four test files
  (781,265), as in the paper;
- ``"random"``: Salakhutdinov & Hinton's (2009) random halves, 402,207 /
  402,207: the qrels' document ids shuffled with ``seed``; first half train.

Strictness (DulError naming file and line): a record without ``.W``, a
non-numeric or repeated doc id, a malformed qrels line, a document without
any topic in the qrels, and, when all splits are read, a qrels document
missing from the token files (every RCV1-v2 document has a topic, so either
file is incomplete: an error, not ignored) or split sizes other than
``EXPECTED`` (with ``expected=True``).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.errors import DulError, did_you_mean

TRAIN_FILES = ("lyrl2004_tokens_train.dat.gz",)
TEST_FILES = tuple(f"lyrl2004_tokens_test_pt{i}.dat.gz" for i in range(4))
QRELS_FILE = "rcv1-v2.topics.qrels.gz"
SCHEMES = ("lyrl2004", "random")
EXPECTED = {"lyrl2004": {"train": 23_149, "test": 781_265}, "random": {"train": 402_207, "test": 402_207}}
N_TOPICS = 103
TITLE_TOKENS = 10
_TOPIC = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class Qrels:
    """Topics per document, as CSR: document ``doc_ids[i]`` has ``topics[indptr[i]:indptr[i+1]]``."""

    path: str
    topic_names: list[str]  # sorted
    doc_ids: np.ndarray  # int64 (D,), ascending
    indptr: np.ndarray  # int64 (D + 1,)
    topics: np.ndarray  # int16 (nnz,), ascending within a document

    def row(self, docid: int) -> int:
        """The row of ``docid`` in ``doc_ids``, or -1 if it has no topic."""
        row = int(np.searchsorted(self.doc_ids, docid))
        return row if row < len(self.doc_ids) and self.doc_ids[row] == docid else -1


def _open_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path`` (gunzipped if gzip); a damaged gzip stream is a DulError."""
    if not path.is_file():
        raise DulError(f"{path} not found; put the LYRL2004 token and qrels files in one folder")
    if path.stat().st_size == 0:
        raise DulError(f"{path} is empty (0 bytes); delete it and fetch it again")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        try:
            yield from stream
        except (EOFError, OSError, zlib.error) as error:
            raise DulError(f"{path} is a truncated or damaged gzip file ({error}); fetch it again") from error


def read_qrels(path: str | os.PathLike, expected_topics: int | None = N_TOPICS) -> Qrels:
    """Read ``rcv1-v2.topics.qrels(.gz)``: lines ``<topic> <docid> 1``."""
    path = Path(path)
    names, docs, topic_of = [], [], {}
    for number, line in enumerate(_open_lines(path), 1):
        fields = line.split()
        if len(fields) != 3 or fields[2] != b"1" or not fields[1].isdigit() or not _TOPIC.fullmatch(fields[0].decode("latin-1")):
            raise DulError(f"{path}:{number}: {line[:60].rstrip()!r} is not '<TOPIC> <docid> 1'; fetch the file again")
        names.append(topic_of.setdefault(fields[0], len(topic_of)))
        docs.append(int(fields[1]))
    if expected_topics is not None and len(topic_of) != expected_topics:
        raise DulError(f"{path}: {len(topic_of)} topics, expected {expected_topics}; fetch the file again")
    order = sorted(topic_of, key=lambda name: name)
    rank = np.empty(len(order), dtype=np.int16)
    rank[[topic_of[name] for name in order]] = np.arange(len(order), dtype=np.int16)
    return _csr(path, [name.decode() for name in order], np.array(docs, np.int64), rank[np.array(names, np.int64)])


def _csr(path: Path, topic_names: list[str], docs: np.ndarray, topics: np.ndarray) -> Qrels:
    order = np.lexsort((topics, docs))
    docs, topics = docs[order], topics[order]
    repeated = np.flatnonzero((np.diff(docs) == 0) & (np.diff(topics) == 0))
    if repeated.size:
        i = repeated[0]
        raise DulError(f"{path}: document {docs[i]} has topic {topic_names[topics[i]]} twice; fetch the file again")
    doc_ids, starts = np.unique(docs, return_index=True)
    indptr = np.append(starts, len(docs)).astype(np.int64)
    return Qrels(str(path), topic_names, doc_ids, indptr, topics)


def iter_token_file(path: str | os.PathLike) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(docid, tokens)`` per record of one LYRL2004 token file (see the module docstring)."""
    path = Path(path)
    docid, start, tokens = None, 0, None
    for number, line in enumerate(_open_lines(path), 1):
        if line.startswith(b".I"):
            if docid is not None:
                yield _record(path, docid, start, tokens)
            docid, start, tokens = line[2:].strip(), number, None
        elif docid is None:
            if line.strip():
                raise DulError(f"{path}:{number}: expected '.I <docid>', got {line[:40]!r}; fetch the file again")
        elif tokens is None:
            if line.rstrip(b"\r\n") != b".W":
                raise DulError(f"{path}:{number}: record .I {docid.decode('latin-1')} has no .W line; fetch the file again")
            tokens = []
        else:
            tokens.extend(line.decode("latin-1").split())
    if docid is None:
        raise DulError(f"{path} holds no '.I <docid>' records; fetch the file again")
    yield _record(path, docid, start, tokens)


def _record(path: Path, docid: bytes, line: int, tokens: list[str] | None) -> tuple[str, list[str]]:
    if tokens is None:
        raise DulError(f"{path}:{line}: record .I {docid.decode('latin-1')} has no .W line; fetch the file again")
    if not docid.isdigit():
        raise DulError(f"{path}:{line}: doc id {docid[:20]!r} is not a number; fetch the file again")
    return docid.decode(), tokens


def iter_rcv1(
    folder: str | os.PathLike,
    *,
    scheme: str = "lyrl2004",
    seed: int = 0,
    splits: Iterable[str] = ("train", "test"),
    qrels: Qrels | None = None,
    expected: bool = True,
) -> Iterator[tuple[str, tuple[str, list[int], str, list[str]]]]:
    """Yield ``(split, (docid, labels, title, tokens))`` for the documents of ``splits``.

    Reads only the token files that can hold them (the train file alone for
    ``lyrl2004`` train). ``qrels``: a ``read_qrels`` result to reuse.
    """
    if scheme not in SCHEMES:
        raise DulError(f"unknown RCV1 split scheme {scheme!r}; {did_you_mean(scheme, SCHEMES)}")
    folder, wanted = Path(folder), set(splits)
    qrels = qrels or read_qrels(folder / QRELS_FILE)
    in_train = _random_train(qrels, seed) if scheme == "random" else None
    seen = np.zeros(len(qrels.doc_ids), dtype=bool)
    counts = dict.fromkeys(("train", "test"), 0)
    for file_split, name in _files(scheme, wanted):
        path = _token_path(folder, name)
        for docid, tokens in iter_token_file(path):
            row = _row(qrels, path, docid, seen)
            split = file_split or ("train" if in_train[row] else "test")
            counts[split] += 1
            if split in wanted:
                labels = qrels.topics[qrels.indptr[row] : qrels.indptr[row + 1]].tolist()
                yield split, (docid, labels, " ".join(tokens[:TITLE_TOKENS]), tokens)
    if wanted >= {"train", "test"}:
        _check_complete(qrels, seen, counts, scheme if expected else None)


def _files(scheme: str, wanted: set[str]) -> list[tuple[str | None, str]]:
    """(split of every record in the file, or None where it is drawn at random; file name)."""
    if scheme == "random":
        return [(None, name) for name in TRAIN_FILES + TEST_FILES]
    return [(split, name) for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)) if split in wanted
            for name in names]


def _token_path(folder: Path, name: str) -> Path:
    for path in (folder / name, folder / name.removesuffix(".gz")):
        if path.is_file():
            return path
    raise DulError(f"{folder / name} (or without .gz) not found; put the five LYRL2004 token files there")


def _row(qrels: Qrels, path: Path, docid: str, seen: np.ndarray) -> int:
    row = qrels.row(int(docid))
    if row < 0:
        raise DulError(f"{path}: document {docid} has no topic in {qrels.path}; the files do not belong together")
    if seen[row]:
        raise DulError(f"{path}: document {docid} appears twice in the token files; fetch them again")
    seen[row] = True
    return row


def _random_train(qrels: Qrels, seed: int) -> np.ndarray:
    """bool (D,): a seeded half of the qrels' documents (floor(D / 2)) is train."""
    order = np.random.default_rng(seed).permutation(len(qrels.doc_ids))
    in_train = np.zeros(len(qrels.doc_ids), dtype=bool)
    in_train[order[: len(order) // 2]] = True
    return in_train


def _check_complete(qrels: Qrels, seen: np.ndarray, counts: dict[str, int], scheme: str | None) -> None:
    if not seen.all():
        missing = qrels.doc_ids[np.flatnonzero(~seen)]
        raise DulError(
            f"{qrels.path}: {missing.size} documents (e.g. {missing[0]}) are in no token file;"
            " a token file is missing or truncated, fetch them again"
        )
    if scheme is not None and counts != EXPECTED[scheme]:
        raise DulError(f"RCV1 split sizes {counts}, expected {EXPECTED[scheme]}; fetch the token files again")


def write_token_file(path: str | os.PathLike, documents: Iterable[tuple[str, list[str]]], line_tokens: int = 12) -> None:
    """Write ``(docid, tokens)`` records in the LYRL2004 format (gzip if ``path`` ends in .gz, level 1).

    For fixtures and benchmarks; the tokens are wrapped ``line_tokens`` a line.
    """
    opener = _writer(path)
    with opener as out:
        for docid, tokens in documents:
            lines = [" ".join(tokens[i : i + line_tokens]) for i in range(0, len(tokens), line_tokens)]
            out.write(f".I {docid}\n.W\n{chr(10).join(lines)}\n\n".encode("latin-1"))


def write_qrels(path: str | os.PathLike, labels: Iterable[tuple[str, list[str]]]) -> None:
    """Write ``(docid, topic names)`` as qrels lines ``<topic> <docid> 1`` (gzip if ``path`` ends in .gz)."""
    opener = _writer(path)
    with opener as out:
        for docid, topics in labels:
            out.write("".join(f"{topic} {docid} 1\n" for topic in topics).encode("latin-1"))


def _writer(path: str | os.PathLike):
    """A binary file for writing; gzip (level 1, no timestamp) when the name ends in .gz."""
    if str(path).endswith(".gz"):
        return gzip.GzipFile(path, "wb", compresslevel=1, mtime=0)
    return open(path, "wb")
