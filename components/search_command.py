"""``dul search``: free text, a document id or a row against the index stage's outputs.

    dul search --index index/search "space shuttle launch"      # free text (bag-of-words data)
    dul search --index index/search --doc sci.space/61116 -k 5  # a stored document's neighbours
    dul search --index index/search --item 42 --no-rerank      # by row, Hamming distance only
    dul search --index index/codes.npz --item 42               # the codes file: Hamming k-NN by row
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from components.errors import DulError

EPILOG = """\
The folder index/search (written by `dvc repro index`) encodes a free-text
query with the stored encoder, looks up its semantic address (everything
within Hamming radius --radius, default 2, for codes of up to 32 bits, grown
by the nearest codes outside it to at least --shortlist items; the
--shortlist nearest codes for longer ones) and re-ranks that shortlist by
TF-IDF cosine with the query (--no-rerank: Hamming distance only). Image indexes
answer --doc/--item only. index/codes.npz answers --item only.

examples:
  dul search --index index/search "space shuttle launch" -k 5
  dul search --index index/search --doc sci.space/61116
  dul search --index index/codes.npz --item 42
"""


def add_search(commands) -> None:
    """The ``search`` subcommand's arguments."""
    search = commands.add_parser(
        "search", help="search the index: free text, a document id, or a row (semantic hashing)",
        description="Find the k items nearest to a free-text query, a document (--doc) or a row (--item) "
        "by their binary codes, re-ranked by TF-IDF for documents.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    search.add_argument("query", nargs="*", metavar="TEXT", help="free-text query (quote it, or list the words)")
    search.add_argument("--index", required=True, metavar="PATH",
                        help="the search folder index/search, or the codes file index/codes.npz")
    search.add_argument("--doc", metavar="ID",
                        help="a stored document's id, e.g. sci.space/61116 (SPLIT/ID for images: test/2)")
    search.add_argument("--item", type=int, metavar="N", help="row of the query item in the index")
    search.add_argument("-k", type=int, default=10, help="number of results (default: %(default)s)")
    search.add_argument("--radius", type=int, metavar="R", help="Hamming radius of the address lookup "
                        "(codes of up to 32 bits; default: 2)")
    search.add_argument("--shortlist", type=int, metavar="N", help="items re-ranked by TF-IDF: the ball, grown "
                        "to at least N by the nearest codes, or the N nearest codes (default: 10 k)")
    search.add_argument("--no-rerank", action="store_true", help="rank by Hamming distance only, no TF-IDF")


def run_search(args) -> int:
    """Run ``dul search`` for parsed ``args``; problems are DulErrors (the caller prints them)."""
    given = [name for name, present in (("TEXT", args.query), ("--doc", args.doc is not None),
                                        ("--item", args.item is not None)) if present]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        raise DulError(f"give exactly one of a query TEXT, --doc ID or --item N (got {which}), e.g. "
                       f'dul search --index {args.index} "space shuttle"')
    path = Path(args.index)
    if path.suffix == ".npz" or path.is_file():
        return _search_codes(args)
    from components.retrieval.documents import load_search_index
    from components.retrieval.engine import format_result, search_item, search_text

    start = time.perf_counter()
    index = load_search_index(path)
    loaded = time.perf_counter() - start
    options = {"k": args.k, "radius": args.radius, "shortlist": args.shortlist, "rerank": not args.no_rerank}
    if args.query:
        result = search_text(index, " ".join(args.query), **options)
    else:
        result = search_item(index, args.doc if args.doc is not None else args.item, **options)
    print(format_result(index, result) + f" (index opened in {loaded * 1e3:.0f} ms)")
    return 0


def _search_codes(args) -> int:
    """The codes file: Hamming k-NN of a row, as before the search folder existed."""
    from components.retrieval import format_results, load_index, search

    if args.item is None or args.radius is not None or args.no_rerank:
        raise DulError(f"{args.index} holds codes only and answers --item N (and -k): for text, --doc, --radius "
                       f"or --no-rerank search the folder index/search (`dvc repro index` writes it)")
    index = load_index(args.index)
    start = time.perf_counter()
    results = search(index, args.item, args.k)
    print(format_results(index, args.item, results, time.perf_counter() - start))
    return 0
