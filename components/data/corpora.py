"""Text corpora as bag-of-words splits: fetch the files, tokenise, count, write.

``ingest_text(dataset, out_dir, ...)`` writes, into ``out_dir`` (whole or
not at all), ``train.parquet``, ``validation.parquet`` and ``test.parquet``
in the bag-of-words format of ``components.data.text`` (id, label, title,
indices, counts; the vocabulary in the schema metadata) and ``card.json``
(``"kind": "bow"``, ``multi_label``, label names, per-split counts, the
source files' sha256). The vocabulary is the ``vocabulary_size`` most
frequent words of the train split only (neither validation nor test), as
Salakhutdinov & Hinton (2009) build their 2000-word inputs. Validation is a
seeded hold-out of the official training split (``validation_fraction``).

- ``20newsgroups`` (``components.data.newsgroups``): the bydate split,
  single-label; ``remove`` strips headers, footers, quotes (this corpus only:
  set for another one it is an error). ``protocol: vdsh`` prepares it as the
  semantic-hashing papers do instead (``VDSH``: its own vocabulary, length
  filter and test halves; ``vocabulary_size``, ``remove`` and
  ``validation_fraction`` do not apply).
- ``reuters21578`` and ``rcv1-v2``: ``components.data.corpora_stream``
  (``topics``, ``rcv1_split``; multi-label: a ``labels`` column beside
  ``label``, the first label).

Sources (``components.data.fetch``): ``source`` is a local file, a folder
holding the files, a mirror URL, or empty for the canonical URLs in
``sources.FILE_PINS``; downloads enter the cache only once their sha256
matches the pin, and a file with no pin is marked ``verified: false``.
"""

from __future__ import annotations

import numpy as np

from components.data import corpora_stream, fetch, newsgroups, text
from components.data.corpora_stream import bow_card, holdout_mask, split_summary
from components.errors import DulError
from components.io import atomic_path, write_json

TEXT_DATASETS = ("20newsgroups", "reuters21578", "rcv1-v2")
PROTOCOLS = ("bydate", "vdsh")
# The semantic-hashing papers' 20 Newsgroups (VDSH, Chaidaroon & Fang 2017, and every paper since, through the
# public preparation of bayesquant/VDSH, preprocess/create_single_label_dataset.py): scikit-learn's bydate posts
# with headers, footers and quotes removed; CountVectorizer(stop_words="english", max_features=10000, max_df=0.8,
# min_df=3) fitted on the training posts; posts of <= 5 or > 500 counted words dropped; the test posts split in
# halves, test and validation; TF-IDF inputs log(1 + tf) * log(1 + N / df), df over the training posts.
VDSH = {"remove": ("headers", "footers", "quotes"), "stop_words": "english", "vocabulary_size": 10_000,
        "max_df": 0.8, "min_df": 3, "min_words": 6, "max_words": 500}
VDSH_TFIDF = "log(1 + tf) * log(1 + N / df), N and df over the training documents (bayesquant/VDSH)"


def ingest_text(dataset: str, out_dir, *, source=None, cache_dir=None, vocabulary_size: int = text.VOCABULARY_SIZE,
                remove: tuple[str, ...] = (), validation_fraction: float = 0.1, seed: int = 0, topics: str = "all",
                rcv1_split: str = "lyrl2004", protocol: str = "bydate") -> dict:
    """Write ``dataset``'s bag-of-words splits and card to ``out_dir``; return the card.
    ``protocol`` "vdsh": the semantic-hashing papers' preparation (``VDSH``; 20newsgroups)."""
    common = {"source": source, "cache_dir": cache_dir, "vocabulary_size": vocabulary_size,
              "validation_fraction": validation_fraction, "seed": seed}
    if protocol not in PROTOCOLS:
        raise DulError(f"unknown ingest.protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "vdsh":
        if dataset != "20newsgroups":
            raise DulError(f"ingest.protocol vdsh is the papers' 20newsgroups preparation; {dataset} has no vdsh "
                           "protocol here yet: use protocol bydate")
        return _newsgroups_vdsh(out_dir, source=source, cache_dir=cache_dir, seed=seed)
    if remove and dataset != "20newsgroups":
        raise DulError(f"ingest.remove is {list(remove)} but it applies to 20newsgroups only; set it to [] for {dataset}")
    if dataset == "reuters21578":
        return corpora_stream.ingest_reuters(out_dir, topics=topics, **common)
    if dataset == "rcv1-v2":
        return corpora_stream.ingest_rcv1(out_dir, scheme=rcv1_split, **common)
    return _newsgroups(out_dir, remove=tuple(remove), **common)


def _newsgroups(out_dir, *, source, cache_dir, vocabulary_size, remove, validation_fraction, seed) -> dict:
    fetched = fetch.fetch_files("20newsgroups", source, cache_dir)
    [path] = fetched.paths.values()
    corpus = newsgroups.load_20newsgroups(path, remove=remove, expected_sha256=None)  # fetch_files checked the pin
    tokens = {split: [text.tokenize(doc) for doc in corpus[split]["texts"]] for split in ("train", "test")}
    in_validation = holdout_mask(len(tokens["train"]), validation_fraction, np.random.default_rng(seed), "20newsgroups")
    rows = {"train": np.flatnonzero(~in_validation), "validation": np.flatnonzero(in_validation),
            "test": np.arange(len(tokens["test"]))}
    vocabulary = text.build_vocabulary([tokens["train"][i] for i in rows["train"]], vocabulary_size)
    parts = {}
    for split, chosen in rows.items():
        origin = corpus["test" if split == "test" else "train"]
        origin_tokens = tokens["test" if split == "test" else "train"]
        counts = text.count_vectors([origin_tokens[i] for i in chosen], vocabulary)
        parts[split] = ([origin["ids"][i] for i in chosen], origin["labels"][chosen], counts,
                        [origin["titles"][i] for i in chosen])
    n_labels = len(corpus["label_names"])
    splits = {split: _summary(labels, counts, n_labels) for split, (_, labels, counts, _) in parts.items()}
    split_info = {"seed": seed, "validation_fraction": validation_fraction, "remove": list(remove),
                  "test": "official test split"}
    card = bow_card("20newsgroups", fetched.source, corpus["label_names"], len(vocabulary), False, splits,
                    fetched.files, split_info, corpora_stream.TOKENISED)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, labels, counts, titles) in parts.items():
            text.write_bow_split(tmp / f"{split}.parquet", ids, labels, counts, titles, vocabulary)
        write_json(tmp / "card.json", card)
    return card


