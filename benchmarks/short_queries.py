"""Short free-text queries against a search index: subject lines in, documents of the topic out.

People type three words, not a document. Each query item's title (a 20
Newsgroups post's subject line; the items of ``--split``, itself left out)
searches the whole index as free text, three ways, as the index stage's
``search/title/*`` metrics do: the code's shortlist re-ranked by TF-IDF
(``hash_rerank``), Hamming distance alone (``hash_only``) and TF-IDF over
every item (``tfidf_all``). Each runs twice, with the query encoded as a
document of the training median length (the engine's rule, see
components/retrieval/engine.py) and with its raw counts (the rule before),
so the gain is measured side by side in one run. Relevant: shares a label.

    python benchmarks/short_queries.py --index index/search --split validation [--k 10] [--out results.json]

Choose on ``validation``; quote ``test`` once the choice is made.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from components.io import write_json
from components.retrieval.documents import load_search_index
from components.retrieval.search_eval import compare_title_queries
from components.training.pretrain import cpu_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="a search folder of word counts (index/search)")
    parser.add_argument("--split", default="validation", choices=["train", "validation", "test"],
                        help="whose titles query (default: %(default)s)")
    parser.add_argument("--k", type=int, default=10, help="results per query (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=1000, help="a seeded sample of the split (0: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    print(cpu_line())
    index = load_search_index(args.index)
    if not index.meta.get("query_length"):
        raise SystemExit(f"{args.index} has no query_length in meta.json (an older index): rebuild it with "
                         "`dvc repro index`")
    rows = np.flatnonzero(np.asarray(index.splits) == args.split)
    if args.queries:
        rows = np.sort(np.random.default_rng(0).permutation(rows)[: args.queries])
    raw = dataclasses.replace(index, meta={**index.meta, "query_length": 0.0})
    results = {"index": str(args.index), "dataset": index.meta.get("dataset"), "n_bits": index.n_bits,
               "split": args.split, "k": args.k, "query_length": index.meta["query_length"], "cpu": cpu_line(),
               "command": f"python benchmarks/short_queries.py --index {args.index} --split {args.split} "
                          f"--k {args.k} --queries {args.queries}", "rows": []}
    for encoding, which in (("median length", index), ("raw counts", raw)):
        start = time.perf_counter()
        metrics = compare_title_queries(which, rows, args.k, shortlist=100)
        for method in ("hash_rerank", "hash_only", "tfidf_all"):
            if encoding == "raw counts" and method == "tfidf_all":
                continue  # no code: the same either way
            results["rows"].append({"query_encoding": encoding, "method": method,
                                    f"precision_at_{args.k}": metrics[f"search/title/precision_at_{args.k}/{method}"],
                                    "query_ms": metrics[f"search/title/query_ms/{method}"]})
        results |= {"n_queries": metrics["search/title/n_queries"],
                    "n_unsearchable": metrics["search/title/n_unsearchable"]}
        print(f"{encoding}: {time.perf_counter() - start:.1f} s")
    for row in results["rows"]:
        print(f"  {row['query_encoding']:14s} {row['method']:12s} precision@{args.k} "
              f"{row[f'precision_at_{args.k}']:.3f}  {row['query_ms']:.2f} ms/query")
    print(f"{results['n_queries']} {args.split} titles as queries ({results['n_unsearchable']} with no known word left out)")
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
