"""Binarized images: the stated, seeded protocol the zoo's likelihoods are measured on.

Published likelihoods on binarized MNIST differ by about 2 nats between
protocols (Burda et al. 2016, table 1: VAE 86.76 with dynamic, 88.71 with
fixed binarization), so every report names the one it used:

- ``threshold``: x > 0.5, deterministic;
- ``fixed``: one Bernoulli draw per pixel, b = [u < x] with u ~ U(0, 1) drawn
  once from ``seed`` (Larochelle & Murray 2011's binarized MNIST is such a
  draw), the same for every family and every epoch;
- ``dynamic``: the training split is drawn anew in every epoch (per batch,
  from the loop's per-epoch seed); validation and test keep the fixed draw,
  so test figures are on one fixed set.

The fixed draw of a split depends only on (seed, split, row): a worker's
shard, a resumed run and another family see the same bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from components.data.ingest import read_split
from components.errors import DulError

PROTOCOLS = ("threshold", "fixed", "dynamic")
SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}


def binarize(X: np.ndarray, protocol: str, seed: int, split: str) -> np.ndarray:
    """(N, D) intensities in [0, 1] -> (N, D) float32 in {0, 1}: the split as the
    protocol fixes it (``dynamic``: the fixed draw, which training replaces per epoch)."""
    if protocol not in PROTOCOLS:
        raise DulError(f"binarization '{protocol}': choose one of {', '.join(PROTOCOLS)}")
    if X.size and (X.min() < 0 or X.max() > 1):
        raise DulError(f"binarization needs intensities in [0, 1], got [{X.min():.3g}, {X.max():.3g}]; "
                       "the zoo's likelihood families model images")
    if protocol == "threshold":
        return (X > 0.5).astype(np.float32)
    rng = np.random.default_rng([seed, SPLIT_CODES[split]])
    return (rng.random(X.shape, dtype=np.float32) < X).astype(np.float32)


def redraw(x: torch.Tensor) -> torch.Tensor:
    """A fresh draw of a batch of intensities (B, D) -> {0, 1} (B, D), from the global
    torch generator (dynamic binarization; the loop seeds it per epoch and worker)."""
    return (torch.rand_like(x) < x).to(x.dtype)


def family_inputs(model) -> str:
    """What a family models: "binary" images (the default), word "counts" or "real" values."""
    return getattr(model, "inputs", "binary")


def split_inputs(data_dir: str | Path, split: str, inputs: str, zoo, *, raw: bool = False) -> np.ndarray:
    """A split as a family sees it: binarized by the zoo's protocol, or as stored
    (counts, real values); ``raw``: the intensities themselves (dynamic
    binarization's training split)."""
    X, _ = read_split(data_dir, split)
    if inputs in ("counts", "real") or raw:
        return X
    return binarize(X, zoo.binarization, zoo.binarization_seed, split)