def _newsgroups_vdsh(out_dir, *, source, cache_dir, seed) -> dict:
    """20 Newsgroups as the semantic-hashing papers prepare it (``VDSH``); the test halves by a seeded shuffle."""
    from sklearn.feature_extraction.text import CountVectorizer

    fetched = fetch.fetch_files("20newsgroups", source, cache_dir)
    [path] = fetched.paths.values()
    corpus = newsgroups.load_20newsgroups(path, remove=VDSH["remove"], expected_sha256=None)
    vectorizer = CountVectorizer(stop_words=VDSH["stop_words"], max_features=VDSH["vocabulary_size"],
                                 max_df=VDSH["max_df"], min_df=VDSH["min_df"], dtype=np.int32)
    counts = {"train": vectorizer.fit_transform(corpus["train"]["texts"]).tocsr()}
    counts["test"] = vectorizer.transform(corpus["test"]["texts"]).tocsr()
    vocabulary = [str(word) for word in vectorizer.get_feature_names_out()]
    kept, dropped = {}, {}
    for split, matrix in counts.items():
        lengths = np.asarray(matrix.sum(axis=1)).ravel()
        keep = (lengths >= VDSH["min_words"]) & (lengths <= VDSH["max_words"])
        kept[split], dropped[split] = np.flatnonzero(keep), int((~keep).sum())
    if not len(kept["train"]) or len(kept["test"]) < 2:
        raise DulError(f"ingest.protocol vdsh: {len(kept['train'])} training and {len(kept['test'])} test posts keep "
                       f"{VDSH['min_words']} to {VDSH['max_words']} counted words; the source holds too few posts "
                       "for this protocol")
    order = np.random.default_rng(seed).permutation(kept["test"])
    n_validation = len(order) - len(order) // 2  # the papers' cv takes the larger half
    rows = {"train": kept["train"], "validation": np.sort(order[:n_validation]), "test": np.sort(order[n_validation:])}
    parts = {}
    for split, chosen in rows.items():
        origin = corpus["test" if split != "train" else "train"]
        matrix = counts["test" if split != "train" else "train"]
        parts[split] = ([origin["ids"][i] for i in chosen], origin["labels"][chosen], matrix[chosen],
                        [origin["titles"][i] for i in chosen])
    n_labels = len(corpus["label_names"])
    splits = {split: _summary(labels, matrix, n_labels) for split, (_, labels, matrix, _) in parts.items()}
    split_info = {"protocol": "vdsh", "seed": seed, "validation": "a seeded half of the test posts",
                  "test": "the other half", "dropped": {"train": dropped["train"], "test": dropped["test"]}}
    preprocessing = {"protocol": "vdsh (Chaidaroon & Fang 2017; bayesquant/VDSH's preparation)",
                     "remove": list(VDSH["remove"]), "tokens": "scikit-learn CountVectorizer's default (words of 2+ "
                     "letters or digits, lower-cased)", "stop_words": "scikit-learn ENGLISH_STOP_WORDS",
                     "vocabulary": f"at most {VDSH['vocabulary_size']} words by training count, in max_df "
                     f"{VDSH['max_df']} and min_df {VDSH['min_df']}", "length": f"posts of {VDSH['min_words']} to "
                     f"{VDSH['max_words']} counted words", "tfidf": VDSH_TFIDF}
    card = bow_card("20newsgroups", fetched.source, corpus["label_names"], len(vocabulary), False, splits,
                    fetched.files, split_info, preprocessing)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, labels, matrix, titles) in parts.items():
            text.write_bow_split(tmp / f"{split}.parquet", ids, labels, matrix, titles, vocabulary)
        write_json(tmp / "card.json", card)
    return card


def _summary(labels: np.ndarray, counts, n_labels: int) -> dict:
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_words = float(lengths.mean()) if len(lengths) else 0.0
    return split_summary(len(labels), np.bincount(labels, minlength=n_labels), int((lengths == 0).sum()), mean_words)
