"""Streaming RCV1 ingest next to scikit-learn's CountVectorizer, at RCV1's size, in one run.

Writes a synthetic corpus with RCV1-v2's shape in the LYRL2004 token format
(``--docs`` documents, 804,414 by default; a Zipf(1.07) vocabulary of 47,236
stems; document lengths log-normal with median 120 tokens; 1 to 6 of 103
topics per document; the LYRL2004 proportion of 23,149 training documents)
into a temporary folder, then measures, each in its own subprocess:

(a) dul: ``bow_stream.write_bow_stream`` over ``rcv1.iter_rcv1`` (two passes:
    vocabulary from the training file, then every document to Parquet);
(b) scikit-learn: all documents read into a list of strings, then
    ``CountVectorizer(max_features=2000, analyzer=str.split).fit_transform``.

Peak RSS and CPU time are each child's own (``os.wait4``; the parent's
``RUSAGE_CHILDREN`` would report only the larger of the two); on a shared
machine docs per CPU-second is the steadier speed figure. Prints a
markdown table and exits non-zero if dul's peak RSS is over ``--max-rss-gib``
(2 GiB, the issue's target).

    python benchmarks/rcv1_ingest.py [--docs 804414] [--quick] [--keep DIR]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.data import rcv1

RCV1_DOCS, RCV1_TRAIN, N_STEMS, N_TOPICS = 804_414, 23_149, 47_236, 103
CHUNK = 20_000


def stems(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct lowercase pseudo-stems of 3 to 9 letters."""
    words: set[str] = set()
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    while len(words) < n:
        lengths = rng.integers(3, 10, n)
        words.update("".join(letters[rng.integers(0, 26, k)]) for k in lengths)
    return np.array(sorted(words)[:n], dtype=object)[rng.permutation(n)]


def generate(folder: Path, n_docs: int, seed: int) -> None:
    """The five token files and the qrels of a synthetic RCV1 with ``n_docs`` documents."""
    rng = np.random.default_rng(seed)
    vocabulary = stems(N_STEMS, rng)
    cdf = np.cumsum(1 / np.arange(1, N_STEMS + 1) ** 1.07)
    cdf /= cdf[-1]
    topics = np.array([f"T{i:03d}" for i in range(N_TOPICS)], dtype=object)
    n_train = max(1, round(n_docs * RCV1_TRAIN / RCV1_DOCS))
    bounds = [0, n_train] + [n_train + (n_docs - n_train) * k // 4 for k in range(1, 5)]
    with rcv1._writer(folder / rcv1.QRELS_FILE) as qrels:
        for part, name in enumerate(rcv1.TRAIN_FILES + rcv1.TEST_FILES):
            with rcv1._writer(folder / name) as out:
                for start in range(bounds[part], bounds[part + 1], CHUNK):
                    stop = min(start + CHUNK, bounds[part + 1])
                    text, labels = _chunk(rng, vocabulary, cdf, topics, start, stop)
                    out.write(text)
                    qrels.write(labels)


def _chunk(rng, vocabulary, cdf, topics, start: int, stop: int) -> tuple[bytes, bytes]:
    lengths = np.maximum(1, rng.lognormal(np.log(120), 0.75, stop - start).astype(np.int64))
    words = vocabulary[np.searchsorted(cdf, rng.random(int(lengths.sum())))]
    ends = np.cumsum(lengths)
    docs, labels = [], []
    for k, docid in enumerate(range(2286 + start, 2286 + stop)):
        docs.append(f".I {docid}\n.W\n{' '.join(words[ends[k] - lengths[k] : ends[k]])}\n\n")
        for topic in rng.choice(topics, int(rng.integers(1, 7)), replace=False):
            labels.append(f"{topic} {docid} 1\n")
    return "".join(docs).encode(), "".join(labels).encode()


def run_dul(folder: Path, out: Path, full: bool) -> int:
    from components.data.bow_stream import write_bow_stream

    qrels = rcv1.read_qrels(folder / rcv1.QRELS_FILE)

    def records(wanted):
        return rcv1.iter_rcv1(folder, qrels=qrels, splits=wanted, expected=full)

    summary = write_bow_stream(out, records, label_names=qrels.topic_names, multi_label=True)
    return sum(split["count"] for split in summary["splits"].values())


def run_sklearn(folder: Path) -> int:
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [" ".join(tokens) for name in rcv1.TRAIN_FILES + rcv1.TEST_FILES
             for _, tokens in rcv1.iter_token_file(folder / name)]
    counts = CountVectorizer(max_features=2000, analyzer=str.split).fit_transform(texts)
    return counts.shape[0]


def measure(argv: list[str]) -> dict:
    """Run this script's ``--child`` mode in a subprocess; its wall time, docs and own peak RSS."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, cwd=REPO)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"{argv[1]} failed with status {child.returncode}")
    docs = json.loads(output)["docs"]
    cpu = usage.ru_utime + usage.ru_stime
    return {"docs": docs, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_gib": usage.ru_maxrss * 1024 / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=RCV1_DOCS, help="documents to generate (default: RCV1's 804,414)")
    parser.add_argument("--quick", action="store_true", help="20,000 documents: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the corpus and outputs here (default: a temp folder)")
    parser.add_argument("--max-rss-gib", type=float, default=2.0, help="fail if dul's peak RSS is over this")
    parser.add_argument("--child", nargs=3, metavar=("WHICH", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, folder, out = args.child
        full = which == "dul-full"
        docs = run_dul(Path(folder), Path(out), full) if which.startswith("dul") else run_sklearn(Path(folder))
        print(json.dumps({"docs": docs}))
        return
    n_docs = 20_000 if args.quick else args.docs
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp) / "rcv1"
        folder.mkdir()
        start = time.perf_counter()
        generate(folder, n_docs, args.seed)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"generated {n_docs:,} documents ({size / 2**20:.0f} MiB gzip) in {time.perf_counter() - start:.0f} s")
        which = "dul-full" if n_docs == RCV1_DOCS else "dul"
        results = {
            "dul (bow_stream, 2 passes)": measure(["--child", which, str(folder), str(Path(tmp) / "bow")]),
            "scikit-learn CountVectorizer": measure(["--child", "sklearn", str(folder), "-"]),
        }
        report(results, args.max_rss_gib)


def report(results: dict, max_rss_gib: float) -> None:
    children = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN).ru_maxrss / 2**20
    print("\n| contender | documents | wall s | CPU s | docs/s (wall) | docs/CPU-s | peak RSS (GiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['docs']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['docs'] / r['seconds']:,.0f}"
              f" | {r['docs'] / r['cpu_seconds']:,.0f} | {r['peak_rss_gib']:.2f} |")
    print(f"\n(RUSAGE_CHILDREN ru_maxrss, the larger child: {children:.2f} GiB)")
    ours = next(iter(results.values()))["peak_rss_gib"]
    if ours > max_rss_gib:
        raise SystemExit(f"dul's peak RSS {ours:.2f} GiB is over the target {max_rss_gib} GiB")


if __name__ == "__main__":
    main()
