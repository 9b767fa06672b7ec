"""Inputs every node of a cluster can read.

On one node the Ray Train workers read the driver's files. On a cluster they
cannot (another machine has no ``data/prepared``), so the driver copies a
run's inputs once into the run's storage folder, which every node sees
(``DUL_RAY_STORAGE``: S3, GCS, NFS), and hands the workers those locations;
each node then fetches them once into a local cache and the workers read
that. A relaunch finds its inputs already uploaded (a marker written last),
so a cut-off upload is redone, never half-used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import ray

INPUTS = ("data_dir", "stack_path")  # the config keys that are paths on the driver's machine
COMPLETE = ".complete"


def share_inputs(config: dict, name: str, storage: str) -> dict:
    """On a cluster of several nodes, or with storage other than a local folder
    (``DUL_RAY_STORAGE=s3://...``), or with ``DUL_SHARE_INPUTS=1``: copy the
    run's inputs into ``<storage>/<run>/inputs/<key>`` once and hand the workers
    those locations instead of the driver's paths (``config["inputs"]``). On
    one node with local storage, ``config`` as it is."""
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    if alive <= 1 and "://" not in storage and os.environ.get("DUL_SHARE_INPUTS", "") in ("", "0"):
        return config
    shared = {key: _upload(Path(config[key]), f"{storage}/{name}/inputs/{key}") for key in INPUTS if key in config}
    return {**{k: v for k, v in config.items() if k not in shared}, "inputs": shared}


def localize(config: dict) -> dict:
    """In a worker: ``config`` with each shared input fetched into this node's cache
    (once per node and run: workers on a node take turns through a rename) and
    its local path in place of the storage location."""
    for key, location in (config.pop("inputs", None) or {}).items():
        config[key] = str(_fetch(location))
    return config


def _filesystem(location: str):
    import pyarrow.fs as pafs

    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), location


def _upload(local: Path, location: str) -> str:
    """``local`` (a file or a folder) copied to ``location`` unless it is there whole
    already (a relaunch); the location of the copy of ``local`` itself."""
    import pyarrow.fs as pafs

    fs, base = _filesystem(location)
    marker = f"{base}/{COMPLETE}"
    if fs.get_file_info(marker).type == pafs.FileType.NotFound:
        fs.create_dir(base, recursive=True)
        destination = f"{base}/{local.name}"
        if local.is_dir():
            fs.create_dir(destination, recursive=True)
        pafs.copy_files(str(local.resolve()), destination, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)
        with fs.open_output_stream(marker) as out:  # written last: a cut-off upload is redone
            out.write(b"complete\n")
    return f"{location}/{local.name}"


def _fetch(location: str) -> Path:
    import pyarrow.fs as pafs

    cache = Path(tempfile.gettempdir()) / "dul-inputs" / hashlib.sha256(location.encode()).hexdigest()[:16]
    name = location.rstrip("/").rsplit("/", 1)[-1]
    if not (cache / COMPLETE).exists():
        fs, path = _filesystem(location)
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache.parent))
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            (staging / name).mkdir()
        pafs.copy_files(path, str(staging / name), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        (staging / COMPLETE).write_text("complete\n")
        with contextlib.suppress(OSError):  # another worker of this node was first: keep its copy
            os.replace(staging, cache)
        shutil.rmtree(staging, ignore_errors=True)
    return cache / name
