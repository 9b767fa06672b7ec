"""Semantic-hashing search next to FAISS's exhaustive binary index, in one run.

On the same codes and the same 1,000 queries, for each collection size:

(a) 32-bit codes, everything within Hamming radius 2: dul's semantic address
    space (``ball_lookup``) against FAISS ``IndexBinaryFlat.range_search``;
(b) 64- and 128-bit codes, exact k = 100 nearest: dul's multi-index hashing
    (and its blocked scan, up to --scan-max items) against
    ``IndexBinaryFlat.search``;
(c) build seconds and bytes per document of dul's index folder.

    python benchmarks/hamming_speed.py [--sizes 1e5,1e6,1e7] [--quick] [--codes codes.npy]

Codes are clustered like a trained encoder's: a few thousand random centres,
each code a centre with every bit flipped with probability --flip (queries
are fresh codes drawn the same way), or the rows of --codes, an (N, C) bool
or packed uint8 ``.npy`` (its last 1,000 rows become the queries). FAISS gets
--threads OpenMP threads; dul's ball lookup splits the queries over the
CPUs (NumPy, threads), its k-NN runs on one. Times are medians
of --repeats runs; "speed-up (fastest)" compares the fastest runs, which is
steadier on a shared machine. Exit status 1 if any check fails. Results are checked: in-radius sets identical, k-NN
distances identical and ids identical up to the order among ties at the k-th
distance (FAISS does not break ties by index). Needs ``faiss-cpu``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from components.retrieval.codes import pack_words, packed_from_words, words_from_packed
from components.retrieval.hamming import (
    build_hash_index,
    hash_ball,
    hash_knn,
    index_stats,
    knn_search,
    save_hash_index,
)

N_QUERIES, RADIUS, K = 1000, 2, 100


def clustered_words(rng, n: int, n_bits: int, n_centres: int, flip: float, block: int = 1 << 18):
    """(n, W) uint64 codes: random centres, each bit flipped with probability ~flip (1/256 steps)."""
    centres = pack_words(rng.random((n_centres, n_bits)) < 0.5)
    words = centres[rng.integers(0, n_centres, n)]
    threshold = round(flip * 256)
    for start in range(0, n, block):
        stop = min(start + block, n)
        noise = rng.integers(0, 256, (stop - start, n_bits), dtype=np.uint8) < threshold
        words[start:stop] ^= pack_words(noise)
    return words


def load_codes(path: Path, n_bits: int) -> np.ndarray:
    """(N, n_bits) words from a bool or packed uint8 .npy, keeping its first n_bits bits."""
    codes = np.load(path, mmap_mode="r", allow_pickle=False)
    bits = codes if codes.dtype == bool else np.unpackbits(codes, axis=1)
    if bits.shape[1] < n_bits:
        sys.exit(f"error: {path} holds {bits.shape[1]}-bit codes, the benchmark needs {n_bits}")
    return pack_words(np.asarray(bits[:, :n_bits], dtype=bool))


def codes_for(args, rng, n: int, n_bits: int):
    """Database and query words for one (size, bits) cell."""
    if args.codes:
        words = load_codes(args.codes, n_bits)
        n = min(n, len(words) - N_QUERIES)
        return words[:n], words[-N_QUERIES:]
    words = clustered_words(rng, n + N_QUERIES, n_bits, args.centres, args.flip)
    return words[:n], words[n:]


def timed(fn, repeats: int):
    """((median, fastest) seconds, last result) of ``repeats`` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return (statistics.median(seconds), min(seconds)), result


