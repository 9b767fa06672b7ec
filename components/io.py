"""Atomic outputs: a file or folder appears whole or not at all.

Everything a stage writes goes to a temporary name in the same folder and is
moved into place with ``os.replace`` once complete, so a killed stage never
leaves a half-written artifact that looks valid.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from components.errors import DulError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    The caller writes a file (or fills a folder, with ``is_dir=True``) at the
    yielded path. On an exception the temporary is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        if is_dir:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        if is_dir and path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Yield a temporary path beside each of ``paths``; move them all into place
    only once the block has completed, so outputs that belong together come
    from the same run.

    The caller writes a file or fills a folder at each yielded path. On an
    exception no target is touched and the temporaries are removed; running
    out of disk space (ENOSPC, EDQUOT) is a DulError that says so. The moves
    are renames within each target's folder: old targets are set aside first
    and put back should a later move fail.
    """
    targets = [Path(path) for path in paths]
    folders = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.append(Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)))
        temporaries = tuple(folder / target.name for folder, target in zip(folders, targets))
        yield temporaries
        _move_all(targets, temporaries)
    except Exception as err:  # an OSError, or an error raised while handling one (torch, zipfile)
        if _no_space(err):
            raise DulError(f"{os.strerror(_no_space(err)).lower()} while writing {', '.join(map(str, targets))}; "
                           "nothing was replaced: free some space and rerun") from None
        raise
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _move_all(targets: list[Path], temporaries: tuple[Path, ...]) -> None:
    """Rename each temporary onto its target, old targets set aside beside it; undo all on failure."""
    missing = [str(target) for target, new in zip(targets, temporaries) if not os.path.lexists(new)]
    if missing:
        raise ValueError(f"nothing was written for {', '.join(missing)}")
    done: list[tuple[Path, Path, bool]] = []  # target, its temporary, whether an old one was set aside
    try:
        for target, new in zip(targets, temporaries):
            had_old = os.path.lexists(target)
            if had_old:
                os.replace(target, new.with_name(".old"))
            done.append((target, new, had_old))
            os.replace(new, target)
    except BaseException:
        for target, new, had_old in reversed(done):
            if os.path.lexists(target) and not os.path.lexists(new):
                os.replace(target, new)
            if had_old:
                os.replace(new.with_name(".old"), target)
        raise


def _no_space(err: BaseException | None) -> int:
    """ENOSPC or EDQUOT if ``err`` or an exception it came from is one, else 0."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err.errno
        err = err.__cause__ or err.__context__
    return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (a Markdown report), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write a list of same-keyed dicts as CSV (DVC plots read it), atomically."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    columns = list(rows[0])
    lines = [",".join(columns)]
    lines += [",".join(_csv_cell(row[c]) for c in columns) for row in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _csv_cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes: the hash DVC records for a file in dvc.lock."""
    return _file_digest(path, "md5")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (pinned download checksums use it)."""
    return _file_digest(path, "sha256")


def _file_digest(path: str | os.PathLike, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def save_torch(path: str | os.PathLike, obj) -> None:
    """``torch.save`` atomically; keep ``obj`` to tensors and plain data so that
    ``torch.load(path, weights_only=True)`` can read it (no unpickling of code)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def content_key(*parts) -> str:
    """A short stable hash of JSON-able parts: names a unit of work by its inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Read a CSV written by ``write_csv``; numbers come back as floats or ints."""
    lines = Path(path).read_text().splitlines()
    columns = lines[0].split(",")
    return [{c: _number(v) for c, v in zip(columns, line.split(","))} for line in lines[1:] if line]


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
