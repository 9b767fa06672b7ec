"""Bernoulli-Bernoulli restricted Boltzmann machine.

Smolensky (1986); trained with contrastive divergence, Hinton (2002),
"Training products of experts by minimizing contrastive divergence". The
layer type of the deep belief nets in Hinton & Salakhutdinov (2006).

Energy:       E(v, h) = - v.b_v - h.b_h - v W h
Conditionals: p(h_j = 1 | v) = sigmoid(b_h + v W)_j,  p(v_i = 1 | h) = sigmoid(b_v + W h)_i
Free energy:  F(v) = - log sum_h exp(-E(v, h)) = - v.b_v - sum_j softplus(b_h + v W)_j
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError


class BernoulliRBM(nn.Module):
    """Binary visible and binary hidden units.

    Visible data may be probabilities in [0, 1] (grey levels), as in the
    paper: they enter the statistics as expectations.
    """

    hidden_type = "binary"

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.1):
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise DulError(f"an RBM needs at least one unit per layer, got {n_visible}x{n_hidden}")
        self.W = nn.Parameter(init_std * torch.randn(n_visible, n_hidden))  # (D, H)
        self.b_v = nn.Parameter(torch.zeros(n_visible))  # (D,)
        self.b_h = nn.Parameter(torch.zeros(n_hidden))  # (H,)

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.W + self.b_h  # (B, H)

    def h_mean(self, v: torch.Tensor) -> torch.Tensor:
        """E[h | v] = sigmoid(b_h + v W), shape (B, H)."""
        return torch.sigmoid(self.hidden_input(v))

    def v_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h] = sigmoid(b_v + h W^T), shape (B, D)."""
        return torch.sigmoid(h @ self.W.T + self.b_v)

    def sample_h(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.h_mean(v)
        return mean, torch.bernoulli(mean)

    def sample_v(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.v_mean(h)
        return mean, torch.bernoulli(mean)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = - v.b_v - sum_j softplus(b_h + v W)_j, shape (B,)."""
        return -(v @ self.b_v) - F.softplus(self.hidden_input(v)).sum(dim=1)

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor:
        """k steps v -> h -> v of block Gibbs sampling; returns the visible means."""
        v_mean = v
        for _ in range(k):
            _, h = self.sample_h(v)
            v_mean, v = self.sample_v(h)
        return v_mean

    def negative_phase(self, v: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The CD-k negative visible data, as in Hinton's rbm.m.

        Hidden states are sampled, reconstructions kept as probabilities
        (less sampling noise in the statistics; the paper's choice).
        """
        with torch.no_grad():
            v_neg = v
            for _ in range(k):
                _, h = self.sample_h(v_neg)
                v_neg = self.v_mean(h)
        return v_neg

    def forward(self, v_pos: torch.Tensor, v_neg: torch.Tensor) -> torch.Tensor:
        """The CD surrogate objective mean F(v_pos) - mean F(v_neg).

        Its gradient is the contrastive-divergence update
        <v h>_data - <v h>_recon for W (and likewise for the biases), so
        torch.optim applies the paper's update rule and DDP all-reduces the
        CD statistics across data-parallel workers.
        """
        return self.free_energy(v_pos).mean() - self.free_energy(v_neg).mean()


def check_visible(v: torch.Tensor, layer: str = "BernoulliRBM") -> None:
    """Bernoulli visible units model data in [0, 1]; anything else is an input error."""
    if v.numel() and (not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1):
        raise DulError(
            f"{layer}: visible data must be finite and in [0, 1] "
            f"(got min {v.min().item():.3g}, max {v.max().item():.3g}); scale the data first"
        )
