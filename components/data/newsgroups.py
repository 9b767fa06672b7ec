"""20 Newsgroups, "bydate" split (Rennie), read straight from its tar.gz.

The archive ``20news-bydate.tar.gz`` (the one scikit-learn's
``fetch_20newsgroups`` downloads) holds one Usenet post per file::

    20news-bydate-train/<newsgroup>/<message number>   11,314 posts
    20news-bydate-test/<newsgroup>/<message number>     7,532 posts

``load_20newsgroups`` reads it in memory through ``components.data.archive``
(nothing is extracted; links, devices, ``..`` paths and archive bombs are
refused) and returns::

    {"train": {"ids", "labels", "texts", "titles", "n_empty"},
     "test":  {...},
     "label_names": [20 newsgroups, sorted],
     "archive": {"name", "sha256", "verified"}}

- ``ids``: ``"<newsgroup>/<number>"``; posts are ordered by newsgroup, then
  message number (numerically), whatever the order inside the archive.
- ``labels``: int64 (N,), the index of the newsgroup in ``label_names``.
- ``texts``: the post decoded as latin-1 (73 posts hold 8-bit bytes; latin-1
  maps every byte, so decoding never fails), after ``remove``.
- ``titles``: the ``Subject:`` header of the unstripped post, else its first
  non-empty line, cut to ``TITLE_MAX_CHARS``.
- ``n_empty``: how many texts are empty or blank after ``remove`` (they are
  kept, so that every post keeps its id; the caller decides).

``remove`` takes any of ``"headers"``, ``"footers"``, ``"quotes"`` with the
meaning of scikit-learn's ``fetch_20newsgroups(remove=...)``, applied in its
order (headers, footers, quotes); the heuristics are re-implemented here
(identical code) rather than imported from scikit-learn's private module.

The layout is checked strictly: a regular file anywhere but
``<split folder>/<newsgroup>/<number>``, a split without posts, or
newsgroups that differ between train and test is a DulError naming the
archive (and the member). The archive's sha256 is pinned (``SHA256``);
pass ``expected_sha256=None`` to read another copy unchecked (the card then
says ``verified: false``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from components.data import archive, sources
from components.errors import DulError, did_you_mean

# sha256 of 20news-bydate.tar.gz (provenance: sources.FILE_PINS)
SHA256 = sources.FILE_PINS["20newsgroups"]["20news-bydate.tar.gz"].sha256
SPLIT_FOLDERS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
REMOVE_CHOICES = ("headers", "footers", "quotes")
TITLE_MAX_CHARS = 200
_NUMBER = re.compile(r"[0-9]+")
# scikit-learn's _QUOTE_RE: lines that quote, or introduce a quote
_QUOTE_RE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def load_20newsgroups(
    archive_path: str | os.PathLike,
    *,
    remove: tuple[str, ...] = (),
    expected_sha256: str | None = SHA256,
    max_member_bytes: int = archive.MAX_MEMBER_BYTES,
) -> dict:
    """Read the train and test posts of ``20news-bydate.tar.gz`` (see the module docstring)."""
    remove = _check_remove(remove)
    sha256 = archive.verify_sha256(archive_path, expected_sha256)
    folders = {folder: split for split, folder in SPLIT_FOLDERS.items()}
    posts: dict[str, list[tuple[str, str, str]]] = {split: [] for split in SPLIT_FOLDERS}
    for name, data in archive.iter_members(archive_path, max_member_bytes=max_member_bytes):
        split, group, number = _parse_name(name, folders, archive_path)
        posts[split].append((group, number, data.decode("latin-1")))
    label_names = _label_names(posts, archive_path)
    result: dict = {split: _split(split_posts, label_names, remove) for split, split_posts in posts.items()}
    result["label_names"] = label_names
    result["archive"] = {"name": Path(archive_path).name, "sha256": sha256, "verified": expected_sha256 is not None}
    return result


def _check_remove(remove) -> tuple[str, ...]:
    items = (remove,) if isinstance(remove, str) else tuple(remove)
    for item in items:
        if item not in REMOVE_CHOICES:
            raise DulError(f"cannot remove {item!r} from the posts; {did_you_mean(item, REMOVE_CHOICES)}")
    return items


def _parse_name(name: str, folders: dict[str, str], archive_path) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in folders or not _NUMBER.fullmatch(parts[2]):
        raise DulError(
            f"{archive_path}: unexpected member {name}; a 20news-bydate archive holds only"
            f" {' and '.join(SPLIT_FOLDERS.values())} folders of <newsgroup>/<number> files"
        )
    return folders[parts[0]], parts[1], parts[2]


def _label_names(posts: dict[str, list[tuple[str, str, str]]], archive_path) -> list[str]:
    groups = {split: {group for group, _, _ in split_posts} for split, split_posts in posts.items()}
    for split, found in groups.items():
        if not found:
            raise DulError(f"{archive_path} holds no posts under {SPLIT_FOLDERS[split]}/; is it 20news-bydate?")
    if groups["train"] != groups["test"]:
        only = sorted(groups["train"] ^ groups["test"])
        raise DulError(f"{archive_path}: newsgroups {', '.join(only)} are in one split only; fetch the archive again")
    return sorted(groups["train"])


def _split(posts: list[tuple[str, str, str]], label_names: list[str], remove: tuple[str, ...]) -> dict:
    posts = sorted(posts, key=lambda post: (post[0], int(post[1]), post[1]))
    label_of = {group: label for label, group in enumerate(label_names)}
    texts = [strip(text, remove) for _, _, text in posts]
    return {
        "ids": [f"{group}/{number}" for group, number, _ in posts],
        "labels": np.array([label_of[group] for group, _, _ in posts], dtype=np.int64),
        "texts": texts,
        "titles": [title(text) for _, _, text in posts],
        "n_empty": sum(1 for text in texts if not text.strip()),
    }


def title(text: str) -> str:
    """The post's ``Subject:`` header, else its first non-empty line (at most TITLE_MAX_CHARS)."""
    header = text.partition("\n\n")[0]
    for line in header.split("\n"):
        if line[:8].lower() == "subject:" and line[8:].strip():
            return line[8:].strip()[:TITLE_MAX_CHARS]
    return next((line.strip() for line in text.split("\n") if line.strip()), "")[:TITLE_MAX_CHARS]


def strip(text: str, remove: tuple[str, ...]) -> str:
    """Apply the ``remove`` heuristics in scikit-learn's order: headers, footers, quotes."""
    if "headers" in remove:
        text = strip_header(text)
    if "footers" in remove:
        text = strip_footer(text)
    if "quotes" in remove:
        text = strip_quoting(text)
    return text


def strip_header(text: str) -> str:
    """Everything after the first blank line (the headers end there)."""
    return text.partition("\n\n")[2]


def strip_footer(text: str) -> str:
    """Cut from the last blank or all-hyphen line on: a rough signature remover."""
    lines = text.strip().split("\n")
    for line_num in range(len(lines) - 1, -1, -1):
        if lines[line_num].strip().strip("-") == "":
            break
    return "\n".join(lines[:line_num]) if line_num > 0 else text


def strip_quoting(text: str) -> str:
    """Drop lines that quote (``>``, ``|``) or introduce a quote (``... writes:``)."""
    return "\n".join(line for line in text.split("\n") if not _QUOTE_RE.search(line))
