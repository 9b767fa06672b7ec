"""Sparse coding on Fashion-MNIST: dul's SparseCoding next to scikit-learn's
MiniBatchDictionaryLearning, the same objective, batches and passes, in one run.

Both minimise, per image x (784 intensities in [0, 1]) and over unit-norm atoms,

    0.5 ||x - D a||^2 + lam ||a||_1

(scikit-learn's objective is 0.5 ||X - U V||_F^2 + alpha ||U||_{1,1} with
||V_k|| <= 1: alpha = lam, rows of V the atoms). dul trains through its
``fit_inputs`` (its start: K training items drawn at random) and
``training_step`` (FISTA codes, then Mairal et al.'s block-coordinate
dictionary step), both timed; scikit-learn with ``fit_algorithm="cd"`` (coordinate-descent
Lasso codes; --fit-algorithm lars for LARS; the same dictionary step and
forgetting, its atoms in the ball ||d|| <= 1 and its start the data's SVD), ``shuffle=False`` so
both see the batches in the same order, and no early stopping. Each learned
dictionary is then measured on held-out images (the first --test of the
t10k split) with the SAME solver, FISTA in float64 for --eval-iterations
steps, its accuracy certified by the Lasso's duality gap (printed).

    python benchmarks/sparse_coding.py [--data /usr/share/datasets/fashion-mnist] [--n 60000]
        [--atoms 64] [--lam 0.1] [--epochs 1] [--threads 2] [--repeats 3]

Prints the CPU, then per contender the median training seconds (contenders run
round-robin, so noise on a shared machine hits both alike), the speed ratio,
and the median held-out objective, non-zero codes and relative duality gap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from components.data.idx import read_idx
from components.models.nn.lasso import fista, lasso_objective
from components.models.sparse_coding import SparseCoding
from components.training.pretrain import cpu_line


def load(folder: Path, name: str, n: int) -> np.ndarray:
    """The first n images of an IDX file as rows (n, 784) of float32 intensities in [0, 1]."""
    images = read_idx(folder / name)[:n]
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)


def dul_dictionary(X: np.ndarray, args, seed: int) -> tuple[np.ndarray, float]:
    """dul's dictionary (N, K) after args.epochs passes of training_step over batches in order; seconds."""
    torch.manual_seed(seed)
    model = SparseCoding(X.shape[1], args.atoms, args.lam, args.lasso_iterations)
    data = torch.from_numpy(X)
    start = time.perf_counter()
    model.fit_inputs(data)  # as the loop does: the starting dictionary is drawn from the training items
    for _ in range(args.epochs):
        for first in range(0, len(data) - args.batch + 1, args.batch):
            model.training_step(data[first:first + args.batch], [])
    return model.D.detach().numpy().copy(), time.perf_counter() - start


