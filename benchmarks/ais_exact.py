"""AIS against exact enumeration on a 784-25 binary RBM trained on Fashion-MNIST.

The target: AIS log Z (Salakhutdinov & Murray, 2008: base-rate model,
14,500 inverse temperatures, 100 chains) within 0.1 nats of the exact log Z,
which for 25 hidden units is a sum over 2^25 hidden states.

Images are scaled to [0, 1] and binarized once by sampling (pixel on with
probability intensity / 255, fixed seed), as the paper does for MNIST, so
that log p(v) = -F(v) - log Z is a log-probability of the test images.

    nice -n 19 python benchmarks/ais_exact.py [--epochs 5] [--n-train 10000] [--chains 100] [--seed 0]

Exits 1 when |AIS - exact| > 0.1 nats.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from components.data.idx import read_idx
from components.evaluation.ais import (
    ais_log_partition,
    exact_log_partition,
    log_likelihood,
    pseudo_log_likelihood,
)
from components.models.rbm import BernoulliRBM

DATA = Path("/usr/share/datasets/fashion-mnist")
TARGET = 0.1  # nats
N_HIDDEN = 25
N_TEST = 1000


def load_binary(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """The first n images of an IDX file, binarized by sampling: (n, 784) of 0/1."""
    images = torch.tensor(read_idx(DATA / name)[:n], dtype=torch.float32).reshape(n, -1) / 255
    return torch.bernoulli(images, generator=generator)


def train_cd1(data: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int) -> BernoulliRBM:
    """CD-1 with plain SGD on the surrogate mean F(v_data) - mean F(v_recon)."""
    torch.manual_seed(seed)
    rbm = BernoulliRBM(data.shape[1], N_HIDDEN)
    optimizer = torch.optim.SGD(rbm.parameters(), lr=lr)
    for epoch in range(epochs):
        order = torch.randperm(len(data))
        error = 0.0
        for start in range(0, len(data), batch_size):
            v_pos = data[order[start:start + batch_size]]  # (B, D)
            v_neg = rbm.negative_phase(v_pos)
            optimizer.zero_grad()
            rbm(v_pos, v_neg).backward()
            optimizer.step()
            error += ((v_pos - v_neg) ** 2).sum().item()
        print(f"epoch {epoch + 1}: reconstruction error {error / len(data):.2f} per image")
    return rbm


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    return function(*args, **kwargs), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a busy machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(args.seed)
    train = load_binary("train-images-idx3-ubyte.gz", args.n_train, generator)
    test = load_binary("t10k-images-idx3-ubyte.gz", N_TEST, generator)
    rbm, train_s = timed(train_cd1, train, epochs=args.epochs, lr=args.lr, batch_size=100, seed=args.seed)
    exact, exact_s = timed(exact_log_partition, rbm)
    (ais, lower, upper), ais_s = timed(ais_log_partition, rbm, train, n_chains=args.chains, seed=args.seed)
    difference = ais - exact

    rows = [
        ("training (CD-1)", "", f"{train_s:.1f} s"),
        (f"exact log Z (2^{N_HIDDEN} hidden states)", f"{exact:.4f}", f"{exact_s:.1f} s"),
        (f"AIS log Z (14,500 betas, {args.chains} chains)", f"{ais:.4f}", f"{ais_s:.1f} s"),
        ("AIS interval (log(mean -/+ 3 sem of w))", f"[{lower:.4f}, {upper:.4f}]", ""),
        ("AIS - exact", f"{difference:+.4f}", f"target |.| <= {TARGET}"),
        (f"test log-likelihood, exact Z ({N_TEST} images)", f"{log_likelihood(rbm, test, exact):.4f}", "nats"),
        (f"test log-likelihood, AIS Z ({N_TEST} images)", f"{log_likelihood(rbm, test, ais):.4f}", "nats"),
        (f"test pseudo-log-likelihood ({N_TEST} images)", f"{pseudo_log_likelihood(rbm, test):.4f}", "nats"),
    ]
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>20}  {note}")
    if abs(difference) > TARGET:
        print(f"FAIL: AIS is {abs(difference):.4f} nats from the exact log Z (target {TARGET})")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
