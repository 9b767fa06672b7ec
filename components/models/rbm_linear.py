"""RBM with binary visible units and linear (Gaussian) hidden units.

The code layer of Hinton & Salakhutdinov (2006), "Reducing the
dimensionality of data with neural networks": "the hidden units are linear
with Gaussian noise of unit variance", so codes can use a continuous range
(their rbmhidlinear.m).

Energy:       E(v, h) = - v.b_v + sum_j (h_j - b_h_j)^2 / 2 - v W h
Conditionals: h | v ~ N(b_h + v W, I),  p(v_i = 1 | h) = sigmoid(b_v + W h)_i
Free energy:  F(v) = - v.b_v - sum_j [(b_h + v W)_j^2 - b_h_j^2] / 2   (+ a constant)
"""

from __future__ import annotations

import torch

from components.models.rbm import BernoulliRBM


class BernoulliLinearRBM(BernoulliRBM):
    hidden_type = "linear"

    def h_activation(self, x: torch.Tensor) -> torch.Tensor:
        """E[h | v] = b_h + v W: linear units."""
        return x

    def h_sample(self, mean: torch.Tensor) -> torch.Tensor:
        """h ~ N(mean, 1)."""
        return mean + torch.randn_like(mean)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        x = self.hidden_input(v)  # (B, H)
        return -(v @ self.b_v) - 0.5 * (x.pow(2) - self.b_h.pow(2)).sum(dim=1)