def sklearn_dictionary(X: np.ndarray, args, seed: int) -> tuple[np.ndarray, float]:
    """scikit-learn's dictionary (N, K), the same batches and passes (no shuffling, no early stop); seconds."""
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    learner = MiniBatchDictionaryLearning(n_components=args.atoms, alpha=args.lam, max_iter=args.epochs,
                                          batch_size=args.batch, shuffle=False, fit_algorithm=args.fit_algorithm,
                                          transform_algorithm="lasso_cd", transform_alpha=args.lam,
                                          random_state=seed, tol=0.0, max_no_improvement=None)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # its batch Lasso warns when it stops at max_iter
        warnings.simplefilter("always", ConvergenceWarning)
        learner.fit(X[:len(X) // args.batch * args.batch])
    args.unconverged.append(sum(issubclass(w.category, ConvergenceWarning) for w in caught))
    return learner.components_.T.astype(np.float32), time.perf_counter() - start


def held_out_figures(D: np.ndarray, X: np.ndarray, lam: float, iterations: int) -> dict[str, float]:
    """The mean objective per held-out image with codes from float64 FISTA, the mean
    non-zero codes per image, and the mean relative duality gap (P - dual) / P of the codes:
    the dual point nu = r min(1, lam / ||D^T r||_inf), r = x - D a, dual 0.5 ||x||^2 - 0.5 ||x - nu||^2."""
    D64, x = torch.from_numpy(D).double(), torch.from_numpy(X).double()
    # scikit-learn keeps atoms in the ball (norm <= 1): scaled to the sphere, codes need less l1 for the
    # same reconstruction, so this can only lower its objective
    D64 = D64 / D64.norm(dim=0).clamp(min=1e-12)
    a = fista(x, D64, lam, iterations)
    primal = lasso_objective(x, D64, a, lam)
    r = x - a @ D64.T
    nu = r * (lam / (r @ D64).abs().max(dim=1).values).clamp(max=1)[:, None]
    dual = 0.5 * (x * x).sum(dim=1) - 0.5 * ((x - nu) ** 2).sum(dim=1)
    return {"objective": float(primal.mean()), "nonzero": float((a != 0).sum(dim=1).double().mean()),
            "gap": float(((primal - dual) / primal).mean()),
            "norms": float(torch.from_numpy(D).double().norm(dim=0).min())}



def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--n", type=int, default=60000, help="training images (default: all 60,000)")
    parser.add_argument("--test", type=int, default=1000, help="held-out images, from the t10k split")
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--lam", type=float, default=0.1, help="lambda (scikit-learn's alpha)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training images")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--fit-algorithm", choices=("cd", "lars"), default="cd", help="scikit-learn's batch Lasso")
    parser.add_argument("--lasso-iterations", type=int, default=100, help="dul's FISTA steps per batch")
    parser.add_argument("--eval-iterations", type=int, default=2000, help="FISTA steps of the held-out measure")
    parser.add_argument("--repeats", type=int, default=3, help="trainings per contender (seeds 0, 1, ...)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def main() -> int:
    # scikit-learn's own dependency: its BLAS gets --threads too
    from threadpoolctl import threadpool_limits

    args = arguments()
    args.unconverged = []  # scikit-learn's ConvergenceWarnings per fit
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    X = load(args.data, "train-images-idx3-ubyte.gz", args.n)
    X_test = load(args.data, "t10k-images-idx3-ubyte.gz", args.test)
    contenders = {"dul SparseCoding": dul_dictionary, "scikit-learn MiniBatchDictionaryLearning": sklearn_dictionary}
    times = {name: [] for name in contenders}
    figures = {name: [] for name in contenders}
    with threadpool_limits(limits=args.threads):
        for seed in range(args.repeats):  # round-robin, so machine noise hits both alike
            for name, learn in contenders.items():
                D, seconds = learn(X, args, seed)
                times[name].append(seconds)
                figures[name].append(held_out_figures(D, X_test, args.lam, args.eval_iterations))
    print(cpu_line())
    print(f"sparse coding: {len(X):,} training images, {len(X_test):,} held out, 784 -> {args.atoms} atoms, "
          f"lam {args.lam}, batch {args.batch}, {args.epochs} epoch(s), {args.repeats} repeat(s), "
          f"{args.threads} thread(s); load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'contender':42s} {'median s':>9s} {'objective':>10s} {'nonzero':>8s} {'rel. gap':>9s} {'min |d|':>8s}")
    for name in contenders:
        median = {key: statistics.median(f[key] for f in figures[name]) for key in figures[name][0]}
        print(f"{name:42s} {statistics.median(times[name]):9.2f} {median['objective']:10.4f} "
              f"{median['nonzero']:8.1f} {median['gap']:9.1e} {median['norms']:8.3f}")
    print(f"scikit-learn ({args.fit_algorithm}): median {statistics.median(args.unconverged):.0f} batch Lasso solves per "
          f"fit stopped at transform_max_iter before its tolerance (ConvergenceWarning)")
    dul, sklearn = (statistics.median(times[name]) for name in contenders)
    objective = {name: statistics.median(f["objective"] for f in figures[name]) for name in contenders}
    print(f"training time, scikit-learn / dul: {sklearn / dul:.2f}x; held-out objective, dul / scikit-learn: "
          f"{objective['dul SparseCoding'] / objective['scikit-learn MiniBatchDictionaryLearning']:.4f} "
          "(below 1: dul's dictionary codes the held-out images better)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
