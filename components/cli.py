"""The ``dul`` command: search a retrieval index, or run one pipeline stage.

    dul search --index index/codes.npz --item 42 -k 10
    dul stage pretrain            # the same as the DVC stage's command
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from components.errors import DulError

STAGES = ("ingest", "pretrain", "finetune", "evaluate", "index")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dul", description="Reproducible, distributed pipelines for deep "
                                     "unsupervised learning (run the whole pipeline with `dvc repro`).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search = commands.add_parser("search", help="the k nearest items to an item by Hamming distance of their codes",
                                 description="Find the k items whose binary codes are nearest (Hamming distance) "
                                 "to item N's, in an index written by the `index` stage.")
    search.add_argument("--index", required=True, metavar="PATH", help="index file, e.g. index/codes.npz")
    search.add_argument("--item", required=True, type=int, metavar="N", help="row of the query item in the index")
    search.add_argument("-k", type=int, default=10, help="number of neighbours (default: %(default)s)")
    stage = commands.add_parser("stage", help="run one pipeline stage outside DVC (DVC runs these for you)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "search":
            return _search(args.index, args.item, args.k)
        return importlib.import_module(f"pipelines.{args.name}").main(["--params", args.params])
    except DulError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _search(path: str, item: int, k: int) -> int:
    from components.retrieval import format_results, load_index, search

    index = load_index(path)
    start = time.perf_counter()
    results = search(index, item, k)
    print(format_results(index, item, results, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
