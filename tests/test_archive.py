"""Tests for components.data.archive: safe, in-memory reading of tar archives.

Every hostile archive is built here in ``tmp_path`` with ``tarfile``; each
must be refused with a DulError that names the archive (and the member).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from components.data.archive import iter_members, verify_sha256
from components.errors import DulError


def _file(name: str, data: bytes = b"hello") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def _tar_bytes(entries, trailer: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue() + trailer


def _archive(folder: Path, entries, name: str = "hostile.tar.gz", trailer: bytes = b"") -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(_tar_bytes(entries, trailer), mtime=0))
    return path


def _refused(path: Path, *needles: str, **limits) -> str:
    with pytest.raises(DulError) as caught:
        list(iter_members(path, **limits))
    message = str(caught.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message
    return message


GOOD = [
    _entry("data", tarfile.DIRTYPE),
    _file("data/a", b"first"),
    _file("./data//b", b""),
    _file("data/c", b"x" * 3000),
]


def test_regular_files_come_back_in_order_and_directories_are_skipped(tmp_path):
    members = list(iter_members(_archive(tmp_path, GOOD)))
    assert members == [("data/a", b"first"), ("data/b", b""), ("data/c", b"x" * 3000)]


def test_a_plain_uncompressed_tar_reads_too(tmp_path):
    path = tmp_path / "plain.tar"
    path.write_bytes(_tar_bytes(GOOD))
    assert [name for name, _ in iter_members(path)] == ["data/a", "data/b", "data/c"]


@pytest.mark.parametrize(
    "entry, needle",
    [
        (_file("data/../../evil"), "'data/../../evil'"),
        (_file("/etc/evil"), "'/etc/evil'"),
        (_entry("data/link", tarfile.SYMTYPE, "/etc/passwd"), "data/link is a symlink"),
        (_entry("data/hard", tarfile.LNKTYPE, "data/a"), "data/hard is a hard link"),
        (_entry("data/tty", tarfile.CHRTYPE), "data/tty is a character device"),
        (_entry("data/disk", tarfile.BLKTYPE), "data/disk is a block device"),
        (_entry("data/pipe", tarfile.FIFOTYPE), "data/pipe is a FIFO"),
        (_entry("../up", tarfile.DIRTYPE), "'../up'"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "chardev", "blockdev", "fifo", "dotdot-dir"],
)
def test_unsafe_members_are_refused(tmp_path, entry, needle):
    _refused(_archive(tmp_path, [_file("data/a"), entry]), needle)


def test_a_repeated_name_is_refused(tmp_path):
    _refused(_archive(tmp_path, [_file("data/a"), _file("data/b"), _file("./data/a")]), "data/a appears twice")


def test_a_member_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = _archive(tmp_path, [_file("data/small", b"x" * 10), _file("data/big", b"x" * 11)])
    _refused(path, "data/big declares 11 bytes", "limit of 10", max_member_bytes=10)
    assert len(list(iter_members(path, max_member_bytes=11))) == 2


def test_members_over_the_total_limit_are_refused(tmp_path):
    path = _archive(tmp_path, [_file("data/a", b"x" * 30_000), _file("data/b", b"y" * 30_000)])
    _refused(path, "member data/b takes the total past the limit of 50000", max_total_bytes=50_000)
    assert len(list(iter_members(path, max_total_bytes=80_000))) == 2  # tar padding counts too


def test_a_decompression_bomb_is_stopped_at_the_total_limit(tmp_path):
    # 20 MB of zeros after the tar end: a few kB compressed, legal but huge
    path = _archive(tmp_path, [_file("data/a")], trailer=bytes(20 << 20))
    assert path.stat().st_size < 100_000
    _refused(path, "more than 1000000 bytes decompressed", "archive-bomb", max_total_bytes=1_000_000)
    assert list(iter_members(path)) == [("data/a", b"hello")]


def test_a_truncated_gzip_is_refused(tmp_path):
    path = _archive(tmp_path, GOOD)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(path, "truncated or corrupt gzip/tar archive")


def test_a_gzip_cut_before_its_trailer_is_refused(tmp_path):
    # all tar data present, only the CRC/length trailer missing
    path = _archive(tmp_path, GOOD)
    path.write_bytes(path.read_bytes()[:-8])
    _refused(path, "truncated or corrupt")


def test_a_corrupt_gzip_is_refused(tmp_path):
    path = _archive(tmp_path, [_file(f"data/{i}", bytes(range(256)) * 20) for i in range(5)])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _refused(path, "truncated or corrupt")


def test_a_damaged_tar_header_after_the_first_member_is_refused(tmp_path):
    # tarfile alone would end quietly at the damaged header, dropping data/b
    raw = bytearray(_tar_bytes([_file("data/a", b"x" * 100), _file("data/b", b"y" * 100)]))
    raw[1024:1536] = b"garbage!" * 64
    path = tmp_path / "damaged.tar.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    _refused(path, "damaged tar header at byte 1024")


def test_garbage_after_the_tar_end_is_refused(tmp_path):
    _refused(_archive(tmp_path, [_file("data/a")], trailer=bytes(4096) + b"extra"), "data after the end")


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.tar.gz"
    path.write_bytes(b"")
    _refused(path, "empty (0 bytes)")


def test_a_file_that_is_not_a_tar_archive_is_refused(tmp_path):
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(gzip.compress(b"just some text, not a tar archive\n" * 30))
    _refused(path, "truncated or corrupt")


def test_a_missing_archive_is_named(tmp_path):
    _refused(tmp_path / "absent.tar.gz", "not found")


def test_the_expected_checksum_is_enforced(tmp_path):
    path = _archive(tmp_path, GOOD)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = "0" * 64
    _refused(path, "checksum mismatch", f"expected sha256 {wrong}", f"got {actual}", expected_sha256=wrong)
    assert len(list(iter_members(path, expected_sha256=actual))) == 3
    assert verify_sha256(path, actual.upper()) == actual
    assert verify_sha256(path, None) == actual
