"""Reuters-21578 and RCV1-v2 as bag-of-words splits, written by ``bow_stream``.

``ingest_reuters`` / ``ingest_rcv1`` write, into ``out_dir`` (whole or not
at all), ``train.parquet``, ``validation.parquet``, ``test.parquet`` and
``card.json`` in the layout of ``components.data.corpora`` (``"kind":
"bow"``), through ``bow_stream.write_bow_stream``: the vocabulary is the
``vocabulary_size`` most frequent words of the train split (validation
excluded), then each split is written a row group at a time. A multi-label
split (Reuters ``topics: all``, RCV1) has a ``labels`` list<int32> column
(sorted label indices) and ``label`` = the first of them; the card says
``"multi_label": true`` and its ``label_counts`` count documents per label.

- ``reuters21578`` (``components.data.reuters``): the ModApte split of
  ``topics`` ``all`` / ``R52`` / ``R8``; texts tokenised by ``text.tokenize``.
  The corpus is small (21,578 documents) and is loaded whole.
- ``rcv1-v2`` (``components.data.rcv1``): the LYRL2004 token files (already
  stemmed; used as given) and split ``rcv1_split`` ``lyrl2004`` / ``random``.
  Streamed: memory is the qrels, one row group and the word counter, never
  the documents.

Validation is a seeded hold-out of the training split: round(fraction * n)
of the training documents, taken by a seeded permutation of them in doc-id
order (Reuters: ``default_rng(seed)``, as 20newsgroups; RCV1:
``default_rng([seed, 1])``, a stream apart from the one that draws the
``random`` halves). RCV1's training ids come from the qrels (``random``) or
one extra pass over the training token file (``lyrl2004``, 23,149 ids).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from components.data import bow_stream, fetch, rcv1, reuters, sources, text
from components.errors import DulError, did_you_mean
from components.io import atomic_path, write_json

SPLITS = ("train", "validation", "test")
BATCH = 10_000
TOKENISED = {"tokens": text.TOKEN_PATTERN, "stop_words": "scikit-learn ENGLISH_STOP_WORDS"}
COUNTS = "raw word counts over the vocabulary (not TF-IDF)"


def ingest_reuters(out_dir, *, source=None, cache_dir=None, vocabulary_size: int = text.VOCABULARY_SIZE,
                   validation_fraction: float = 0.1, seed: int = 0, topics: str = "all") -> dict:
    """Write Reuters-21578's ModApte bag-of-words splits of ``topics`` and the card; return the card."""
    if topics not in reuters.SUBSETS:
        raise DulError(f"ingest.topics is {topics!r}; {did_you_mean(topics, reuters.SUBSETS)}")
    path, source_name, files = _reuters_source(source, cache_dir)
    corpus = reuters.load_reuters(path, topics=topics, expected_documents=reuters.EXPECTED_DOCUMENTS)
    multi_label = topics == "all"
    train = corpus["train"]
    in_validation = holdout_mask(len(train["ids"]), validation_fraction, np.random.default_rng(seed), "reuters21578")
    parts = {"train": _subset(train, ~in_validation, multi_label),
             "validation": _subset(train, in_validation, multi_label),
             "test": _subset(corpus["test"], np.ones(len(corpus["test"]["ids"]), bool), multi_label)}
    records = bow_stream.in_memory_records(parts, text.tokenize)
    split_info = {"seed": seed, "validation_fraction": validation_fraction, "topics": topics,
                  "test": "ModApte test split"}
    return write_corpus(out_dir, records, dataset="reuters21578", source=source_name, files=files,
                        label_names=corpus["label_names"], multi_label=multi_label, vocabulary_size=vocabulary_size,
                        preprocessing=TOKENISED, split_info=split_info)


def _reuters_source(source, cache_dir) -> tuple[Path, str, list[dict]]:
    """The archive (fetched and verified) or a local folder of ``reut2-NNN.sgm`` files (unverified)."""
    [archive] = sources.FILE_PINS["reuters21578"]
    folder = None if source is None or sources.is_url(str(source)) else Path(source).expanduser()
    if folder is not None and folder.is_dir() and not (folder / archive).is_file():
        sgm = sorted(p for p in folder.iterdir() if p.name.startswith("reut2-") and p.suffix == ".sgm")
        return folder, str(source), [fetch.verify_file(p.name, p, None) for p in sgm]
    fetched = fetch.fetch_files("reuters21578", source, cache_dir)
    return fetched.paths[archive], fetched.source, fetched.files


def _subset(split: dict, keep: np.ndarray, multi_label: bool) -> dict:
    rows = np.flatnonzero(keep)
    labels = [split["labels"][i] if multi_label else split["labels"][i][0] for i in rows]
    return {key: [split[key][i] for i in rows] for key in ("ids", "titles", "texts")} | {"labels": labels}


