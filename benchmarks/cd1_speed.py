"""One CD-1 epoch, 784 -> 1000 binary RBM, batch 100, over the 60,000
Fashion-MNIST training images: dul's trainer next to scikit-learn's
BernoulliRBM and a straightforward PyTorch loop, in one run.

Also measures this machine's fp32 matmul throughput (torch.mm, 2048^2) and
reports each contender's achieved GFLOP/s as a fraction of it. The FLOP count
is the algorithm's: five (B x D x H) products per batch (hidden means,
reconstruction, hidden means of the reconstruction, positive and negative
statistics), 10 * N * D * H in all.

    python benchmarks/cd1_speed.py [--data /usr/share/datasets/fashion-mnist] [--repeats 3]

Prints a table of median seconds per epoch (contenders run round-robin, so
noise on a shared machine hits all alike) and the reconstruction error after
the epoch for dul in float32 and with bfloat16 matrix products, and exits
non-zero if dul is not at least --target times faster than scikit-learn (the
Energy-based core issue asks for 2x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from components.data.idx import read_idx
from components.models.rbm import BernoulliRBM
from components.training.pretrain import (
    cpu_line,
    make_optimizer,
    native_bfloat16,
    train_epoch,
    train_stack_in_memory,
)

N_HIDDEN, BATCH = 1000, 100


def load(folder: Path, n: int) -> np.ndarray:
    images = read_idx(folder / "train-images-idx3-ubyte.gz")[:n]
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sklearn_epoch(X: np.ndarray, seed: int) -> float:
    from sklearn.neural_network import BernoulliRBM as SkRBM

    rbm = SkRBM(n_components=N_HIDDEN, learning_rate=0.1, batch_size=BATCH, n_iter=1, random_state=seed)
    return _timed(lambda: rbm.fit(X))


def naive_torch_epoch(X: np.ndarray, seed: int) -> float:
    """The loop a tutorial writes: plain tensors, CD-1 statistics, SGD without momentum."""
    torch.manual_seed(seed)
    data = torch.from_numpy(X)
    W, b_v, b_h = 0.1 * torch.randn(X.shape[1], N_HIDDEN), torch.zeros(X.shape[1]), torch.zeros(N_HIDDEN)

    def epoch():
        for start in range(0, len(data) - BATCH + 1, BATCH):
            v = data[start:start + BATCH]
            p_h = torch.sigmoid(v @ W + b_h)
            p_v = torch.sigmoid(torch.bernoulli(p_h) @ W.T + b_v)
            p_h2 = torch.sigmoid(p_v @ W + b_h)
            W.add_(0.1 * (v.T @ p_h - p_v.T @ p_h2) / BATCH)
            b_v.add_(0.1 * (v - p_v).mean(0))
            b_h.add_(0.1 * (p_h - p_h2).mean(0))

    return _timed(epoch)


def dul_epoch(X: np.ndarray, seed: int, dtype: torch.dtype = torch.float32, errors: list | None = None) -> float:
    """dul's pretraining epoch: momentum, weight cost, the paper's recipe.
    Appends the epoch's reconstruction error to ``errors`` (a quality check)."""
    params = {"hidden": [N_HIDDEN], "code_units": "binary", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
              "weight_decay": 0.0002, "momentum_initial": 0.5}
    torch.manual_seed(seed)
    rbm = BernoulliRBM(X.shape[1], N_HIDDEN)
    optimizer = make_optimizer(rbm, 0, params)
    data = torch.from_numpy(X)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    stats = train_epoch(rbm, optimizer, data, batch_size=BATCH, n_batches=len(X) // BATCH, cd_k=1,
                        generator=generator, dtype=dtype)
    seconds = time.perf_counter() - start
    if errors is not None:
        errors.append(stats["recon_error"])
    return seconds


def dul_loop_epoch(X: np.ndarray, seed: int) -> float:
    """The same epoch through the one training loop (``train_stack_in_memory``: a layer
    phase, seeded, finite-checked, its state saved after the epoch), as pretrain runs it."""
    params = {"hidden": [N_HIDDEN], "code_units": "binary", "init_std": 0.1, "lr": 0.1, "weight_decay": 0.0002,
              "momentum_initial": 0.5, "batch_size": BATCH}
    data = torch.from_numpy(X)
    return _timed(lambda: train_stack_in_memory(data, params, 1, seed=seed))



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--n", type=int, default=60000, help="training images (default: all 60,000)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per contender; the median is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--target", type=float, default=2.0, help="required speed-up over scikit-learn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    X = load(args.data, args.n)
    flops = 10 * len(X) * X.shape[1] * N_HIDDEN
    peak = matmul_gflops()
    errors = {"float32": [], "bfloat16": []}
    contenders = {
        "scikit-learn BernoulliRBM": sklearn_epoch,
        "straightforward PyTorch loop": naive_torch_epoch,
        "dul, float32": lambda X, seed: dul_epoch(X, seed, torch.float32, errors["float32"]),
        "dul through the loop, float32": dul_loop_epoch,
        **({"dul, bfloat16 products": lambda X, seed: dul_epoch(X, seed, torch.bfloat16, errors["bfloat16"])}
           if native_bfloat16(torch.device("cpu")) is None else {}),
    }
    times = {name: [] for name in contenders}
    for seed in range(args.repeats):  # round-robin, so machine noise hits every contender alike
        for name, epoch in contenders.items():
            times[name].append(epoch(X, seed))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(cpu_line())
    print(f"CD-1 epoch: {len(X):,} images, {X.shape[1]} -> {N_HIDDEN}, batch {BATCH}, {args.threads} threads; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s (torch.mm 2048^2); load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (a shared machine: compare ratios, not seconds)")
    print(f"{'contender':32s} {'median s':>9s} {'vs sklearn':>11s} {'GFLOP/s':>8s} {'of fp32 peak':>13s}")
    sklearn = medians["scikit-learn BernoulliRBM"]
    for name, seconds in medians.items():
        gflops = flops / seconds / 1e9
        print(f"{name:32s} {seconds:9.2f} {sklearn / seconds:10.2f}x {gflops:8.1f} {gflops / peak:13.0%}")
    for dtype, values in errors.items():
        if values:
            print(f"dul, {dtype}: reconstruction error after one epoch {statistics.median(values):.3f} per image")
    if "dul, bfloat16 products" not in medians:
        print(f"bfloat16 not timed: {native_bfloat16(torch.device('cpu'))} (pretrain refuses it here)")
    best = min(v for k, v in medians.items() if k.startswith("dul, "))
    speedup = sklearn / best
    print(f"dul (fastest setting) is {speedup:.2f}x faster than scikit-learn (target {args.target:.1f}x); "
          f"float32 alone: {sklearn / medians['dul, float32']:.2f}x")
    plain = medians["straightforward PyTorch loop"]
    print(f"the layer-wise recipe through the loop vs the plain loop: {plain / medians['dul through the loop, float32']:.2f}x "
          "(at least 1.0x wanted)")
    return 0 if speedup >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
