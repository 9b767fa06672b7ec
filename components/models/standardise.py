"""Per-feature standardisation in front of Gaussian (real-valued) visible units.

A Gaussian-Bernoulli RBM fixes every visible unit's variance at 1 (Hinton,
"A practical guide to training RBMs" §13.2), so its data must be
standardised per feature over the training set: z = (x - mean) / std. The
pipeline does it for the user: ``feature_statistics`` computes mean and std
in one pass over the training split (in chunks, so a streamed split works
too), the pretrain stage stores them in models/stack.pt, and the unrolled
``DeepAutoencoder`` carries them as a ``Standardise`` module, so its
``encode`` takes raw inputs and its ``reconstruct`` returns the data's own
units. A feature that is constant over the training set (std 0, e.g. an
image's always-black border pixel) gets std 1: it maps to 0 everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from components.errors import DulError

CONSTANT = 1e-6  # a std at or below CONSTANT * (1 + |mean|) is rounding noise: the feature is constant


class Standardise(nn.Module):
    """z = (x - mean) / std per feature; buffers ``mean`` and ``std`` (D,), identity until set."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))  # (D,)
        self.register_buffer("std", torch.ones(n_features))  # (D,)

    @classmethod
    def from_statistics(cls, statistics: dict) -> Standardise:
        """From ``{"mean": (D,), "std": (D,)}``, as ``feature_statistics`` returns and models/stack.pt holds."""
        mean, std = (torch.as_tensor(statistics[k], dtype=torch.float32) for k in ("mean", "std"))
        if mean.shape != std.shape or mean.ndim != 1 or not bool((std > 0).all()):
            raise DulError(f"standardisation statistics need a mean and a positive std per feature, got shapes "
                           f"{tuple(mean.shape)} and {tuple(std.shape)}; run pretrain again")
        module = cls(len(mean))
        module.mean.copy_(mean)
        module.std.copy_(std)
        return module

    def statistics(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.detach().cpu().clone(), "std": self.std.detach().cpu().clone()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) data -> (B, D) standardised."""
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) standardised -> (B, D) in the data's units."""
        return z * self.std + self.mean


def feature_statistics(chunks: Iterable[torch.Tensor], what: str = "the training split") -> dict[str, torch.Tensor]:
    """Mean and std (population, float32 (D,)) of each column over all rows of
    ``chunks`` (each (n, D)), in one pass: per-chunk means and sums of squared
    deviations in float64, merged as Chan et al. (1979) do (no cancellation,
    unlike sum(x^2) - n mean^2). A non-finite value is an error
    naming its row and column; a constant column gets std 1."""
    count, mean, m2, row = 0, None, None, 0
    for chunk in chunks:
        x = chunk.detach().to("cpu", torch.float64)  # (n, D)
        _check_finite(x, row, what)
        n = len(x)
        if not n:
            continue
        chunk_mean = x.mean(dim=0)
        chunk_m2 = (x - chunk_mean).pow(2).sum(dim=0)
        if mean is None:
            count, mean, m2 = n, chunk_mean, chunk_m2
        else:
            delta, total = chunk_mean - mean, count + n
            mean = mean + delta * (n / total)
            m2 = m2 + chunk_m2 + delta.pow(2) * (count * n / total)
            count = total
        row += n
    if not count:
        raise DulError(f"{what} has no rows to standardise with; run ingest again")
    std = (m2 / count).sqrt()
    std = torch.where(std > CONSTANT * (1 + mean.abs()), std, torch.ones_like(std))
    return {"mean": mean.float(), "std": std.float()}


def _check_finite(x: torch.Tensor, first_row: int, what: str) -> None:
    finite = torch.isfinite(x)
    if not finite.all():
        row, column = (~finite).nonzero()[0].tolist()
        raise DulError(f"{what} has a non-finite value ({x[row, column].item()}) at row {first_row + row}, "
                       f"column {column}: Gaussian visible units need finite real values; remove or impute "
                       "it and run ingest again")