def faiss_flat(words, n_bits: int, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexBinaryFlat(8 * math.ceil(n_bits / 8))
    flat.add(packed_from_words(words, n_bits))
    return flat


def same_balls(ours, lims, ids) -> bool:
    """Every query's in-radius set is the same in both answers."""
    offsets, documents, _ = ours
    return np.array_equal(_pair_keys(offsets, documents), _pair_keys(lims, ids))


def _pair_keys(offsets, documents) -> np.ndarray:
    """CSR results -> sorted (query << 40 | document) keys, one per hit."""
    query = np.repeat(np.arange(len(offsets) - 1), np.diff(np.asarray(offsets, dtype=np.int64)))
    return np.sort(query * 2**40 + np.asarray(documents, dtype=np.int64))


def same_knn(ours, theirs, words, query_words) -> bool:
    """Distances identical; ids identical below the k-th distance, and FAISS's at it are true ties."""
    (ids, dist), (faiss_dist, faiss_ids) = ours, theirs
    if not np.array_equal(dist, faiss_dist):
        return False
    kth = dist[:, -1:]
    below_ours = np.where(dist < kth, ids, -1)
    below_theirs = np.where(faiss_dist < kth, faiss_ids, -1)
    if not np.array_equal(np.sort(below_ours, axis=1), np.sort(below_theirs, axis=1)):
        return False
    xor = words[faiss_ids] ^ query_words[:, None, :]  # (Q, k, W)
    return np.array_equal(np.bitwise_count(xor).sum(axis=2), faiss_dist)


def ball_rows(args, rng, n: int) -> list[dict]:
    words, queries = codes_for(args, rng, n, 32)
    index, stats = built(words, 32)
    ours_s, ours = timed(lambda: hash_ball(index, queries, RADIUS), args.repeats)
    flat = faiss_flat(words, 32, args.threads)
    packed = packed_from_words(queries, 32)
    faiss_s, (lims, _, ids) = timed(lambda: flat.range_search(packed, RADIUS + 1), args.repeats)
    hits = (len(ours[1]) / N_QUERIES)
    return [_row(f"radius <= {RADIUS}", 32, n, "address", ours_s, faiss_s,
                 same_balls(ours, lims, ids), f"{hits:.0f} hits/query", stats)]


def knn_rows(args, rng, n: int, n_bits: int) -> list[dict]:
    words, queries = codes_for(args, rng, n, n_bits)
    index, stats = built(words, n_bits, args.substrings)
    flat = faiss_flat(words, n_bits, args.threads)
    packed = packed_from_words(queries, n_bits)
    faiss_s, theirs = timed(lambda: flat.search(packed, K), args.repeats)
    ours_s, ours = timed(lambda: hash_knn(index, queries, K), args.repeats)
    note = f"m = {len(index.mih.tables)}"
    rows = [_row(f"k = {K}", n_bits, n, "multi-index", ours_s, faiss_s,
                 same_knn(ours, theirs, words, queries), note, stats)]
    if n <= args.scan_max:
        scan_s, scan = timed(lambda: knn_search(words, queries, K), 1)
        exact = np.array_equal(scan[0], ours[0]) and np.array_equal(scan[1], ours[1])
        rows.append(_row(f"k = {K}", n_bits, n, "scan", scan_s, faiss_s,
                         same_knn(scan, theirs, words, queries), f"ids == multi-index: {exact}", stats))
    return rows


def built(words, n_bits: int, substrings=None):
    """The index, and the stats of its folder written to a temporary place."""
    start = time.perf_counter()
    index = build_hash_index(words, n_bits, substrings=substrings)
    seconds = time.perf_counter() - start  # the tables in memory; not on disk (byte-identical folders)
    with tempfile.TemporaryDirectory() as tmp:
        save_hash_index(Path(tmp) / "index", index)
        stats = index_stats(Path(tmp) / "index")
    return index, {**stats, "build_seconds": seconds}


def _row(task, n_bits, n, method, ours_s, faiss_s, identical, note, stats) -> dict:
    """One table row; ``ours_s``, ``faiss_s`` are (median, fastest) seconds per batch."""
    return {"task": task, "bits": n_bits, "N": n, "dul": method,
            "dul ms/q": 1e3 * ours_s[0] / N_QUERIES, "faiss ms/q": 1e3 * faiss_s[0] / N_QUERIES,
            "speed-up": faiss_s[0] / ours_s[0], "speed-up (fastest)": faiss_s[1] / ours_s[1],
            "identical": identical, "note": note,
            "build s": stats["build_seconds"], "bytes/doc": stats["bytes_per_item"]}


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int)
                 and not isinstance(v, bool) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="collection sizes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="sizes 1e4,1e5 and one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    parser.add_argument("--centres", type=int, default=4096, help="clusters of the synthetic codes")
    parser.add_argument("--flip", type=float, default=0.05, help="bit-flip probability around a centre")
    parser.add_argument("--codes", type=Path, help="(N, C) bool or packed uint8 .npy of real codes")
    parser.add_argument("--substrings", type=int, help="multi-index substrings m (default n / log2 N)")
    parser.add_argument("--scan-max", type=float, default=1e6, help="largest N to time the scan at")
    parser.add_argument("--bits", default="32,64,128", help="code lengths to run (32: radius task)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    args.repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(args.seed)
    rows, start = [], time.perf_counter()
    for n in sizes:
        for n_bits in (int(b) for b in args.bits.split(",")):
            rows += ball_rows(args, rng, n) if n_bits == 32 else knn_rows(args, rng, n, n_bits)
            print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(markdown(rows))
    print(f"\n{N_QUERIES} queries; FAISS {args.threads} threads; medians of {args.repeats}; "
          f"total {time.perf_counter() - start:.0f} s")
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