def ingest_rcv1(out_dir, *, source=None, cache_dir=None, vocabulary_size: int = text.VOCABULARY_SIZE,
                validation_fraction: float = 0.1, seed: int = 0, scheme: str = "lyrl2004") -> dict:
    """Write RCV1-v2's bag-of-words splits (streamed) and the card; return the card."""
    if scheme not in rcv1.SCHEMES:
        raise DulError(f"ingest.rcv1_split is {scheme!r}; {did_you_mean(scheme, rcv1.SCHEMES)}")
    fetched = fetch.fetch_files("rcv1-v2", source, cache_dir)
    qrels = rcv1.read_qrels(fetched.paths[rcv1.QRELS_FILE], expected_topics=rcv1.N_TOPICS)
    folder = fetched.paths[rcv1.TRAIN_FILES[0]].parent
    in_validation = _rcv1_validation(folder, qrels, scheme, seed, validation_fraction)

    def records(wanted: set[str]):
        base = {"train"} if wanted <= {"train", "validation"} else {"train", "test"}
        for split, record in rcv1.iter_rcv1(folder, scheme=scheme, seed=seed, splits=base, qrels=qrels):
            if split == "train" and in_validation[qrels.row(int(record[0]))]:
                split = "validation"
            if split in wanted:
                yield split, record

    test = "the four LYRL2004 test files" if scheme == "lyrl2004" else "the other random half (seed)"
    split_info = {"seed": seed, "validation_fraction": validation_fraction, "rcv1_split": scheme, "test": test}
    preprocessing = {"tokens": "LYRL2004 token files as given: lowercased, stop-worded, Porter-stemmed"}
    return write_corpus(out_dir, records, dataset="rcv1-v2", source=fetched.source, files=fetched.files,
                        label_names=qrels.topic_names, multi_label=True, vocabulary_size=vocabulary_size,
                        preprocessing=preprocessing, split_info=split_info)


def _rcv1_validation(folder: Path, qrels: rcv1.Qrels, scheme: str, seed: int, fraction: float) -> np.ndarray:
    """bool over the qrels' documents: the training documents held out for validation."""
    if scheme == "random":
        train_rows = np.flatnonzero(rcv1._random_train(qrels, seed))
    else:
        path = rcv1._token_path(folder, rcv1.TRAIN_FILES[0])
        train_rows = np.sort([qrels.row(int(docid)) for docid, _ in rcv1.iter_token_file(path)]).astype(np.int64)
        if train_rows.size and train_rows[0] < 0:
            raise DulError(f"{path}: a document has no topic in {qrels.path}; the files do not belong together")
    mask = holdout_mask(len(train_rows), fraction, np.random.default_rng([seed, 1]), "rcv1-v2")
    in_validation = np.zeros(len(qrels.doc_ids), dtype=bool)
    in_validation[train_rows[mask]] = True
    return in_validation


def holdout_mask(n: int, fraction: float, rng: np.random.Generator, dataset: str) -> np.ndarray:
    """bool (n,): round(fraction * n) of n training documents, by a seeded permutation, go to validation."""
    chosen = rng.permutation(n)[: round(fraction * n)]
    if len(chosen) == n:
        raise DulError(f"ingest.validation_fraction leaves no training documents of {dataset}; lower it")
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def write_corpus(out_dir, records, *, dataset, source, files, label_names, multi_label, vocabulary_size,
                 preprocessing, split_info) -> dict:
    """The three splits by ``bow_stream`` and the card, into ``out_dir`` at once; return the card."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        summary = bow_stream.write_bow_stream(tmp / "splits", records, label_names=label_names,
                                              multi_label=multi_label, vocab_size=vocabulary_size, splits=SPLITS)
        for split in SPLITS:
            os.replace(tmp / "splits" / f"{split}.parquet", tmp / f"{split}.parquet")
        (tmp / "splits").rmdir()
        splits = {split: _summary(tmp / f"{split}.parquet", len(label_names), multi_label) for split in SPLITS}
        card = bow_card(dataset, source, label_names, summary["vocabulary_size"], multi_label, splits,
                        files, split_info, preprocessing)
        write_json(tmp / "card.json", card)
    return card


def _summary(path: Path, n_labels: int, multi_label: bool) -> dict:
    """count, label_counts (documents per label), empty_documents, mean_words of a written split, in batches."""
    count = empty = words = 0
    label_counts = np.zeros(n_labels, dtype=np.int64)
    for counts, labels in bow_stream.iter_bow_batches(path, BATCH, multi_label=multi_label):
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        count, empty, words = count + len(lengths), empty + int((lengths == 0).sum()), words + float(lengths.sum())
        label_counts += labels.sum(axis=0) if multi_label else np.bincount(labels, minlength=n_labels)
    return split_summary(count, label_counts, empty, words / count if count else 0.0)


def split_summary(count: int, label_counts: np.ndarray, empty: int, mean_words: float) -> dict:
    return {"count": int(count), "label_counts": {str(k): int(c) for k, c in enumerate(label_counts)},
            "empty_documents": int(empty), "mean_words": float(mean_words)}


def bow_card(dataset, source, label_names, vocabulary_size, multi_label, splits, files, split_info,
             preprocessing) -> dict:
    """The card of a bag-of-words corpus: deterministic (no timestamps, no cache paths)."""
    return {
        "dataset": dataset, "kind": "bow", "source": source, "n_labels": len(label_names),
        "label_names": list(label_names), "multi_label": multi_label, "vocabulary_size": vocabulary_size,
        "preprocessing": {**preprocessing, "counts": COUNTS},
        "split": split_info,
        "splits": splits,
        "files": files,
    }
