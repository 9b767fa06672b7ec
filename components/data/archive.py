"""Safe reading of tar archives: members' bytes in memory, nothing extracted.

``iter_members(path)`` yields ``(name, data)`` for every regular file of a
tar archive (gzip'd, or plain tar), in archive order, without writing to
disk. It trusts nothing in the archive; each of these is a ``DulError``
naming the archive (and the member, where there is one):

- a member name that is absolute or holds a ``..`` component;
- a symlink, hard link, character or block device, FIFO, sparse or other
  non-regular entry (directories are skipped: they carry no data);
- the same file name twice (which copy is meant would be ambiguous);
- a member whose declared size exceeds ``max_member_bytes`` (64 MiB);
- more than ``max_total_bytes`` (2 GiB) decompressed in all, tar headers and
  padding included: an archive bomb is stopped after reading that much;
- a truncated or corrupt gzip stream or tar structure, an empty file.

The whole gzip stream is read to its end, so its CRC is checked even past
the tar end-of-archive blocks. ``expected_sha256`` (of the archive file as
stored) is checked before anything is read from it.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from components.errors import DulError
from components.io import file_sha256

MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 2 << 30
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
# tarfile reads ahead at most one record (20 blocks of 512 bytes) past a header,
# in reads of one record; keeping this many reads covers that with room to spare
_RECENT_READS = 64


def verify_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Return the sha256 of the file at ``path``; DulError if ``expected`` is given and differs."""
    _check_file(path)
    actual = file_sha256(path)
    if expected is not None and actual != expected.lower():
        raise DulError(
            f"{path}: checksum mismatch: expected sha256 {expected}, got {actual};"
            " the archive is damaged or not the real one, fetch it again"
        )
    return actual


def iter_members(
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, data)`` per regular file of the tar archive at ``path``.

    ``name`` is the member's POSIX path normalised (``./a//b`` -> ``a/b``).
    See the module docstring for what is rejected.
    """
    archive = str(path)
    if expected_sha256 is None:
        _check_file(path)
    else:
        verify_sha256(path, expected_sha256)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        guard = _Guarded(stream, max_total_bytes, archive)
        try:
            yield from _members(guard, archive, max_member_bytes, max_total_bytes)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise DulError(
                f"{archive} is a truncated or corrupt {'gzip/' if compressed else ''}tar archive{guard.where()}"
                f" ({error}); fetch it again"
            ) from error


def _check_file(path: str | os.PathLike) -> None:
    path = Path(path)
    if not path.is_file():
        raise DulError(f"{path} not found (or not a file); point to the tar.gz archive")
    if path.stat().st_size == 0:
        raise DulError(f"{path} is empty (0 bytes); delete it and fetch the archive again")


def _members(guard: _Guarded, archive: str, max_member: int, max_total: int) -> Iterator[tuple[str, bytes]]:
    seen: set[str] = set()
    total = 0
    # "r|": a forward-only stream, so tarfile never seeks and reads each byte once
    with tarfile.open(fileobj=guard, mode="r|") as tar:
        for member in tar:
            name = _safe_name(member, archive)
            if member.isdir():
                continue
            _check_type(member, name, archive)
            if name in seen:
                raise DulError(f"{archive}: member {name} appears twice; the archive is not a valid source")
            seen.add(name)
            if member.size > max_member:
                raise DulError(
                    f"{archive}: member {name} declares {member.size} bytes, over the limit of"
                    f" {max_member} per member; refusing it (archive-bomb guard)"
                )
            total += member.size
            if total > max_total:
                raise DulError(
                    f"{archive}: member {name} takes the total past the limit of {max_total} bytes;"
                    " refusing the archive (archive-bomb guard)"
                )
            guard.member = name
            data = tar.extractfile(member).read()
            if len(data) != member.size:
                raise DulError(f"{archive}: member {name} is truncated ({len(data)} of {member.size} bytes)")
            yield name, data
        _check_end(guard, tar.offset, archive)


def _check_end(guard: _Guarded, end: int, archive: str) -> None:
    """After the last member only zero blocks may follow, up to the end of the stream.

    tarfile ends its iteration quietly at a damaged header after the first
    member; a non-zero byte past ``end`` (where it stopped) exposes that.
    Reading on to the end also makes gzip check its CRC and length.
    """
    if not _zeros(guard.since(end)):
        raise DulError(f"{archive}: damaged tar header at byte {end}{guard.where()}; fetch it again")
    while data := guard.read(_CHUNK):
        if not _zeros(data):
            raise DulError(f"{archive}: data after the end of the tar archive; fetch it again")


def _zeros(data: bytes) -> bool:
    return data.count(0) == len(data)


def _safe_name(member: tarfile.TarInfo, archive: str) -> str:
    parts = [part for part in member.name.split("/") if part not in ("", ".")]
    if member.name.startswith("/") or ".." in parts or not parts:
        raise DulError(
            f"{archive}: member {member.name!r} has an absolute, '..' or empty path;"
            " refusing the archive (it could point outside its folder)"
        )
    return "/".join(parts)


def _check_type(member: tarfile.TarInfo, name: str, archive: str) -> None:
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        raise DulError(f"{archive}: member {name} is a {kind} (to {member.linkname}); refusing the archive")
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "character device" if member.ischr() else "block device" if member.isblk() else "FIFO"
        raise DulError(f"{archive}: member {name} is a {kind}; refusing the archive")
    if not member.isreg() or member.issparse():
        raise DulError(f"{archive}: member {name} has unsupported tar type {member.type!r}; refusing the archive")


class _Guarded:
    """A read-only stream that raises a DulError once over ``limit`` bytes came through.

    It keeps the last few reads so that ``since`` can return what tarfile
    read ahead past a given offset.
    """

    def __init__(self, stream, limit: int, archive: str):
        self.stream, self.limit, self.archive = stream, limit, archive
        self.count = 0
        self.member: str | None = None  # the last member read, for messages
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=_RECENT_READS)  # (offset, data)

    def where(self) -> str:
        return f" (at or after member {self.member})" if self.member else ""

    def since(self, offset: int) -> bytes:
        """The bytes already read from ``offset`` on (it must lie within the recent reads)."""
        if offset >= self.count:
            return b""
        start = self.recent[0][0] if self.recent else self.count
        if offset < start:
            raise AssertionError(f"offset {offset} is older than the recent reads (from {start})")
        return b"".join(data for _, data in self.recent)[offset - start :]

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.limit + 1 - self.count  # never read an unbounded amount at once
        data = self.stream.read(min(size, self.limit + 1 - self.count))
        self.recent.append((self.count, data))
        self.count += len(data)
        if self.count > self.limit:
            raise DulError(
                f"{self.archive}: more than {self.limit} bytes decompressed{self.where()};"
                " refusing the archive (archive-bomb guard)"
            )
        return data
