"""Gaussian-Bernoulli restricted Boltzmann machine: real-valued visible units
of unit variance, binary hidden units.

Hinton & Salakhutdinov (2006), "Reducing the dimensionality of data with
neural networks" (their face patches); Hinton (2010), "A practical guide to
training restricted Boltzmann machines" §13.2; Krizhevsky (2009), "Learning
multiple layers of features from tiny images" (CIFAR-10).

The variance of every visible unit is fixed at 1, so the data must be
standardised per feature first (zero mean, unit variance over the training
set), as the guide advises: learning the variances is unstable, and with
sigma = 1 the energy stays simple.

Energy:       E(v, h) = sum_i (v_i - b_v_i)^2 / 2 - h.b_h - v W h
Conditionals: p(h_j = 1 | v) = sigmoid(b_h + v W)_j,  v | h ~ N(b_v + W h, I)
Free energy:  F(v) = sum_i (v_i - b_v_i)^2 / 2 - sum_j softplus(b_h + v W)_j

CD uses mean-field reconstructions, v_neg = b_v + W h (no Gaussian noise),
as is usual: the noise only adds variance to the statistics. dF/db_v =
-(v - b_v), so the b_v gradient is still mean(v_neg - v_pos) and CD needs no
change beyond the visible activation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from components.errors import DulError
from components.models.rbm import BernoulliRBM


class GaussianBernoulliRBM(BernoulliRBM):
    visible_type = "gaussian"
    label = "Gaussian-Bernoulli RBM"

    def v_activation(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """E[v | h] = b_v + h W^T: linear visible units, (B, D)."""
        return x

    def v_sample(self, mean: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """v ~ N(mean, I)."""
        return mean + torch.randn_like(mean)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = sum_i (v_i - b_v_i)^2 / 2 - sum_j softplus(b_h + v W)_j, shape (B,)."""
        return 0.5 * (v - self.b_v).pow(2).sum(dim=1) - F.softplus(self.hidden_input(v)).sum(dim=1)

    @classmethod
    def check_data(cls, v: torch.Tensor, layer: str | None = None) -> None:
        """Real-valued visibles take any finite value (standardised per feature)."""
        finite = torch.isfinite(v)
        if not finite.all():
            row, column = (~finite).nonzero()[0].tolist()
            raise DulError(f"{layer or cls.label}: visible data must be finite; found {v[row, column].item()} "
                           f"at row {row}, column {column}; remove or impute missing values and standardise "
                           "each feature to zero mean and unit variance")
