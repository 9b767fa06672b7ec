"""Text corpora as bag-of-words splits: fetch the archive, tokenise, count, write.

``ingest_text(dataset, out_dir, ...)`` writes, into ``out_dir`` (whole or
not at all), ``train.parquet``, ``validation.parquet`` and ``test.parquet``
in the bag-of-words format of ``components.data.text`` (id, label, title,
indices, counts; the vocabulary in the schema metadata) and ``card.json``
(``"kind": "bow"``). The vocabulary is the ``vocabulary_size`` most frequent
words of the training split only (validation included in "training" for the
count, never test), as Salakhutdinov & Hinton (2009) build their 2000-word
inputs. Validation is a seeded hold-out of the official training split.

Sources: ``source`` is a local archive file, a folder holding it, a mirror
URL (a base under which the archive's file name lives, or the file's full
URL), or empty for the canonical URL. Downloads land in the cache under a
temporary name and enter it only once their sha256 matches the pin.
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

import numpy as np

from components.data import newsgroups, sources, text
from components.errors import DulError
from components.io import atomic_path, write_json


@dataclass(frozen=True)
class Archive:
    filename: str
    url: str
    sha256: str | None


ARCHIVES: dict[str, Archive] = {
    "20newsgroups": Archive("20news-bydate.tar.gz", "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
                            newsgroups.SHA256),
}
TEXT_DATASETS = tuple(ARCHIVES)


def fetch_archive(dataset: str, source: str | os.PathLike | None, cache_dir=None) -> tuple[Path, str, str | None]:
    """Local path of ``dataset``'s archive, the source for the card, and the URL if downloaded."""
    archive = ARCHIVES[dataset]
    if source is None or sources.is_url(str(source)):
        url = archive.url if source is None else str(source)
        if not url.endswith(archive.filename):
            url = url.rstrip("/") + "/" + archive.filename
        folder = Path(cache_dir) if cache_dir is not None else sources.default_cache_dir()
        target = folder / dataset / hashlib.sha256(url.encode()).hexdigest()[:12] / archive.filename
        if not (target.is_file() and _sha256(target) == archive.sha256):
            _download(url, target, archive)
        return target, url, url
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / archive.filename
    if not path.is_file():
        raise DulError(f"{path} not found; put {archive.filename} there and set ingest.source to the file or its folder")
    return path, str(source), None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, archive: Archive) -> None:
    """Download to a temporary name beside ``target``; check the pin; then move into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=sources.DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        actual = _sha256(Path(tmp))
        if archive.sha256 is not None and actual != archive.sha256:
            raise DulError(f"{url}: checksum mismatch: expected sha256 {archive.sha256}, got {actual}; "
                           "the download is damaged or not the real archive")
        os.replace(tmp, target)
    except (OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise DulError(f"could not download {url} ({reason}); put {archive.filename} in a folder "
                       "and set ingest.source to it") from error
    finally:
        Path(tmp).unlink(missing_ok=True)


def ingest_text(dataset: str, out_dir, *, source=None, cache_dir=None, vocabulary_size: int = text.VOCABULARY_SIZE,
                remove: tuple[str, ...] = (), validation_fraction: float = 0.1, seed: int = 0) -> dict:
    """Write ``dataset``'s bag-of-words splits and card to ``out_dir``; return the card."""
    path, source_name, url = fetch_archive(dataset, source, cache_dir)
    corpus = newsgroups.load_20newsgroups(path, remove=tuple(remove), expected_sha256=ARCHIVES[dataset].sha256)
    tokens = {split: [text.tokenize(doc) for doc in corpus[split]["texts"]] for split in ("train", "test")}
    rng = np.random.default_rng(seed)
    train_rows = np.arange(len(tokens["train"]))
    shuffled = rng.permutation(train_rows)
    n_valid = int(round(validation_fraction * len(train_rows)))
    rows = {"train": np.sort(shuffled[n_valid:]), "validation": np.sort(shuffled[:n_valid]),
            "test": np.arange(len(tokens["test"]))}
    if len(rows["train"]) == 0:
        raise DulError(f"ingest.validation_fraction leaves no training documents of {dataset}; lower it")
    vocabulary = text.build_vocabulary([tokens["train"][i] for i in rows["train"]], vocabulary_size)
    parts = {}
    for split, chosen in rows.items():
        origin = corpus["test" if split == "test" else "train"]
        origin_tokens = tokens["test" if split == "test" else "train"]
        counts = text.count_vectors([origin_tokens[i] for i in chosen], vocabulary)
        parts[split] = ([origin["ids"][i] for i in chosen], origin["labels"][chosen], counts,
                        [origin["titles"][i] for i in chosen])
    file_entry = {"name": ARCHIVES[dataset].filename, "sha256": corpus["archive"]["sha256"],
                  "verified": corpus["archive"]["verified"], **({"url": url} if url else {})}
    card = _card(dataset, source_name, parts, corpus["label_names"], vocabulary, file_entry,
                 {"seed": seed, "validation_fraction": validation_fraction, "remove": list(remove)})
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, labels, counts, titles) in parts.items():
            text.write_bow_split(tmp / f"{split}.parquet", ids, labels, counts, titles, vocabulary)
        write_json(tmp / "card.json", card)
    return card


def _card(dataset, source, parts, label_names, vocabulary, file_entry, split_info) -> dict:
    """Deterministic card: no timestamps, no cache paths."""
    splits = {}
    for split, (_, labels, counts, _) in parts.items():
        label_counts = np.bincount(labels, minlength=len(label_names))
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        splits[split] = {"count": int(len(labels)), "label_counts": {str(k): int(c) for k, c in enumerate(label_counts)},
                         "empty_documents": int((lengths == 0).sum()), "mean_words": float(lengths.mean())}
    return {
        "dataset": dataset, "kind": "bow", "source": source, "n_labels": len(label_names), "label_names": label_names,
        "vocabulary_size": len(vocabulary),
        "preprocessing": {"tokens": text.TOKEN_PATTERN, "stop_words": "scikit-learn ENGLISH_STOP_WORDS",
                          "counts": "raw word counts over the vocabulary (not TF-IDF)"},
        "split": {**split_info, "test": "official test split"},
        "splits": splits,
        "files": [file_entry],
    }
