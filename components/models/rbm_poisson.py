"""Constrained Poisson RBM: the word-count layer of semantic hashing.

Salakhutdinov & Hinton (2009), "Semantic hashing", International Journal
of Approximate Reasoning 50: the first layer of the 2000-500-500-128 net.
Visible units are word counts v (B, K) of a document of N = sum_i v_i
words, hidden units are binary, and the Poisson rates are constrained to
sum to N, which keeps learning stable for documents of any length:

Conditionals: p(v_i = n | h) = Ps(n, N exp(b_v_i + (W h)_i) / sum_k exp(b_v_k + (W h)_k)),
              so E[v | h] = N softmax(b_v + W h);
              p(h_j = 1 | v) = sigmoid(b_h + v W)_j   (b_h *not* scaled by N,
              unlike replicated softmax)

Free energy. These conditionals have no joint distribution over all count
vectors (the normaliser of the rates depends on h, and that term is not
linear in h). But independent Poissons conditioned on their total are
multinomial: given sum_i v_i = N the constrained rates give exactly
v | h, N ~ Multinomial(N, softmax(b_v + W h)), the conditional of the joint

    p(v, h | N) ∝ exp(-E(v, h)),  E(v, h) = - v.b_v + sum_i log v_i! - h.b_h - v W h,

over documents of length N, whose free energy (up to a constant of N) is

    F(v) = - v.b_v + sum_i log v_i! - sum_j softplus(b_h + v W)_j,

the free energy of the unconstrained Poisson RBM too (the same energy over
all count vectors). ``free_energy`` returns it. The sum of log v_i! has no
parameters, so CD's statistics are the usual data minus reconstruction
(dF/dW = -v^T E[h|v], dF/db_v = -v, dF/db_h = -E[h|v]): exactly the
gradient of ``forward``. CD reconstructions are the Poisson rates (means).

The length N of each row comes from the data and stays fixed along a CD
chain. Persistent particles are Poisson draws whose totals wander (mean N,
variance N per step), and each particle uses its own current total. Empty
documents (N = 0) are allowed: they have zero rates and add nothing to any
gradient (they still count in the batch size).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from components.models.rbm_softmax import WordCountRBM, _lengths


class ConstrainedPoissonRBM(WordCountRBM):
    visible_type = "poisson"
    label = "constrained Poisson RBM"

    def v_activation(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The Poisson rates E[v | h] = N softmax(b_v + W h), (B, K): rows sum to N."""
        return _lengths(context, self.label) * torch.softmax(x, dim=1)

    def v_sample(self, mean: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """v_i ~ Poisson(mean_i), independently."""
        return torch.poisson(mean)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = - v.b_v + sum_i log v_i! - sum_j softplus(b_h + v W)_j, shape (B,)."""
        return -(v @ self.b_v) + torch.lgamma(v + 1).sum(dim=1) - F.softplus(self.hidden_input(v)).sum(dim=1)
