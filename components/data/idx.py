"""The IDX format of MNIST and Fashion-MNIST: a strict reader and a writer.

An IDX file (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a 4-byte
magic number, one big-endian uint32 per dimension, then the payload in
row-major (C) order::

    0x00 0x00 <type> <ndim>   type 0x08 = unsigned byte; ndim 3 for images
    <d_0> ... <d_ndim-1>      (N, H, W) for images, (N,) for labels
    <payload>                 prod(d) bytes for type 0x08

So images have magic 0x00000803 and labels 0x00000801. Files may be gzipped
(as distributed) or raw; the reader tells them apart by the gzip magic
bytes, not by the file name. A gzip file is decompressed in chunks: it is
refused as soon as it yields more than the header's shape promises, and a
header promising more than ``MAX_IDX_BYTES`` is refused before any payload is
read (gzip-bomb guard). Every defect is a ``DulError`` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from components.errors import DulError
from components.io import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
# Refuse a gzip'd IDX file whose header promises more than this (16 GiB; MNIST's largest file is 47 MB) before
# reading it; a file decompressing to more than its header promises is refused once past that (gzip-bomb guard).
MAX_IDX_BYTES = 1 << 34
_CHUNK = 1 << 20
TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts with the gzip magic bytes 1f 8b."""
    return data[:2] == GZIP_MAGIC


def read_bytes(path: str | os.PathLike, label: str | None = None, ndim: int | None = None) -> bytes:
    """Return the IDX bytes of ``path``, gunzipped if the file is gzip.

    ``label`` names the file in error messages (default: the path), e.g. the
    URL a temporary download came from. A gzip file is decompressed in
    chunks and refused as soon as it yields more than its IDX header
    promises (a gzip bomb never reaches memory whole); ``ndim``, if given,
    is checked against that header first (see ``parse``).
    """
    label = label or str(path)
    with _open(path, label) as (stream, compressed):
        return _gunzip(stream, label, ndim) if compressed else stream.read()


def read_shape(path: str | os.PathLike, ndim: int | None = None, label: str | None = None) -> tuple[int, ...]:
    """The shape the IDX header of ``path`` (gzipped or raw) declares, reading nothing past the header."""
    label = label or str(path)
    with _open(path, label) as (stream, _):
        return _read_header(stream, label, ndim)[1]


@contextlib.contextmanager
def _open(path: str | os.PathLike, label: str) -> Iterator[tuple[BinaryIO, bool]]:
    """``(stream, compressed)``: ``path`` opened, through gzip if it is gzip; errors reading it are DulErrors."""
    try:
        with open(path, "rb") as file:
            start = file.read(2)
            if not start:
                raise DulError(f"{label} is empty (0 bytes); delete it and fetch the file again")
            file.seek(0)
            compressed = is_gzip(start)
            yield (gzip_module.GzipFile(fileobj=file, mode="rb") if compressed else file), compressed
    except (EOFError, gzip_module.BadGzipFile, zlib.error) as error:
        raise DulError(f"{label} is a damaged or truncated gzip file ({error}); fetch it again") from error
    except OSError as error:
        raise DulError(f"cannot read {label}: {error.strerror or error}") from error


def _read_header(stream: BinaryIO, label: str, ndim: int | None) -> tuple[bytes, tuple[int, ...]]:
    """The header's bytes, read from the start of ``stream``, and the shape they declare."""
    head = stream.read(4)
    _check_kind(head, label)
    head += stream.read(4 * head[3])
    return head, _shape(head, label, ndim)[1]


def _gunzip(stream: BinaryIO, label: str, ndim: int | None) -> bytes:
    """The decompressed bytes of a gzip'd IDX file: its header first, then at most what the header promises."""
    head, dims = _read_header(stream, label, ndim)
    size = len(head) + math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise DulError(
            f"{label}: its IDX header promises shape {dims} = {size} bytes, over the limit of"
            f" {MAX_IDX_BYTES}; refusing it (gzip-bomb guard), fetch the file again"
        )
    problem = f"{label} has trailing bytes: it decompresses to more than the {size} bytes its header promises"
    return _read_at_most(stream, head, size, f"{problem} (shape {dims})")


def _read_at_most(stream, head: bytes, size: int, problem: str) -> bytes:
    """``head`` and the rest of ``stream``, read in chunks; a DulError (``problem``) once past ``size`` bytes.

    Reading on to the end of a stream that holds exactly ``size`` bytes
    makes gzip check its CRC and length.
    """
    chunks, count = [head], len(head)
    while chunk := stream.read(min(_CHUNK, size + 1 - count)):
        chunks.append(chunk)
        count += len(chunk)
        if count > size:
            raise DulError(f"{problem}; refusing it (gzip-bomb guard), fetch it again")
    return b"".join(chunks)


def parse(data: bytes, label: str, ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a read-only uint8 array of the header's shape.

    ``ndim`` is the number of dimensions the caller expects (3 for images,
    1 for labels); the header must agree, and the payload must be exactly
    prod(dims) bytes: a truncated file or trailing bytes are errors.
    """
    header, dims = _shape(data, label, ndim)
    expected = header + math.prod(dims)
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise DulError(
            f"{label} {problem}: header says shape {dims} = {expected} bytes, file has {len(data)}; fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_kind(data: bytes, label: str) -> None:
    """The magic number: two zero bytes, then the type, which must be unsigned byte."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DulError(f"{label} is not an IDX file (magic {data[:4].hex() or 'missing'}, expected 000008xx)")
    if data[2] != UBYTE:
        name = TYPE_NAMES.get(data[2], "unknown type")
        raise DulError(f"{label} holds IDX type 0x{data[2]:02x} ({name}); dul reads only unsigned bytes (0x08)")


def _shape(data: bytes, label: str, ndim: int | None = None) -> tuple[int, tuple[int, ...]]:
    """The header's length in bytes and the shape it declares; ``ndim`` (if given) must agree."""
    _check_kind(data, label)
    found_ndim = data[3]
    if ndim is not None and found_ndim != ndim:
        raise DulError(
            f"{label} has magic 0x{int.from_bytes(data[:4], 'big'):08x} ({found_ndim}-D),"
            f" expected 0x{0x800 + ndim:08x} ({ndim}-D); are the image and label files swapped?"
        )
    header = 4 + 4 * found_ndim
    if len(data) < header:
        raise DulError(f"{label} is truncated inside its IDX header ({len(data)} bytes); fetch it again")
    return header, struct.unpack_from(f">{found_ndim}I", data, 4)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a uint8 array; see ``parse``."""
    return parse(read_bytes(path, ndim=ndim), str(path), ndim)


def encode(array: np.ndarray) -> bytes:
    """The raw IDX bytes of a uint8 array (any number of dimensions)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 only, got {array.dtype}")
    header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped by default, atomically.

    ``mtime=0`` in the gzip header keeps the bytes reproducible.
    """
    data = encode(array)
    if gzip:
        data = gzip_module.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
