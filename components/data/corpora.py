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

from components.data import corpora_stream, fetch, newsgroups, reuters, text
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
        if dataset == "reuters21578":
            return _reuters_vdsh(out_dir, source=source, cache_dir=cache_dir, seed=seed)
        if dataset != "20newsgroups":
            raise DulError(f"ingest.protocol vdsh is the papers' 20newsgroups and reuters21578 preparation; {dataset} "
                           "has none: use protocol bydate")
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
    fetched = fetch.fetch_files("20newsgroups", source, cache_dir)
    [path] = fetched.paths.values()
    corpus = newsgroups.load_20newsgroups(path, remove=VDSH["remove"], expected_sha256=None)
    counts, vocabulary, kept, dropped = _vdsh_counts({split: corpus[split]["texts"] for split in ("train", "test")})
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
    preprocessing = _vdsh_preprocessing("create_single_label_dataset.py") | {"remove": list(VDSH["remove"])}
    card = bow_card("20newsgroups", fetched.source, corpus["label_names"], len(vocabulary), False, splits,
                    fetched.files, split_info, preprocessing)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, labels, matrix, titles) in parts.items():
            text.write_bow_split(tmp / f"{split}.parquet", ids, labels, matrix, titles, vocabulary)
        write_json(tmp / "card.json", card)
    return card


def _vdsh_counts(texts: dict[str, list[str]]) -> tuple[dict, list[str], dict, dict]:
    """The VDSH protocol's counts of the train and test texts, its vocabulary, and per split the
    rows it keeps by length and how many it drops."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(stop_words=VDSH["stop_words"], max_features=VDSH["vocabulary_size"],
                                 max_df=VDSH["max_df"], min_df=VDSH["min_df"], dtype=np.int32)
    counts = {"train": vectorizer.fit_transform(texts["train"]).tocsr()}
    counts["test"] = vectorizer.transform(texts["test"]).tocsr()
    kept, dropped = {}, {}
    for split, matrix in counts.items():
        lengths = np.asarray(matrix.sum(axis=1)).ravel()
        keep = (lengths >= VDSH["min_words"]) & (lengths <= VDSH["max_words"])
        kept[split], dropped[split] = np.flatnonzero(keep), int((~keep).sum())
    return counts, [str(word) for word in vectorizer.get_feature_names_out()], kept, dropped


def _vdsh_preprocessing(what: str) -> dict:
    return {"protocol": f"vdsh (Chaidaroon & Fang 2017; bayesquant/VDSH's {what})",
            "tokens": "scikit-learn CountVectorizer's default (words of 2+ letters or digits, lower-cased)",
            "stop_words": "scikit-learn ENGLISH_STOP_WORDS",
            "vocabulary": f"at most {VDSH['vocabulary_size']} words by training count, in max_df {VDSH['max_df']} "
                          f"and min_df {VDSH['min_df']}",
            "length": f"documents of {VDSH['min_words']} to {VDSH['max_words']} counted words", "tfidf": VDSH_TFIDF}


REUTERS_VDSH_TOPICS = 20  # the papers' Reuters: the 20 most frequent ModApte topics


def _reuters_vdsh(out_dir, *, source, cache_dir, seed) -> dict:
    """Reuters-21578 as the semantic-hashing papers prepare it: ModApte, the 20 topics with the most
    training documents (multi-label), the VDSH vocabulary and length filter, test documents with
    none of the 20 topics dropped, the test documents halved into test and validation by seed.
    (bayesquant/VDSH picks its 20 labels with a CountVectorizer over the topic names, which splits
    hyphenated names such as money-fx into words; here they are the 20 topics themselves.)"""
    path, source_name, files = corpora_stream._reuters_source(source, cache_dir)
    corpus = reuters.load_reuters(path, topics="all", expected_documents=reuters.EXPECTED_DOCUMENTS)
    names = corpus["label_names"]
    frequency = np.bincount([label for labels in corpus["train"]["labels"] for label in labels], minlength=len(names))
    top = sorted(sorted(range(len(names)), key=lambda i: (-frequency[i], names[i]))[:REUTERS_VDSH_TOPICS],
                 key=lambda i: names[i])
    new_index = {old: new for new, old in enumerate(top)}
    label_names = [names[i] for i in top]
    labels = {split: [sorted(new_index[label] for label in row if label in new_index)
                      for row in corpus[split]["labels"]] for split in ("train", "test")}
    counts, vocabulary, kept, dropped = _vdsh_counts({split: corpus[split]["texts"] for split in ("train", "test")})
    unlabelled = [i for i in kept["test"] if not labels["test"][i]]
    kept["test"] = np.array([i for i in kept["test"] if labels["test"][i]], dtype=np.int64)
    if not len(kept["train"]) or len(kept["test"]) < 2:
        raise DulError(f"ingest.protocol vdsh: {len(kept['train'])} training and {len(kept['test'])} test documents "
                       "are left; the source holds too few for this protocol")
    order = np.random.default_rng(seed).permutation(kept["test"])
    n_validation = len(order) - len(order) // 2
    rows = {"train": kept["train"], "validation": np.sort(order[:n_validation]), "test": np.sort(order[n_validation:])}
    parts = {}
    for split, chosen in rows.items():
        origin = "train" if split == "train" else "test"
        sets = [labels[origin][i] for i in chosen]
        parts[split] = ([corpus[origin]["ids"][i] for i in chosen], sets, counts[origin][chosen],
                        [corpus[origin]["titles"][i] for i in chosen])
    splits = {}
    for split, (_, sets, matrix, _) in parts.items():
        lengths = np.asarray(matrix.sum(axis=1)).ravel()
        per_label = np.bincount([label for row in sets for label in row], minlength=len(label_names))
        splits[split] = corpora_stream.split_summary(len(sets), per_label, int((lengths == 0).sum()),
                                                     float(lengths.mean()) if len(lengths) else 0.0)
    split_info = {"protocol": "vdsh", "seed": seed, "topics": f"the {REUTERS_VDSH_TOPICS} with the most ModApte "
                  "training documents", "validation": "a seeded half of the test documents", "test": "the other half",
                  "dropped": {"train": dropped["train"], "test": dropped["test"], "test_unlabelled": len(unlabelled)}}
    card = bow_card("reuters21578", source_name, label_names, len(vocabulary), True, splits, files, split_info,
                    _vdsh_preprocessing("create_multi_label_dataset.py"))
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, (ids, sets, matrix, titles) in parts.items():
            first = np.array([row[0] if row else -1 for row in sets], dtype=np.int64)
            text.write_bow_split(tmp / f"{split}.parquet", ids, first, matrix, titles, vocabulary, label_sets=sets)
        write_json(tmp / "card.json", card)
    return card


def _summary(labels: np.ndarray, counts, n_labels: int) -> dict:
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_words = float(lengths.mean()) if len(lengths) else 0.0
    return split_summary(len(labels), np.bincount(labels, minlength=n_labels), int((lengths == 0).sum()), mean_words)
