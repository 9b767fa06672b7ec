"""Hostile and broken inputs, across every loader: each is refused with a DulError.

One parametrised test runs every case in ``CASES``. A case builds its broken
input in ``tmp_path`` (with tarfile, gzip, struct, pyarrow, in the documented
formats) and returns what to call, the path the one-line message must name,
a regex for the problem, and where the call would write its output (or
None): that path must not exist afterwards, nor any temporary beside it.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
import struct
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data import (
    bow_stream,
    cifar,
    idx,
    ingest,
    newsgroups,
    rcv1,
    reuters,
    sources,
)
from components.data.archive import iter_members
from components.data.bow_stream import iter_bow_batches, write_bow_stream
from components.errors import DulError
from tests.test_cifar import cifar10_members, cifar100_members, tar_gz
from tests.test_data import _arrays, _pin
from tests.test_rcv1 import mini_documents, write_mini
from tests.test_reuters import DOCS, HEADER, document, sgm

CASES = {}


def case(builder):
    CASES[builder.__name__] = builder
    return builder


def tar_entries(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return path


def info(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple:
    entry = tarfile.TarInfo(name)
    entry.type, entry.linkname, entry.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    return entry, data


def cifar10(path: Path, edit=None) -> Path:
    members, _ = cifar10_members()
    if edit:
        edit(members)
    return tar_gz(path, members)


def load10(path):
    return lambda: cifar.load_cifar10(path, expected_sha256=None, expected=None)


def reuters_folder(tmp_path: Path, text: str | bytes) -> Path:
    folder = tmp_path / "reuters"
    folder.mkdir()
    (folder / "reut2-000.sgm").write_bytes(text if isinstance(text, bytes) else text.encode("latin-1"))
    return folder


def load_reuters_path(path, **kwargs):
    return lambda: reuters.load_reuters(path, expected_documents=None, **kwargs)


def mini_rcv1(tmp_path: Path, documents=None) -> Path:
    documents = documents or mini_documents(12)
    return write_mini(tmp_path / "rcv1", documents, list(documents)[:4])


def stream_rcv1(folder: Path, out: Path):
    def records(wanted):
        qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE, expected_topics=None)
        return rcv1.iter_rcv1(folder, qrels=qrels, splits=wanted, expected=False)

    return lambda: write_bow_stream(out, records, label_names=["a"] * 5, multi_label=True)


def bow_file(path: Path, counts, indices, value_type=None, vocabulary_size: int = 3) -> Path:
    offsets = pa.array([0, len(indices)], pa.int32())
    table = pa.table({
        "id": ["d"], "label": pa.array([0], pa.int64()), "title": ["t"],
        "indices": pa.ListArray.from_arrays(offsets, pa.array(indices, pa.int32())),
        "counts": pa.ListArray.from_arrays(offsets, pa.array(counts, value_type or pa.int32())),
    }).replace_schema_metadata({"vocabulary_size": str(vocabulary_size)})
    pq.write_table(table, path)
    return path


def idx_folder(tmp_path: Path, monkeypatch, edit) -> Path:
    arrays = _arrays(n_train=5, n_test=3)
    edit(arrays)
    folder = tmp_path / "src"
    for name, array in arrays.items():
        idx.write_idx(folder / f"{name}.gz", array)
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", _pin(arrays))
    return folder


@functools.cache
def _zeros_member() -> bytes:
    return gzip.compress(bytes(64 << 20), compresslevel=9, mtime=0)  # 64 MiB of zeros in ~64 KiB


def gzip_bomb(path: Path, shape: tuple[int, ...], gib: int = 2) -> Path:
    """A gzip'd IDX file: a valid header for ``shape``, then ``gib`` GiB of zeros in ~1 MB per GiB.

    The zeros are 64 MiB gzip members one after another (RFC 1952 allows
    that; gunzip and Python's gzip decompress them all as one stream).
    """
    header = struct.pack(f">BBBB{len(shape)}I", 0, 0, idx.UBYTE, len(shape), *shape)
    path.write_bytes(gzip.compress(header, mtime=0) + _zeros_member() * (16 * gib))
    return path


# ---------------------------------------------------------------- IDX, ingest, sources


@case
def idx_gzip_bomb(tmp_path, monkeypatch):
    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", (10, 28, 28))
    problem = r"decompresses to more than the 7856 bytes its header promises \(shape \(10, 28, 28\)\).*gzip-bomb guard"
    return lambda: idx.read_idx(path, ndim=3), path, problem, None


@case
def idx_absurd_header_shape(tmp_path, monkeypatch):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBB3I", 0, 0, 8, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1), mtime=0))
    problem = r"header promises shape \(4294967295, 4294967295, 4294967295\) = \d+ bytes, over the limit of 17179869184"
    return lambda: idx.read_idx(path), path, problem, None


@case
def ingest_idx_gzip_bomb(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path, monkeypatch, lambda arrays: None)
    bomb = gzip_bomb(folder / "t10k-images-idx3-ubyte.gz", (3, 28, 28), gib=1)
    out = tmp_path / "data"
    return lambda: ingest("mnist", out, source=folder), bomb, r"more than the 2368 bytes .*gzip-bomb guard", out


@case
def ingest_reordered_mnist(tmp_path, monkeypatch):
    def reverse(arrays):
        arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"][::-1]

    pins = _pin(_arrays(n_train=5, n_test=3))
    folder = idx_folder(tmp_path, monkeypatch, reverse)
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", pins)
    monkeypatch.setitem(sources.CANONICAL_SHAPES, "train-images-idx3-ubyte", (5, 28, 28))
    out = tmp_path / "data"
    problem = r"checksum mismatch .*the pin covers its exact bytes, the order of the images included"
    return lambda: ingest("mnist", out, source=folder), folder / "train-images-idx3-ubyte.gz", problem, out




@case
def idx_truncated_gzip(tmp_path, monkeypatch):
    path = idx.write_idx(tmp_path / "labels.gz", np.zeros(100, np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    return lambda: idx.read_idx(path), path, r"damaged or truncated gzip file", None


@case
def idx_zero_byte_file(tmp_path, monkeypatch):
    path = tmp_path / "images"
    path.touch()
    return lambda: idx.read_idx(path), path, r"is empty \(0 bytes\)", None


@case
def ingest_wrong_idx_magic(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path, monkeypatch, lambda arrays: None)
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(struct.pack(">HBB3I", 0x0102, 8, 3, 5, 28, 28) + bytes(5 * 784)))
    out = tmp_path / "data"
    return lambda: ingest("mnist", out, source=folder), bad, r"not an IDX file \(magic 01020803", out


@case
def ingest_image_label_count_mismatch(tmp_path, monkeypatch):
    def drop(arrays):
        arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:4]

    folder = idx_folder(tmp_path, monkeypatch, drop)
    out = tmp_path / "data"
    return lambda: ingest("mnist", out, source=folder), folder, r"has 5 images but .* has 4 labels", out


@case
def download_checksum_mismatch(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path, monkeypatch, lambda arrays: None)
    pins = {name: sources.Pin("0" * 64) for name in sources.FILES}
    monkeypatch.setitem(sources.CHECKSUMS, "mnist", pins)
    cache, out = tmp_path / "cache", tmp_path / "data"
    action = lambda: ingest("mnist", out, source=folder.as_uri(), cache_dir=cache)
    return action, folder.as_uri(), r"checksum mismatch for mnist train-images", out


@case
def unknown_dataset_name(tmp_path, monkeypatch):
    return lambda: sources.check_dataset("fashion_mnist"), "ingest.dataset", r"unknown dataset .*did you mean", None


# ---------------------------------------------------------------- archives


@case
def archive_zero_byte(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.touch()
    return load10(path), path, r"is empty \(0 bytes\)", None


@case
def archive_truncated_gzip(tmp_path, monkeypatch):
    path = cifar10(tmp_path / "c.tar.gz")
    path.write_bytes(path.read_bytes()[:-100])
    return load10(path), path, r"truncated or corrupt gzip/tar archive", None


@case
def archive_checksum_mismatch(tmp_path, monkeypatch):
    path = tar_entries(tmp_path / "20news-bydate.tar.gz", [info("20news-bydate-train/a.b/1", b"x")])
    return lambda: newsgroups.load_20newsgroups(path), path, r"checksum mismatch: expected sha256 866933", None


@case
def archive_dotdot_member(tmp_path, monkeypatch):
    path = cifar10(tmp_path / "c.tar.gz", lambda m: m.update({"cifar-10-batches-bin/../../evil": b"x"}))
    return load10(path), path, r"'cifar-10-batches-bin/\.\./\.\./evil' has an absolute, '\.\.' or empty path", None


@case
def archive_absolute_member(tmp_path, monkeypatch):
    path = tar_entries(tmp_path / "reuters21578.tar.gz", [info("/etc/reut2-000.sgm", sgm(DOCS))])
    return load_reuters_path(path), path, r"'/etc/reut2-000\.sgm' has an absolute", None


@case
def archive_symlink_member(tmp_path, monkeypatch):
    entries = [info("20news-bydate-train/a.b/1", b"x"), info("20news-bydate-test/a.b/2", kind=tarfile.SYMTYPE,
                                                                linkname="/etc/passwd")]
    path = tar_entries(tmp_path / "20news.tar.gz", entries)
    action = lambda: newsgroups.load_20newsgroups(path, expected_sha256=None)
    return action, path, r"member 20news-bydate-test/a\.b/2 is a symlink \(to /etc/passwd\)", None


@case
def archive_device_member(tmp_path, monkeypatch):
    path = tar_entries(tmp_path / "c.tar.gz", [info("cifar-10-batches-bin/tty", kind=tarfile.CHRTYPE)])
    return load10(path), path, r"member cifar-10-batches-bin/tty is a character device", None


@case
def archive_bomb_member(tmp_path, monkeypatch):
    entry, _ = info("cifar-100-binary/train.bin")
    entry.size = 1 << 40  # declares 1 TiB; only the header is in the archive
    path = tmp_path / "c100.tar.gz"
    path.write_bytes(gzip.compress(entry.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024), mtime=0))
    action = lambda: cifar.load_cifar100(path, expected_sha256=None, expected=None)
    return action, path, r"declares 1099511627776 bytes, over the limit of 209715200 .*archive-bomb guard", None


@case
def archive_bomb_total(tmp_path, monkeypatch):
    path = tar_entries(tmp_path / "a.tar.gz", [info(f"d/{i}", bytes(4096)) for i in range(8)])
    return lambda: list(iter_members(path, max_total_bytes=20_000)), path, r"archive-bomb guard", None


@case
def newsgroups_unexpected_member(tmp_path, monkeypatch):
    path = tar_entries(tmp_path / "20news.tar.gz", [info("20news-bydate-train/a.b/1", b"x"), info("setup.py", b"x")])
    action = lambda: newsgroups.load_20newsgroups(path, expected_sha256=None)
    return action, path, r"unexpected member setup\.py", None


# ---------------------------------------------------------------- CIFAR


@case
def cifar_truncated_record(tmp_path, monkeypatch):
    path = cifar10(tmp_path / "c.tar.gz", lambda m: m.update(
        {"cifar-10-batches-bin/data_batch_3.bin": m["cifar-10-batches-bin/data_batch_3.bin"][:-1]}))
    return load10(path), f"{path}/cifar-10-batches-bin/data_batch_3.bin", r"6145 bytes is not a whole number of 3073", None


@case
def cifar_label_out_of_range(tmp_path, monkeypatch):
    path = cifar10(tmp_path / "c.tar.gz", lambda m: m.update(
        {"cifar-10-batches-bin/test_batch.bin": b"\x0a" + m["cifar-10-batches-bin/test_batch.bin"][1:]}))
    return load10(path), f"{path}/cifar-10-batches-bin/test_batch.bin", r"record 0 has label byte 10, outside", None


@case
def cifar_label_names_not_ascii(tmp_path, monkeypatch):
    members, _ = cifar100_members()
    members["cifar-100-binary/coarse_label_names.txt"] = "caf\xe9\n".encode("latin-1") * 20
    path = tar_gz(tmp_path / "c100.tar.gz", members)
    action = lambda: cifar.load_cifar100(path, expected_sha256=None, expected=None)
    return action, f"{path}/cifar-100-binary/coarse_label_names.txt", r"is not ASCII text \(byte 3\)", None


# ---------------------------------------------------------------- Reuters


@case
def reuters_empty_file(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, HEADER)
    return load_reuters_path(folder), folder / "reut2-000.sgm", r"holds no <REUTERS> documents", None


@case
def reuters_missing_closing_tag(tmp_path, monkeypatch):
    text = HEADER + document(*DOCS[0]) + document(*DOCS[1]).replace("</REUTERS>", "") + document(*DOCS[2])
    folder = reuters_folder(tmp_path, text)
    return load_reuters_path(folder), f"{folder / 'reut2-000.sgm'}:16", r"<REUTERS> is not closed", None


@case
def reuters_unclosed_body(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, HEADER + document(*DOCS[0]).replace("</BODY>", ""))
    return load_reuters_path(folder), f"{folder / 'reut2-000.sgm'}:2", r"<BODY> opened 1 times but closed 0", None


@case
def reuters_unknown_topic_in_subset(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, sgm(DOCS))
    action = load_reuters_path(folder, topics=["earn", "coffee"])
    return action, folder, r"topic 'coffee' has no ModApte document", None


@case
def reuters_missing_newid(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, HEADER + document(*DOCS[0]) + document(*DOCS[1]).replace(' NEWID="2"', ""))
    return load_reuters_path(folder), f"{folder / 'reut2-000.sgm'}:16", r"<REUTERS> has no numeric NEWID", None


@case
def reuters_repeated_newid(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, sgm(DOCS[:2] + [(1, "TEST", "YES", ["acq"])]))
    return load_reuters_path(folder), f"{folder / 'reut2-000.sgm'}:30", r"NEWID 1 repeats .*:2", None


@case
def reuters_bad_lewissplit(tmp_path, monkeypatch):
    folder = reuters_folder(tmp_path, sgm([(1, "TRIAN", "YES", ["earn"])]))
    return load_reuters_path(folder), f"{folder / 'reut2-000.sgm'}:2", r"LEWISSPLIT='TRIAN' is not TRAIN", None


# ---------------------------------------------------------------- RCV1


@case
def rcv1_record_without_w(tmp_path, monkeypatch):
    path = tmp_path / "t.dat"
    path.write_text(".I 1\n.W\na b\n\n.I 2\na b\n")
    return lambda: list(rcv1.iter_token_file(path)), f"{path}:6", r"record \.I 2 has no \.W line", None


@case
def rcv1_non_numeric_docid(tmp_path, monkeypatch):
    path = tmp_path / "t.dat"
    path.write_text(".I 1x\n.W\na\n")
    return lambda: list(rcv1.iter_token_file(path)), f"{path}:1", r"doc id b'1x' is not a number", None


@case
def rcv1_truncated_token_gzip(tmp_path, monkeypatch):
    folder, out = mini_rcv1(tmp_path), tmp_path / "bow"
    path = folder / rcv1.TEST_FILES[2]
    path.write_bytes(path.read_bytes()[:-10])
    return stream_rcv1(folder, out), path, r"truncated or damaged gzip file", out


@case
def rcv1_qrels_malformed_line(tmp_path, monkeypatch):
    path = tmp_path / "rcv1-v2.topics.qrels"
    path.write_text("CCAT 2286 1\nCCAT 2287\n")
    return lambda: rcv1.read_qrels(path), f"{path}:2", r"b'CCAT 2287' is not '<TOPIC> <docid> 1'", None


@case
def rcv1_qrels_latin1_topic(tmp_path, monkeypatch):
    path = tmp_path / "rcv1-v2.topics.qrels.gz"
    path.write_bytes(gzip.compress(b"CCAT 2286 1\nC\xc9AT 2286 1\n"))
    return lambda: rcv1.read_qrels(path), f"{path}:2", r"is not '<TOPIC> <docid> 1'", None


@case
def rcv1_qrels_document_missing_from_tokens(tmp_path, monkeypatch):
    documents = mini_documents(12)
    folder, out = mini_rcv1(tmp_path, documents), tmp_path / "bow"
    rcv1.write_qrels(folder / rcv1.QRELS_FILE, [*((d, t) for d, (_, t) in documents.items()), ("999", ["CCAT"])])
    return stream_rcv1(folder, out), folder / rcv1.QRELS_FILE, r"1 documents \(e\.g\. 999\) are in no token file", out


@case
def rcv1_token_document_without_topic(tmp_path, monkeypatch):
    documents = mini_documents(12)
    folder, out = mini_rcv1(tmp_path, documents), tmp_path / "bow"
    rcv1.write_qrels(folder / rcv1.QRELS_FILE, [(d, t) for d, (_, t) in documents.items() if d != "108"])
    return stream_rcv1(folder, out), folder, r"document 108 has no topic in .*qrels", out


@case
def rcv1_repeated_document(tmp_path, monkeypatch):
    folder, out = mini_rcv1(tmp_path), tmp_path / "bow"
    rcv1.write_token_file(folder / rcv1.TEST_FILES[3], [("100", ["x"])])
    return stream_rcv1(folder, out), folder / rcv1.TEST_FILES[3], r"document 100 appears twice", out


# ---------------------------------------------------------------- bag-of-words Parquet


@case
def bow_negative_counts(tmp_path, monkeypatch):
    path = bow_file(tmp_path / "train.parquet", [2, -1], [0, 2])
    return lambda: list(iter_bow_batches(path)), path, r"negative counts \(min -1\)", None


@case
def bow_non_integer_counts(tmp_path, monkeypatch):
    path = bow_file(tmp_path / "train.parquet", [1.5, 1.0], [0, 2], value_type=pa.float64())
    return lambda: list(iter_bow_batches(path)), path, r"column 'counts' holds double, not integers", None


@case
def bow_index_beyond_vocabulary(tmp_path, monkeypatch):
    path = bow_file(tmp_path / "train.parquet", [1, 1], [0, 3])
    return lambda: list(iter_bow_batches(path)), path, r"word indices outside \[0, 3\) \(max 3\)", None


@case
def bow_not_parquet(tmp_path, monkeypatch):
    path = tmp_path / "train.parquet"
    path.write_text("id,label\n")
    return lambda: list(iter_bow_batches(path)), path, r"is not a readable bag-of-words split", None


@case
def bow_stream_empty_training_documents(tmp_path, monkeypatch):
    splits = {"train": {"ids": ["a"], "labels": [0], "titles": [""], "texts": ["  "]},
              "test": {"ids": ["b"], "labels": [0], "titles": [""], "texts": ["x"]}}
    out = tmp_path / "bow"
    action = lambda: write_bow_stream(out, bow_stream.in_memory_records(splits, str.split), label_names=["a"])
    return action, out, r"the train documents hold no tokens", out


def _no_output(out: Path) -> None:
    assert not out.exists(), f"{out} was left behind"
    if out.parent.exists():
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert not leftovers, f"temporaries left beside {out}: {leftovers}"


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_with_a_one_line_message(tmp_path, monkeypatch, name):
    action, named, problem, out = CASES[name](tmp_path, monkeypatch)
    with pytest.raises(DulError) as caught:
        action()
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(named) in message, message
    assert re.search(problem, message), message
    if out is not None:
        _no_output(out)


def test_a_gzip_bomb_is_refused_without_decompressing_it(tmp_path):
    # 2 GiB of zeros behind a header promising 7,840 bytes; gzip.decompress would take over 4 GB here
    path = gzip_bomb(tmp_path / "images.gz", (10, 28, 28))
    assert path.stat().st_size < 3_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DulError, match=r"more than the 7856 bytes its header promises"):
            idx.read_bytes(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes allocated"


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
