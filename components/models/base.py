"""Shared protocols that keep trainers generic across the model families.

Energy models (RBMs) expose ``free_energy``, ``sample_h``, ``sample_v`` and
``gibbs``; latent models (autoencoders, VAEs) expose ``encode``, ``decode``
and ``loss``; anything that feeds retrieval exposes ``codes``. A ``loss``
returns a dict that holds ``"loss"`` plus whatever should be logged.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class EnergyModel(Protocol):
    def free_energy(self, v: torch.Tensor) -> torch.Tensor: ...  # (B, D) -> (B,)

    def sample_h(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...  # (mean, sample)

    def sample_v(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor: ...


@runtime_checkable
class LatentModel(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...
