"""Where the datasets come from: registry, pinned checksums, fetching.

``DATASETS`` names what ``ingest`` accepts. ``digits`` ships inside
scikit-learn; ``mnist`` and ``fashion-mnist`` are the four standard IDX files
(``FILES``), found through ``ingest.source``, which is one of

- empty (``None``): download from the canonical URL into the cache folder
  (``cache_dir``, else ``$DUL_CACHE``, else ``~/.cache/dul``);
- a local folder holding the four files, each as ``name.gz`` or ``name``;
- a mirror base URL (``http://``, ``https://`` or ``file://``) under which
  the four ``name.gz`` files live; downloaded into the cache like the above.

Every file is checked against ``CHECKSUMS``: the sha256 of its *decompressed*
IDX bytes, which does not change when a file is re-gzipped (Debian ships
Fashion-MNIST recompressed: other .gz hashes, same contents). Where the hash
of the canonical .gz is also known it is pinned as ``sha256_gz``, and a
gzip file matching it passes too. A pin covers the exact bytes, the order
of the images included: a reordered copy of the real data is refused, and
the message says so (``CANONICAL_SHAPES`` tells such a copy from another
file). Tests swap in their own table with
``monkeypatch.setitem(CHECKSUMS, ...)``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from components.data import idx
from components.errors import DulError, did_you_mean
from components.io import file_sha256

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist")

# Names of the class labels 0..n-1, shown in search results and figures.
LABEL_NAMES: dict[str, list[str]] = {
    "digits": [str(d) for d in range(10)],
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],  # Xiao et al. 2017
}

# file name (without .gz) -> number of IDX dimensions: (N, H, W) or (N,)
FILES: dict[str, int] = {
    "train-images-idx3-ubyte": 3,
    "train-labels-idx1-ubyte": 1,
    "t10k-images-idx3-ubyte": 3,
    "t10k-labels-idx1-ubyte": 1,
}

# yann.lecun.com/exdb/mnist is flaky (often refuses downloads); PyTorch's S3
# copy serves the identical .gz files (same sha256_gz below).
CANONICAL_URLS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# file name -> shape of the canonical file's IDX array, the same for mnist and fashion-mnist
# (their raw sizes, 47,040,016 / 60,008 / 7,840,016 / 10,008 bytes, are 16 + 60000*28*28 and so on)
CANONICAL_SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (60_000, 28, 28),
    "train-labels-idx1-ubyte": (60_000,),
    "t10k-images-idx3-ubyte": (10_000, 28, 28),
    "t10k-labels-idx1-ubyte": (10_000,),
}

DOWNLOAD_TIMEOUT_S = 60
OFFLINE_FIX = "put the four files in a folder and set ingest.source to it"


@dataclass(frozen=True)
class Pin:
    """Known sha256 hashes of one source file; ``None`` where none is known."""

    sha256: str | None  # of the decompressed IDX bytes
    sha256_gz: str | None = None  # of the .gz exactly as served at the canonical URL


# Provenance of every pinned hash:
#
# mnist sha256_gz: the sha256 of the four .gz files as published by torchvision
#   (pytorch/vision, torchvision/prototype/datasets/_builtin/mnist.py, commit
#   01c11a0564b8417561ae4c414fe659fc97476987, `MNIST._CHECKSUMS`) and by
#   TensorFlow Datasets; the same values appear in many independent download
#   scripts (sizes 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes).
# mnist sha256 (decompressed): not published by LeCun et al. or a framework;
#   taken from third-party scripts that download the canonical .gz, check the
#   gz hash above, gunzip and check these (found in more than eight unrelated
#   public repositories, all agreeing; raw sizes 47,040,016 / 60,008 /
#   7,840,016 / 10,008 bytes). Not recomputed here: this machine is offline.
#   Should one be wrong, a canonical .gz still passes on sha256_gz.
# fashion-mnist sha256 (decompressed): computed here (November 2026) from
#   Debian's package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/
#   *.gz) with `zcat FILE | sha256sum`; the same four values are pinned for Zalando's S3
#   files by a public Makefile that downloads from the canonical URL and
#   checks the decompressed bytes, so Debian's recompressed files and
#   Zalando's originals hold identical contents.
# fashion-mnist sha256_gz: Zalando's original .gz files, as published by
#   torchvision (same file and commit as above, `FashionMNIST._CHECKSUMS`).
#   Debian's .gz files hash differently (recompressed) and pass on sha256.
# digits: no files; the pins are the sha256 of scikit-learn's bundled values
#   (load_digits().images as uint8 0..16, .target as uint8), each encoded as
#   IDX by idx.encode; computed here with scikit-learn 1.9.1.
CHECKSUMS: dict[str, dict[str, Pin]] = {
    "digits": {
        "load_digits-images": Pin("359cd13f0f514122884198b78a131df597421cbf5e93a76678fa96fc548f0d96"),
        "load_digits-labels": Pin("ce71631c1f31ce56fa54f31d1d498fafacff59b001e6c30c4a5e29508aa277ad"),
    },
    "mnist": {
        "train-images-idx3-ubyte": Pin(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte": Pin(
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte": Pin(
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte": Pin(
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": Pin(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train-labels-idx1-ubyte": Pin(
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "t10k-images-idx3-ubyte": Pin(
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "t10k-labels-idx1-ubyte": Pin(
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
}


@dataclass(frozen=True)
class FilePin:
    """One source file of a corpus read whole (an archive, a token file): its canonical URL and hashes."""

    url: str
    sha256: str | None  # of the file exactly as served; None where no hash is known for certain
    md5: str | None = None  # as published; checked only where no sha256 is known

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None or self.md5 is not None


# The files of the datasets read whole (components.data.fetch; ingest.DATASETS).
# 20newsgroups sha256: as in ../shared/data/20news-bydate/README.md.
# cifar sha256: published by TensorFlow Datasets' checksums and pinned alike by
#   many unrelated public projects (Julia MLDatasets, Go and Ruby loaders); md5:
#   the authors' page https://www.cs.toronto.edu/~kriz/cifar.html. Not
#   recomputed here: this machine is offline.
# reuters21578 md5: as pinned by public loaders of this exact URL's archive
#   (e.g. anacrolix/various algorithms/benchmark/reuters.py); no sha256 is
#   published, and this machine is offline, so the md5 is what is checked.
# rcv1-v2.topics.qrels.gz sha256: as scikit-learn pins it for its mirror of
#   this file (sklearn/datasets/_rcv1.py, TOPICS_METADATA).
# lyrl2004_tokens_*: no hash is published anywhere we could find (scikit-learn
#   pins the vector files, not the token files), so they are fetched whole and
#   marked ``verified: false`` in the dataset card; pin them once computed
#   from a download checked against a second source.
_LYRL2004 = "http://www.ai.mit.edu/projects/jmlr/papers/volume5/lewis04a/"
_RCV1_TOKENS = ("lyrl2004_tokens_train.dat.gz", *(f"lyrl2004_tokens_test_pt{i}.dat.gz" for i in range(4)))
FILE_PINS: dict[str, dict[str, FilePin]] = {
    "20newsgroups": {"20news-bydate.tar.gz": FilePin(
        "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
        "866933853cf9a04c7e0377f8de370e28eee1653ece21f84604305b9c4773d36b")},
    "cifar10": {"cifar-10-binary.tar.gz": FilePin(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", "c32a1d4ab5d03f1284b67883e8d87530")},
    "cifar100": {"cifar-100-binary.tar.gz": FilePin(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", "03b5dce01913d631647c71ecec9e9cb8")},
    "reuters21578": {"reuters21578.tar.gz": FilePin(
        "http://kdd.ics.uci.edu/databases/reuters21578/reuters21578.tar.gz", None,
        "a22faadd7dde0dfdd784e60087209aa6")},
    "rcv1-v2": {
        **{name: FilePin(f"{_LYRL2004}a12-token-files/{name}", None) for name in _RCV1_TOKENS},
        "rcv1-v2.topics.qrels.gz": FilePin(f"{_LYRL2004}a08-topic-qrels/rcv1-v2.topics.qrels.gz",
                                           "2a98e5e5d8b770bded93afc8930d88299474317fe14181aee1466cc754d0d1c1"),
    },
}


@dataclass
class Fetched:
    """The four files of a dataset on local disk, and where they came from."""

    source: str  # for the card: ingest.source as given, or the canonical base URL
    paths: dict[str, Path]  # file name (no .gz) -> local path
    urls: dict[str, str] = field(default_factory=dict)  # file name -> URL, when downloaded


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` if known, else raise a DulError with a suggestion."""
    if dataset in DATASETS:
        return dataset
    raise DulError(f"unknown dataset '{dataset}' (ingest.dataset); {did_you_mean(dataset, DATASETS, cutoff=0.5)}")


