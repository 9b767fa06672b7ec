"""How much the 20 Newsgroups preprocessing moves precision@100, before any model.

Semantic-hashing papers quote precision@100 on "20 Newsgroups", but each on
its own preprocessing: which split, whether the headers stay, how many words.
This script measures the three baselines that need no training (TF-IDF cosine
over the vocabulary, LSA at ``--dims`` dimensions, random-hyperplane LSH with
``--dims`` bits) on each variant, so a figure from a paper can be put next to
ours on the same footing:

- split: the official ``bydate`` split (test posts are later than training
  posts: the issue's protocol), or a seeded random 80/20 split of all posts
  (replies then share a thread, and its words, with training posts);
- headers: removed (dul's default for retrieval: they name the newsgroup) or kept;
- vocabulary: the 2,000 most frequent training words (the paper's) or 10,000.

    python benchmarks/retrieval_ceiling.py [--source ../shared/data/20news-bydate] [--dims 32]

Test (or held-out) documents query the training documents; relevant = same
newsgroup, as everywhere in dul (components/retrieval/evaluation.py).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from components.data import fetch, newsgroups, text
from components.retrieval.compare import baseline_vectors, compare_methods
from components.retrieval.evaluation import label_matrix


def variant(corpus: dict, tokens: dict, split: str, vocabulary_size: int, dims: int, seed: int) -> dict:
    """precision@100 of each baseline for one (split, vocabulary) variant of a loaded corpus."""
    labels = {name: corpus[name]["labels"] for name in ("train", "test")}
    if split == "bydate":
        train_tokens, test_tokens, y_train, y_test = tokens["train"], tokens["test"], labels["train"], labels["test"]
    else:
        every = tokens["train"] + tokens["test"]
        y_all = np.concatenate([labels["train"], labels["test"]])
        order = np.random.default_rng(seed).permutation(len(every))
        cut = int(0.8 * len(every))
        train_tokens, test_tokens = [every[i] for i in order[:cut]], [every[i] for i in order[cut:]]
        y_train, y_test = y_all[order[:cut]], y_all[order[cut:]]
    vocabulary = text.build_vocabulary(train_tokens, vocabulary_size)
    X_train = text.count_vectors(train_tokens, vocabulary).toarray().astype(np.float32)
    X_test = text.count_vectors(test_tokens, vocabulary).toarray().astype(np.float32)
    methods = baseline_vectors("bow", X_train, X_test, dims, seed)
    curves = compare_methods(methods, label_matrix(y_test, 20), label_matrix(y_train, 20), np.array([100]))
    return {name.split(" (")[0].split(",")[0]: float(curve["precision"][0]) for name, curve in curves.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data/20news-bydate",
                        help="folder or file with 20news-bydate.tar.gz, or null to download (default: %(default)s)")
    parser.add_argument("--dims", type=int, default=32, help="LSA dimensions and LSH bits (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    [archive] = fetch.fetch_files("20newsgroups", None if args.source == "null" else args.source, None).paths.values()
    rows = []
    print("| split | headers | words | TF-IDF | LSA | LSH |\n|---|---|---|---|---|---|")
    for headers in ("removed", "kept"):
        start = time.perf_counter()
        corpus = newsgroups.load_20newsgroups(archive, remove=("headers",) if headers == "removed" else ())
        tokens = {name: [text.tokenize(doc) for doc in corpus[name]["texts"]] for name in ("train", "test")}
        for split, size in itertools.product(("bydate", "random 80/20"), (2000, 10000)):
            row = {"split": split, "headers": headers, "words": size} | \
                variant(corpus, tokens, split, size, args.dims, args.seed)
            rows.append(row)
            print(f"| {split} | {headers} | {size} | {row['TF-IDF']:.3f} | {row[f'LSA-{args.dims}']:.3f} | "
                  f"{row['LSH']:.3f} |", flush=True)
        print(f"(headers {headers}: {time.perf_counter() - start:.0f} s)", flush=True)
    return rows


if __name__ == "__main__":
    main()
