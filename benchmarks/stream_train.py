"""One epoch of first-layer pretraining on an RCV1-sized corpus, streamed from Parquet.

Writes a synthetic bag-of-words training split with RCV1-v2's shape
(``--docs`` documents, 804,414 by default, over a 2000-word vocabulary; the
in-vocabulary words of a document Zipf(1.07)-distributed, its length
log-normal with median 80 words) with the same writer schema as ingest
(``bow_stream``: ``indices``/``counts`` lists, row groups of 10,000), then
runs, each in its own subprocess:

(a) stream: ``stream.open_split(..., streaming=True)`` and one
    ``pretrain.train_epoch`` of a constrained Poisson RBM 2000 -> ``--hidden``
    (CD-1, batch ``--batch``), the stages' ``stream: true`` path;
(b) for comparison, on the first ``--compare-docs`` documents: the same
    epoch streamed, and in memory (``streaming=False``: ``read_split``'s dense
    float32 matrix, the stages' ``stream: false`` path).

Peak RSS and CPU time are each child's own (``os.wait4``, the per-child
form of ``getrusage(RUSAGE_CHILDREN)``). Prints a markdown table, with the
dense size the in-memory path would need for the whole corpus, and exits
non-zero if the full streamed run's peak RSS is over ``--max-rss-gib`` (2 GiB).

    python benchmarks/stream_train.py [--docs 804414] [--hidden 500] [--compare-docs 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.data.bow_stream import _schema
from components.data.text import ROW_GROUP_SIZE

RCV1_DOCS, VOCABULARY, MEDIAN_WORDS = 804_414, 2000, 80


def generate(path: Path, n_docs: int, seed: int) -> None:
    """``path``: a BoW train split of ``n_docs`` synthetic documents, one row group at a time."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i:04d}" for i in range(VOCABULARY)]
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.07
    cdf = np.cumsum(weights / weights.sum())
    schema = _schema(vocabulary, ["a", "b"], multi_label=False)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for start in range(0, n_docs, ROW_GROUP_SIZE):
            writer.write_table(_chunk(rng, cdf, schema, start, min(start + ROW_GROUP_SIZE, n_docs)))
    os.replace(tmp, path)


def _chunk(rng: np.random.Generator, cdf: np.ndarray, schema: pa.Schema, start: int, stop: int) -> pa.Table:
    n = stop - start
    lengths = np.maximum(1, rng.lognormal(np.log(MEDIAN_WORDS), 0.8, n).astype(np.int64))
    words = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCABULARY - 1)
    keys, counts = np.unique(np.repeat(np.arange(n), lengths) * VOCABULARY + words, return_counts=True)
    offsets = np.searchsorted(keys // VOCABULARY, np.arange(n + 1)).astype(np.int32)
    return pa.table({
        "id": pa.array([f"doc/{i}" for i in range(start, stop)]),
        "label": pa.array(rng.integers(0, 2, n), pa.int64()),
        "title": pa.array([""] * n),
        "indices": pa.ListArray.from_arrays(pa.array(offsets), pa.array((keys % VOCABULARY).astype(np.int32))),
        "counts": pa.ListArray.from_arrays(pa.array(offsets), pa.array(counts.astype(np.int32))),
    }, schema=schema)


def run_epoch(folder: Path, streaming: bool, hidden: int, batch: int, threads: int) -> dict:
    """Child: one CD-1 epoch of the first layer, as the pretrain stage runs it."""
    import torch

    from components.data.stream import open_split
    from components.training.pretrain import build_layer, make_optimizer, train_epoch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    batches = open_split(folder, "train", batch_size=batch, streaming=streaming, stage="pretrain")
    loaded = time.perf_counter() - start
    params = {"hidden": [hidden], "code_units": "binary", "init_std": 0.01, "lr_layers": [0.003],
              "weight_decay": 0.0002, "momentum_initial": 0.5, "visible_units": "poisson"}
    torch.manual_seed(0)
    rbm = build_layer(0, VOCABULARY, params)
    start = time.perf_counter()
    stats = train_epoch(rbm, make_optimizer(rbm, 0, params), batches, cd_k=1,
                        generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    return {"docs": batches.n_batches * batch, "load_seconds": loaded, "train_seconds": seconds, **stats}


def measure(argv: list[str]) -> dict:
    """Run this script's ``--child`` mode in a subprocess: its figures plus its own peak RSS and CPU time."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, cwd=REPO)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(argv)} failed with status {os.waitstatus_to_exitcode(status)}")
    return {**json.loads(output), "seconds": time.perf_counter() - start,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_gib": usage.ru_maxrss * 1024 / 2**30}


def corpus(root: Path, n_docs: int, seed: int) -> Path:
    folder = root / f"rcv1-shape-{n_docs}"
    if not (folder / "train.parquet").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(folder / "train.parquet", n_docs, seed)
        print(f"generated {n_docs:,} documents in {time.perf_counter() - start:.0f} s -> {folder}", file=sys.stderr)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=RCV1_DOCS, help="documents (default: RCV1's 804,414)")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units of the Poisson RBM (default 500)")
    parser.add_argument("--batch", type=int, default=100, help="mini-batch size (default 100)")
    parser.add_argument("--compare-docs", type=int, default=100_000,
                        help="documents of the streamed vs in-memory comparison (default 100,000; 0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per child (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write (and reuse) the corpora here (default: a temp folder)")
    parser.add_argument("--max-rss-gib", type=float, default=2.0, help="fail if the full streamed run's peak RSS is over this")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, folder = args.child
        print(json.dumps(run_epoch(Path(folder), mode == "stream", args.hidden, args.batch, args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="dul-stream-") as tmp:
        root = args.keep or Path(tmp)
        common = ["--hidden", str(args.hidden), "--batch", str(args.batch), "--threads", str(args.threads)]
        rows = [("stream", args.docs, measure(["--child", "stream", str(corpus(root, args.docs, args.seed)), *common]))]
        if args.compare_docs:
            small = str(corpus(root, args.compare_docs, args.seed))
            rows += [(mode, args.compare_docs, measure(["--child", mode, small, *common])) for mode in ("stream", "memory")]
    report(rows, args)
    if rows[0][2]["peak_rss_gib"] > args.max_rss_gib:
        raise SystemExit(f"streamed peak RSS {rows[0][2]['peak_rss_gib']:.2f} GiB is over {args.max_rss_gib} GiB")


def report(rows: list, args) -> None:
    print(f"One CD-1 epoch, constrained Poisson RBM {VOCABULARY} -> {args.hidden}, batch {args.batch}, "
          f"{args.threads} torch threads")
    print("| path | documents | dense float32 size | peak RSS (GiB) | load (s) | train (s) | docs/s | CPU (s) "
          "| recon error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, n_docs, r in rows:
        dense = n_docs * VOCABULARY * 4 / 2**30
        print(f"| {mode} | {n_docs:,} | {dense:.2f} GiB | {r['peak_rss_gib']:.2f} | {r['load_seconds']:.1f} | "
              f"{r['train_seconds']:.0f} | {r['docs'] / r['train_seconds']:,.0f} | {r['cpu_seconds']:.0f} | "
              f"{r['recon_error']:.2f} |")


if __name__ == "__main__":
    main()
