"""How each stage's time and peak memory grow with the data, on this machine.

Backs infra/README.md ("Beyond one machine"): which stages stream and which
hold their data, so what a node needs as the collection grows. Each
measurement runs in its own subprocess, at four sizes per stage:

- ingest: RCV1-shape LYRL2004 token files (``benchmarks/rcv1_ingest.py``'s
  generator, written before the child starts) through ``bow_stream`` over
  ``rcv1.iter_rcv1``, the streaming path of the ``rcv1-v2`` ingest;
  50k-400k documents.
- pretrain: one CD-1 epoch of the first RBM of the paper's network (784 ->
  1000 binary, batch 100, ``pretrain.train_epoch``, the defaults of
  ``PretrainParams``), in-process, no Ray; 5k-40k rows of Fashion-MNIST
  (--data; random binary images if the folder is missing).
- finetune: one Adam epoch of the unrolled 784-1000-500-250-30 autoencoder
  (``finetune.train_epoch``, batch 100), same rows.
- index: 32-bit codes clustered like a trained encoder's
  (``hamming_speed.clustered_words``), the semantic address table
  (``build_hash_index``), then 1,000 queries for everything within Hamming
  radius 2 (``hash_ball``, what ``dul search`` does for codes of up to 32
  bits); 1e5-1e7 codes.

"seconds" (wall) and "CPU s" (all the child's threads, ``time.process_time``)
are the measured work alone, not imports and not generating the input;
"child wall s" is the whole child. On a shared machine CPU seconds are the
steadier figure, and "CPU µs/item" is computed from them. Peak RSS is each child's own
(``os.wait4``: the child's ``ru_maxrss``, what ``RUSAGE_CHILDREN`` reports
for one child; the parent's ``RUSAGE_CHILDREN`` after several would give
only the largest). "bytes/item" is the marginal memory, the growth in peak
RSS from the size before divided by the added items: what a node needs per
extra item. Prints a markdown table and writes OUT.csv and OUT.png (log-log:
CPU seconds and peak MiB against items).

    python benchmarks/scaling.py [--out benchmarks/results/scaling] [--quick] [--stages ingest,pretrain,finetune,index]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {
    "ingest": [50_000, 100_000, 200_000, 400_000],
    "pretrain": [5_000, 10_000, 20_000, 40_000],
    "finetune": [5_000, 10_000, 20_000, 40_000],
    "index": [100_000, 1_000_000, 3_000_000, 10_000_000],
}
QUICK = {"ingest": [5_000, 10_000], "pretrain": [1_000, 2_000], "finetune": [1_000, 2_000],
         "index": [10_000, 100_000]}
SIZES_NET = [784, 1000, 500, 250, 30]
N_QUERIES, RADIUS, BATCH = 1000, 2, 100


# ---- children: one measurement each, a JSON line on stdout -------------------


class Clock:
    """Wall and CPU seconds (all this process's threads) since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": time.process_time() - self.cpu}


def child_ingest(n: int, folder: Path) -> dict:
    from benchmarks.rcv1_ingest import run_dul

    out = folder / "bow"
    clock = Clock()
    docs = run_dul(folder / "rcv1", out, full=False)
    times = clock.read()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert docs == n, (docs, n)
    return {**times, "note": f"{size / n:.0f} B/doc of Parquet out"}


def _images(n: int, data: Path):
    import numpy as np

    if (data / "train-images-idx3-ubyte.gz").exists():
        from components.data.idx import read_idx

        images = read_idx(data / "train-images-idx3-ubyte.gz")[:n]
        if len(images) == n:
            X = images.reshape(n, -1).astype(np.float32)  # in place below: no float64 temporary in the peak
            X /= 255
            return X, "fashion-mnist"
    rng = np.random.default_rng(0)
    return (rng.random((n, 784), dtype=np.float32) < 0.3).astype(np.float32), "random binary"


def child_pretrain(n: int, data: Path) -> dict:
    import torch

    from components.config import PretrainParams, as_dict
    from components.training.pretrain import build_layer, make_optimizer, train_epoch

    X, source = _images(n, data)
    params = {**as_dict(PretrainParams()), "hidden": SIZES_NET[1:], "visible_units": "bernoulli"}
    torch.manual_seed(0)
    rbm = build_layer(0, X.shape[1], params)
    optimizer = make_optimizer(rbm, 0, params)
    clock = Clock()
    stats = train_epoch(rbm, optimizer, torch.from_numpy(X), batch_size=BATCH, n_batches=n // BATCH, cd_k=1,
                        generator=torch.Generator().manual_seed(0))
    return {**clock.read(), "note": f"{source}, recon {stats['recon_error']:.1f}"}


def child_finetune(n: int, data: Path) -> dict:
    import torch

    from components.models.autoencoder import DeepAutoencoder
    from components.training.finetune import train_epoch

    X, source = _images(n, data)
    torch.manual_seed(0)
    net = DeepAutoencoder(SIZES_NET)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    clock = Clock()
    stats = train_epoch(net, optimizer, torch.from_numpy(X), batch_size=BATCH, n_batches=n // BATCH,
                        generator=torch.Generator().manual_seed(0), code_size=SIZES_NET[-1])
    return {**clock.read(), "note": f"{source}, loss {stats['train_loss']:.0f}"}


def child_index(n: int, folder: Path) -> dict:
    import numpy as np

    from benchmarks.hamming_speed import clustered_words
    from components.retrieval.hamming import (
        build_hash_index,
        hash_ball,
        index_stats,
        save_hash_index,
    )

    words = clustered_words(np.random.default_rng(0), n + N_QUERIES, 32, 4096, 0.05)
    codes, queries = words[:n], words[n:]
    clock = Clock()
    index = build_hash_index(codes, 32)
    built = clock.read()
    offsets, _, _ = hash_ball(index, queries, RADIUS)
    times = clock.read()
    save_hash_index(folder / "index", index)
    disk = index_stats(folder / "index")["bytes_per_item"]
    query_s = times["seconds"] - built["seconds"]
    return {**times,
            "note": f"build {built['seconds']:.2f} s, {1e3 * query_s / N_QUERIES:.2f} ms/query, "
                    f"{offsets[-1] / N_QUERIES:.0f} hits/query, {disk:.1f} B/code on disk"}


CHILDREN = {"ingest": child_ingest, "pretrain": child_pretrain, "finetune": child_finetune, "index": child_index}


# ---- parent -------------------------------------------------------------------


def measure(stage: str, n: int, folder: Path, data: Path, threads: int) -> dict:
    """Run one child; its work seconds and note, wall seconds and own peak RSS.

    A child's ``ru_maxrss`` starts from its parent's RSS at the fork (Linux
    keeps the larger across exec), so this process imports no numpy and
    generates nothing: its own ~20 MiB is the floor of every figure."""
    start = time.perf_counter()
    argv = ["--child", stage, str(n), str(folder), str(data), str(threads)]
    child = subprocess.Popen([sys.executable, __file__, *argv],
                             stdout=subprocess.PIPE, cwd=REPO)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{stage} at n = {n:,} failed with status {os.waitstatus_to_exitcode(status)}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    return {"stage": stage, "n": n, "seconds": result["seconds"], "cpu_s": result["cpu_seconds"], "wall_s": wall,
            "peak_mib": usage.ru_maxrss / 1024, "note": result["note"]}  # ru_maxrss: KiB on Linux


def run_stage(stage: str, sizes: list[int], data: Path, scratch: Path | None, threads: int) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            folder = Path(tmp)
            if stage == "ingest":  # in a child too: this process must stay small (see measure)
                (folder / "rcv1").mkdir()
                subprocess.run([sys.executable, __file__, "--generate", str(n), str(folder / "rcv1")],
                               check=True, cwd=REPO)
            row = measure(stage, n, folder, data, threads)
        row["cpu_us_per_item"] = 1e6 * row["cpu_s"] / n
        if rows:
            grown = row["peak_mib"] - rows[-1]["peak_mib"]
            row["bytes_per_item"] = grown * 2**20 / (n - rows[-1]["n"])
        else:
            row["bytes_per_item"] = float("nan")
        rows.append(row)
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


COLUMNS = ["stage", "n", "seconds", "cpu_s", "wall_s", "peak_mib", "cpu_us_per_item", "bytes_per_item", "note"]


def table(rows: list[dict]) -> str:
    lines = ["| stage | items | seconds | CPU s | child wall s | peak MiB | CPU µs/item | bytes/item (marginal) | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        marginal = "—" if r["bytes_per_item"] != r["bytes_per_item"] else f"{r['bytes_per_item']:,.0f}"
        lines.append(f"| {r['stage']} | {r['n']:,} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | {r['wall_s']:.1f}"
                     f" | {r['peak_mib']:,.0f} | {r['cpu_us_per_item']:.2f} | {marginal} | {r['note']} |")
    return "\n".join(lines)


def write_outputs(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == stage]
        for ax, key in zip(axes, ["cpu_s", "peak_mib"]):
            ax.loglog([r["n"] for r in mine], [r[key] for r in mine], marker="o", label=stage)
    for ax, label in zip(axes, ["CPU seconds (work)", "peak RSS (MiB)"]):
        ax.set_xlabel("items")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("dul stages: time and peak memory against data size")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/scaling",
                        help="writes OUT.csv and OUT.png (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="two small sizes per stage: a smoke run")
    parser.add_argument("--stages", default=",".join(SIZES), help="comma-separated, of: " + ", ".join(SIZES))
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="Fashion-MNIST IDX folder for pretrain/finetune (missing: random binary images)")
    parser.add_argument("--scratch", type=Path, help="folder for temporary inputs (default: the system's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the training children (default 1: on a shared machine two "
                             "threads can be 15x slower than one, measured here)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        from benchmarks.rcv1_ingest import generate

        generate(Path(args.generate[1]), int(args.generate[0]), seed=0)
        return 0
    if args.child:
        stage, n, folder, data, threads = args.child
        arg = Path(folder)
        if stage in ("pretrain", "finetune"):  # ingest and index do not import torch
            import torch

            torch.set_num_threads(int(threads))
            arg = Path(data)
        print(json.dumps(CHILDREN[stage](int(n), arg)))
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in SIZES]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {', '.join(SIZES)}")
    start = time.perf_counter()
    rows = []
    for stage in stages:
        rows += run_stage(stage, (QUICK if args.quick else SIZES)[stage], args.data, args.scratch, args.threads)
    write_outputs(rows, args.out)
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs, {args.threads} torch thread(s); total {time.perf_counter() - start:.0f} s; "
          f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
