"""The files of a dataset read whole (an archive, a token file): local, mirror or canonical URL.

``fetch_files(dataset, source, cache_dir)`` locates the files named in
``sources.FILE_PINS[dataset]``. ``source`` is one of

- empty (``None``): download each file from its canonical URL (``FilePin.url``);
- a mirror URL (``http://``, ``https://``, ``file://``): a base under which
  the files' names live, or, for a dataset of one file, that file's full URL;
- a local file (a dataset of one file, under any name) or a folder holding
  the files (each by its name, or by its name without ``.gz``).

Downloads land in the cache folder (``cache_dir``, else ``$DUL_CACHE``, else
``~/.cache/dul``; one sub-folder per set of URLs) under a temporary name and
enter it only once their sha256 matches the pin (their md5, for a file whose
authors publish only that). A file with no pin enters
whole but unverified, and is then reused as it is; a pinned cached file that
no longer matches is downloaded again. Every file, local or downloaded, is
checked against its pin: a mismatch is a DulError naming the file and both
hashes. Each file's card entry is ``{name, sha256, verified[, url]}``, where
``verified`` is false only where nothing is pinned.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from components.data import sources
from components.errors import DulError
from components.io import file_md5, file_sha256


@dataclass
class Fetched:
    """A dataset's files on local disk and where they came from."""

    source: str  # for the card: ingest.source as given, or the canonical URL (base)
    paths: dict[str, Path]  # file name as pinned -> local path
    files: list[dict]  # card entries, in FILE_PINS order


def fetch_files(dataset: str, source: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> Fetched:
    """Locate (downloading if needed) and verify every file of ``sources.FILE_PINS[dataset]``."""
    pins = sources.FILE_PINS[dataset]
    if source is None or sources.is_url(str(source)):
        urls = _urls(pins, None if source is None else str(source))
        key = hashlib.sha256("\n".join(urls.values()).encode()).hexdigest()[:12]
        folder = (Path(cache_dir) if cache_dir is not None else sources.default_cache_dir()) / dataset / key
        files, paths = [], {}
        for name, url in urls.items():
            paths[name] = folder / name
            sha256 = _from_cache(url, paths[name], pins[name])
            files.append({"name": name, "sha256": sha256, "verified": pins[name].pinned, "url": url})
        return Fetched(str(source) if source is not None else _base(list(urls.values())), paths, files)
    paths = _local_paths(Path(source).expanduser(), list(pins))
    files = [verify_file(name, path, pins[name]) for name, path in paths.items()]
    return Fetched(str(source), paths, files)


def verify_file(name: str, path: Path, pin: sources.FilePin | None, label: str | None = None) -> dict:
    """The card entry of one file; a DulError if it does not match ``pin`` (its
    sha256, or its md5 where only that is pinned)."""
    actual = file_sha256(path)
    mismatch = _mismatch(path, actual, pin)
    if mismatch:
        raise DulError(f"{label or path}: checksum mismatch: {mismatch};"
                       " the file is damaged or not the real one, fetch it again")
    return {"name": name, "sha256": actual, "verified": pin is not None and pin.pinned}


def _mismatch(path: Path, sha256: str, pin: sources.FilePin | None) -> str | None:
    """What differs from the pin ("expected ..., got ..."), or None when it matches or nothing is pinned."""
    if pin is None or not pin.pinned:
        return None
    if pin.sha256 is not None:
        return None if sha256 == pin.sha256 else f"expected sha256 {pin.sha256}, got {sha256}"
    md5 = file_md5(path)
    return None if md5 == pin.md5 else f"expected md5 {pin.md5}, got {md5}"


def _urls(pins: dict[str, sources.FilePin], mirror: str | None) -> dict[str, str]:
    if mirror is None:
        return {name: pin.url for name, pin in pins.items()}
    if len(pins) == 1 and mirror.endswith(next(iter(pins))):
        return {next(iter(pins)): mirror}
    return {name: mirror.rstrip("/") + "/" + name for name in pins}


def _base(urls: list[str]) -> str:
    """The one URL, or the longest folder URL the URLs share."""
    if len(urls) == 1:
        return urls[0]
    return os.path.commonprefix(urls).rsplit("/", 1)[0] + "/"


def _local_paths(path: Path, names: list[str]) -> dict[str, Path]:
    where = "the file or its folder" if len(names) == 1 else f"the folder holding {', '.join(names)}"
    if path.is_file() and len(names) == 1:
        return {names[0]: path}
    if path.is_file():
        raise DulError(f"ingest.source {path} is a file; set it to {where}")
    if not path.is_dir():
        raise DulError(f"{path} not found; put {names[0]} there and set ingest.source to {where}")
    paths = {}
    for name in names:
        found = [p for p in (path / name, path / name.removesuffix(".gz")) if p.is_file()]
        if not found:
            raise DulError(f"{path / name} not found; put {name} there and set ingest.source to {where}")
        paths[name] = found[0]
    return paths


def _from_cache(url: str, target: Path, pin: sources.FilePin) -> str:
    """The sha256 of the cached copy of ``url`` at ``target``, downloading it first if missing or damaged."""
    if target.is_file():
        actual = file_sha256(target)
        if _mismatch(target, actual, pin) is None:
            return actual
        target.unlink()  # damaged: fetch it again
    return _download(url, target, pin)


def _download(url: str, target: Path, pin: sources.FilePin) -> str:
    """Download to a temporary name beside ``target``; check the pin; then move into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=sources.DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        actual = verify_file(target.name, Path(tmp), pin, label=url)["sha256"]
        os.replace(tmp, target)
        return actual
    except (OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise DulError(f"could not download {url} ({reason}); put {target.name} in a folder "
                       "and set ingest.source to it") from error
    finally:
        Path(tmp).unlink(missing_ok=True)