def default_cache_dir() -> Path:
    """``$DUL_CACHE`` if set, else ``~/.cache/dul``."""
    return Path(os.environ.get("DUL_CACHE") or Path.home() / ".cache" / "dul")


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://", "file://"))


def fetch(dataset: str, source: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> Fetched:
    """Locate (downloading if needed) the four IDX files of ``dataset``.

    Downloads are verified before they enter the cache, and a cached file
    that no longer passes is fetched again. The caller still checks every
    returned file (``verify``): a local folder's files have only their IDX
    headers checked here, their bytes there.
    """
    if source is None or is_url(str(source)):
        base = str(source) if source is not None else CANONICAL_URLS[dataset]
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _fetch_url(dataset, base, folder)
    return Fetched(str(source), _local_files(Path(source).expanduser()))


def _local_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise DulError(f"ingest.source {folder} {what}; set it to a folder holding the four IDX files, or to a URL")
    paths = {}
    for name in FILES:
        found = [p for p in (folder / f"{name}.gz", folder / name) if p.is_file()]
        if not found:
            raise DulError(f"{folder / name}.gz (or {name}) not found in ingest.source; put all four IDX files there")
        paths[name] = found[0]
        idx.read_shape(found[0], FILES[name])  # a wrong or swapped file is named before any is read whole
    return paths


def _fetch_url(dataset: str, base: str, cache_dir: Path) -> Fetched:
    base = base.rstrip("/") + "/"
    # one cache folder per base URL, so files of unverified mirrors never mix
    folder = cache_dir / dataset / hashlib.sha256(base.encode()).hexdigest()[:12]
    fetched = Fetched(base, {})
    for name in FILES:
        url = base + name + ".gz"
        target = folder / f"{name}.gz"
        if not _cached_ok(target, dataset, name):
            _download(url, target, dataset, name)
        fetched.paths[name], fetched.urls[name] = target, url
    return fetched


def _cached_ok(path: Path, dataset: str, name: str) -> bool:
    """Whether ``path`` holds a good copy; a damaged one is deleted to be fetched again."""
    if not path.is_file():
        return False
    try:
        _check(path, dataset, name, str(path))
    except DulError:
        path.unlink()
        return False
    return True


def _check(path: str | os.PathLike, dataset: str, name: str, label: str) -> None:
    raw = idx.read_bytes(path, label=label, ndim=FILES[name])
    idx.parse(raw, label, FILES[name])
    verify(dataset, name, path, raw, label=label)


def _download(url: str, target: Path, dataset: str, name: str) -> None:
    """Download ``url`` to ``target`` via a temporary name; verify, then move."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        _check(tmp, dataset, name, url)
        os.replace(tmp, target)
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", None) or error
        raise DulError(f"could not download {url} ({reason}); {OFFLINE_FIX}") from error
    finally:
        Path(tmp).unlink(missing_ok=True)


def verify(dataset: str, name: str, path: str | os.PathLike | None, raw: bytes, label: str | None = None) -> dict:
    """Check one file against its pin; return its card entry.

    ``raw`` is the decompressed IDX bytes of ``path``. Returns ``{name,
    sha256 (of raw), verified}``; ``verified`` is False only where nothing is
    pinned for the file. A mismatch is a DulError naming both hashes.
    """
    pin = CHECKSUMS.get(dataset, {}).get(name, Pin(None))
    actual = hashlib.sha256(raw).hexdigest()
    entry = {"name": name, "sha256": actual, "verified": False}
    if pin.sha256 is None and pin.sha256_gz is None:
        return entry
    if actual == pin.sha256 or _gz_matches(path, pin.sha256_gz):
        return entry | {"verified": True}
    expected = pin.sha256 or f"{pin.sha256_gz} (of the .gz)"
    mismatch = f"{label or path}: checksum mismatch for {dataset} {name}: expected sha256 {expected}, got {actual}"
    raise DulError(f"{mismatch} (decompressed); {_why(dataset, name, raw)}")


def _why(dataset: str, name: str, raw: bytes) -> str:
    """What a checksum mismatch means for these IDX bytes, and the fix.

    A copy holding the canonical shape is most likely the real data
    reordered or re-encoded: say that the pin covers the order too.
    """
    try:
        shape = idx.parse(raw, name, FILES.get(name)).shape
    except DulError:
        shape = None
    canonical = CANONICAL_SHAPES.get(name) if dataset in CANONICAL_URLS else None
    if shape is None or canonical is None:
        return "the file is damaged or not the real one, fetch it again"
    fix = f"use the canonical files (leave ingest.source empty to download them from {CANONICAL_URLS[dataset]})"
    if shape != canonical:
        return f"it holds shape {shape}, the canonical file {canonical}; {fix}"
    items = "images" if "images" in name else "labels"
    return (f"it is a valid IDX file of the canonical shape {shape}, but the pin covers its exact bytes,"
            f" the order of the {items} included, so a reordered or re-encoded copy is refused too; {fix}")


def _gz_matches(path: str | os.PathLike, sha256_gz: str | None) -> bool:
    if sha256_gz is None:
        return False
    with open(path, "rb") as f:
        if not idx.is_gzip(f.read(2)):
            return False
    return file_sha256(path) == sha256_gz
