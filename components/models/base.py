"""Shared protocols that keep trainers generic across the model families.

Energy models (RBMs) expose ``free_energy``, ``sample_h``, ``sample_v``,
``gibbs``, the conditional means ``h_mean``/``v_mean``, ``cd_gradients``,
``check_data`` and their unit types; latent models (autoencoders, VAEs)
expose ``encode``, ``decode`` and ``loss``; anything that feeds retrieval
exposes ``codes``. A ``loss`` returns a dict that holds ``"loss"`` plus
whatever should be logged. The greedy layer-wise trainer drives RBMs and
autoencoder layers alike through ``layer_step`` (``LayerModel``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


class TiedLayer(nn.Module):
    """The parameters every greedy layer has (RBM or autoencoder layer): weights
    W (D, H) drawn as init_std * N(0, 1), visible biases b_v (D,) and hidden
    biases b_h (H,), both zero, so a stack of either kind unrolls alike."""

    def __init__(self, n_visible: int, n_hidden: int, init_std: float):
        super().__init__()
        self.W = nn.Parameter(init_std * torch.randn(n_visible, n_hidden))  # (D, H)
        self.b_v = nn.Parameter(torch.zeros(n_visible))  # (D,)
        self.b_h = nn.Parameter(torch.zeros(n_hidden))  # (H,)

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]


@runtime_checkable
class EnergyModel(Protocol):
    visible_type: str  # "bernoulli", "gaussian", "softmax" or "poisson"
    hidden_type: str  # "binary" or "linear"

    def free_energy(self, v: torch.Tensor) -> torch.Tensor: ...  # (B, D) -> (B,)

    def sample_h(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...  # (mean, sample)

    def sample_v(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor: ...

    def h_mean(self, v: torch.Tensor) -> torch.Tensor: ...  # E[h | v], (B, H)

    def v_mean(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor: ...  # E[v | h]

    def cd_gradients(self, v_pos: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None,
                     chain: torch.Tensor | None = None, *,
                     into: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                     beta: float = 0.0) -> torch.Tensor: ...  # sets .grad (or into = beta * into + grad); (B, D)

    def check_data(self, v: torch.Tensor, layer: str | None = None) -> None: ...  # DulError if v is unfit


@runtime_checkable
class LayerModel(Protocol):
    """One layer of a greedy layer-wise stack: an RBM or an autoencoder layer."""

    def layer_step(self, v: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor: ...

    def h_mean(self, v: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LatentModel(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...
