"""The IDX format of MNIST and Fashion-MNIST: a strict reader and a writer.

An IDX file (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a 4-byte
magic number, one big-endian uint32 per dimension, then the payload in
row-major (C) order::

    0x00 0x00 <type> <ndim>   type 0x08 = unsigned byte; ndim 3 for images
    <d_0> ... <d_ndim-1>      (N, H, W) for images, (N,) for labels
    <payload>                 prod(d) bytes for type 0x08

So images have magic 0x00000803 and labels 0x00000801. Files may be gzipped
(as distributed) or raw; the reader tells them apart by the gzip magic
bytes, not by the file name. Every defect is a ``DulError`` naming the file.
"""

from __future__ import annotations

import gzip as gzip_module
import os
import zlib
from pathlib import Path

import numpy as np

from components.errors import DulError
from components.io import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts with the gzip magic bytes 1f 8b."""
    return data[:2] == GZIP_MAGIC


def read_bytes(path: str | os.PathLike, label: str | None = None) -> bytes:
    """Return the IDX bytes of ``path``, gunzipped if the file is gzip.

    ``label`` names the file in error messages (default: the path), e.g. the
    URL a temporary download came from.
    """
    label = label or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DulError(f"cannot read {label}: {error.strerror}") from error
    if not data:
        raise DulError(f"{label} is empty (0 bytes); delete it and fetch the file again")
    if not is_gzip(data):
        return data
    try:
        return gzip_module.decompress(data)
    except (EOFError, gzip_module.BadGzipFile, zlib.error) as error:
        raise DulError(f"{label} is a damaged or truncated gzip file ({error}); fetch it again") from error


def parse(data: bytes, label: str, ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a read-only uint8 array of the header's shape.

    ``ndim`` is the number of dimensions the caller expects (3 for images,
    1 for labels); the header must agree, and the payload must be exactly
    prod(dims) bytes: a truncated file or trailing bytes are errors.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DulError(f"{label} is not an IDX file (magic {data[:4].hex() or 'missing'}, expected 000008xx)")
    kind, found_ndim = data[2], data[3]
    if kind != UBYTE:
        name = TYPE_NAMES.get(kind, "unknown type")
        raise DulError(f"{label} holds IDX type 0x{kind:02x} ({name}); dul reads only unsigned bytes (0x08)")
    if ndim is not None and found_ndim != ndim:
        raise DulError(
            f"{label} has magic 0x{int.from_bytes(data[:4], 'big'):08x} ({found_ndim}-D),"
            f" expected 0x{0x800 + ndim:08x} ({ndim}-D); are the image and label files swapped?"
        )
    header = 4 + 4 * found_ndim
    if len(data) < header:
        raise DulError(f"{label} is truncated inside its IDX header ({len(data)} bytes); fetch it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=found_ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise DulError(
            f"{label} {problem}: header says shape {dims} = {expected} bytes, file has {len(data)}; fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a uint8 array; see ``parse``."""
    return parse(read_bytes(path), str(path), ndim)


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
