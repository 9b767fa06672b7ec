"""How sparse a model's codes are: a figure and one number per model.

Sparsity is Hoyer's (2004, "Non-negative matrix factorization with
sparseness constraints", JMLR 5) per item, for a code a of n units:

    sparsity(a) = (sqrt(n) - |a|_1 / |a|_2) / (sqrt(n) - 1)

1 when one unit carries the whole code, 0 when every unit has the same
magnitude; it does not change with the code's scale, so codes in different
units (probabilities, Lasso coefficients, Gaussian means) are comparable.
An all-zero code counts as 1 (nothing is active).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components.errors import DulError  # noqa: E402
from components.io import atomic_path  # noqa: E402


def hoyer_sparsity(codes: np.ndarray) -> np.ndarray:
    """(N, n) -> (N,): each item's Hoyer sparsity in [0, 1] (see the module docstring)."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[1] < 2:
        raise DulError(f"Hoyer sparsity needs codes of shape (N, n >= 2), got {codes.shape}")
    n = codes.shape[1]
    l1, l2 = np.abs(codes).sum(axis=1), np.sqrt((codes ** 2).sum(axis=1))
    ratio = np.divide(l1, l2, out=np.ones_like(l1), where=l2 > 0)
    return (math.sqrt(n) - ratio) / (math.sqrt(n) - 1)


def codes_figure(path: str | Path, codes: np.ndarray, title: str) -> dict[str, float]:
    """A PNG of ``codes`` (N, n), written atomically: the histogram of their values (log
    counts) and of the items' Hoyer sparsity. Returns the figures it states: the mean
    sparsity and the fraction of values exactly zero."""
    codes = np.asarray(codes, dtype=np.float64)
    sparsity = hoyer_sparsity(codes)
    figures = {"code_sparsity": float(sparsity.mean()), "code_zero_fraction": float((codes == 0).mean())}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.hist(codes.ravel(), bins=60, color="tab:blue", log=True)
    left.set(title=f"code values ({codes.shape[1]} units x {len(codes)} items); "
                   f"{figures['code_zero_fraction']:.1%} exactly 0", xlabel="value", ylabel="count (log)")
    right.hist(sparsity, bins=40, range=(0, 1), color="tab:orange")
    right.axvline(figures["code_sparsity"], color="black", linestyle="--", linewidth=1)
    right.set(title=f"Hoyer sparsity per item: mean {figures['code_sparsity']:.3f}", xlabel="sparsity (0 dense, 1 one unit)",
              ylabel="items")
    left.title.set_fontsize(9)
    right.title.set_fontsize(9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return figures
