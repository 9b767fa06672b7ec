"""``dul serve``: the search folder over HTTP, a JSON API and a web page (components/retrieval/serve.py).

    dul serve --index index/search                 # http://127.0.0.1:8000/, this machine only
    dul serve --index index/search --workers 2     # two processes on one port: both cores
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from components.errors import DulError

EPILOG = """\
The server answers on --host (default 127.0.0.1: this machine only):
  /                                  a web page: type a query, read the results
  /api/search?q=TEXT&k=10&radius=2   free text; ?doc=ID for a document's neighbours
  /api/doc/ID, /doc/ID               what the index keeps of a document (JSON, plain text)
  /api/status                        documents, bits, vocabulary size
A bad request gets a 4xx and {"error": "<one line>"}. --host 0.0.0.0 lets anyone
who can reach this machine query the index and read its titles and words (and,
with --texts, the documents' text): there is no authentication.

examples:
  dul serve --index index/search             # then open http://127.0.0.1:8000/
  dul serve --index index/search --port 0    # any free port (printed)
"""
LOOPBACK = ("127.0.0.1", "localhost")


def add_serve(commands) -> None:
    """The ``serve`` subcommand's arguments."""
    serve = commands.add_parser(
        "serve", help="serve the search index over HTTP: a JSON API and a web page",
        description="Answer free-text and document queries against the search folder over HTTP, "
        "many at a time, until interrupted (Ctrl-C).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--index", required=True, metavar="PATH", help="the search folder index/search")
    serve.add_argument("--host", default="127.0.0.1", help="the interface to listen on (default: %(default)s, "
                       "this machine only; 0.0.0.0: every interface, anyone on the network, no authentication)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port, 0 for any free one (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes answering on the one port, each with its own GIL (default: %(default)s; "
                       "up to one per core)")
    serve.add_argument("--texts", action="append", default=[], metavar="FOLDER",
                       help="a folder holding each document's text as FOLDER/<id> (the index keeps titles and "
                       "word counts only); repeat for several, e.g. the 20news-bydate-train and -test folders")
    serve.add_argument("--worker", type=int, metavar="PID", help=argparse.SUPPRESS)  # started by --workers


def run_serve(args) -> int:
    """Run ``dul serve`` until interrupted; problems are DulErrors (the caller prints them)."""
    import torch

    from components.retrieval.documents import load_search_index
    from components.retrieval.serve import make_server, start_workers, stop_workers
    from components.retrieval.service import SearchService

    path = _check(args)
    torch.set_num_threads(1)  # a query's matmuls are too small to share out; more threads fight the requests'
    index = load_search_index(path)
    server = make_server(SearchService(index, args.texts, worker=int(args.worker is not None)), args.host,
                         args.port, reuse_port=args.workers > 1 or args.worker is not None)
    if args.worker is not None:
        return _serve_as_worker(server, args.worker)
    host, port = server.server_address[:2]
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the workers too
    workers = []
    try:
        workers = start_workers(args.workers - 1, _worker_arguments(args, port)) if args.workers > 1 else []
        if args.host not in LOOPBACK:
            print(f"warning: listening on {args.host}: anyone who can reach this machine can query the index and "
                  f"read its documents; there is no authentication", file=sys.stderr)
        processes = f", {args.workers} processes" if args.workers > 1 else ""
        print(f"serving {len(index)} documents ({index.n_bits}-bit codes{processes}) from {path} at "
              f"http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_workers(workers)
        server.server_close()
    return 0


def _check(args) -> Path:
    path = Path(args.index)
    if path.suffix == ".npz" or path.is_file():
        raise DulError(f"{args.index} is a codes file; dul serve answers from the search folder index/search "
                       f"(`dvc repro index` writes it)")
    missing = [folder for folder in args.texts if not Path(folder).is_dir()]
    if missing:
        raise DulError(f"--texts {missing[0]} is not a folder")
    if not 1 <= args.workers <= 64:
        raise DulError(f"--workers {args.workers}: choose 1 to 64 (one per core is the most that helps)")
    return path


def _worker_arguments(args, port: int) -> list[str]:
    texts = [f"--texts={folder}" for folder in args.texts]
    return ["--index", str(args.index), "--host", args.host, "--port", str(port), *texts]


def _serve_as_worker(server, parent: int) -> int:
    from components.retrieval.serve import exit_with_parent

    exit_with_parent(parent)
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
