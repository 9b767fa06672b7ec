"""Replicated softmax: an RBM for bags of words.

Salakhutdinov & Hinton (2009), "Replicated softmax: an undirected topic
model" (NIPS). A document of D words is D softmax visible units over a
vocabulary of K words that share their weights; only the word counts
v (B, K) matter, and the hidden biases are scaled by the length D = sum_k v_k,
so that every document length gets its own RBM from the same parameters.

Energy:       E(v, h) = - v.b_v - D h.b_h - v W h
Conditionals: p(h_j = 1 | v) = sigmoid(D b_h + v W)_j,
              v | h ~ Multinomial(D, softmax(b_v + W h)),  E[v | h] = D softmax(b_v + W h)
Free energy:  F(v) = - v.b_v - sum_j softplus(D b_h + v W)_j

(the paper's, over the ordered words: the multinomial coefficient of the
counts does not depend on the parameters). dF/db_h = -D E[h | v], which is
the one change CD needs besides the unit types (``b_h_statistic``).

Empty documents (D = 0) are allowed: their hidden input is 0, their
reconstruction is 0, and they add nothing to any gradient (they still count
in the batch size the statistics are averaged over).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from components.errors import DulError
from components.models.rbm import BernoulliRBM


class WordCountRBM(BernoulliRBM):
    """What the RBMs on word counts share: the document lengths as the rows'
    context, and count checks on the data."""

    def context(self, v: torch.Tensor) -> torch.Tensor:
        """Document lengths D = sum_k v_k, (B, 1)."""
        return v.sum(dim=1, keepdim=True)

    @classmethod
    def check_data(cls, v: torch.Tensor, layer: str | None = None) -> None:
        check_counts(v, layer or cls.label)


class ReplicatedSoftmaxRBM(WordCountRBM):
    visible_type = "softmax"
    label = "replicated softmax"

    def hidden_bias(self, b_h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """D b_h, (B, H): the hidden biases scale with the document length."""
        return _lengths(context, self.label).to(b_h.dtype) * b_h

    def b_h_statistic(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """-dF/db_h = D E[h | v], (B, H)."""
        return context * h

    def v_activation(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """E[v | h] = D softmax(b_v + W h), (B, K): rows sum to D."""
        return _lengths(context, self.label) * torch.softmax(x, dim=1)

    def v_sample(self, mean: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """D draws from softmax(b_v + W h) per document: counts (B, K) that sum to D."""
        return sample_multinomial(mean, _lengths(context, self.label))

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = - v.b_v - sum_j softplus(D b_h + v W)_j, shape (B,)."""
        return -(v @ self.b_v) - F.softplus(self.hidden_input(v)).sum(dim=1)


def _lengths(context: torch.Tensor | None, label: str) -> torch.Tensor:
    if context is None:
        raise DulError(f"{label}: the visible units need the document lengths; pass context=rbm.context(v) "
                       "(the word counts' row sums, (B, 1))")
    return context


def sample_multinomial(mean: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Counts (B, K) with row b ~ Multinomial(lengths[b], mean[b] / lengths[b]).

    torch.multinomial takes one number of trials for all rows, so every row
    draws max(lengths) words and keeps its first lengths[b]."""
    n = lengths.reshape(-1).round().long()  # (B,)
    counts = torch.zeros_like(mean)
    most = int(n.max()) if n.numel() else 0
    if most == 0:
        return counts
    weights = torch.where(n[:, None] > 0, mean.clamp_min(0), torch.ones_like(mean))  # empty rows: any valid weights
    words = torch.multinomial(weights, most, replacement=True)  # (B, most)
    kept = (torch.arange(most, device=mean.device) < n[:, None]).to(mean.dtype)  # (B, most)
    return counts.scatter_add_(1, words, kept)


def check_counts(v: torch.Tensor, layer: str) -> None:
    """Word counts: a (B, K) tensor of finite, non-negative integers."""
    if v.dim() != 2:
        raise DulError(f"{layer}: word counts must be a (documents, vocabulary) matrix, got shape {tuple(v.shape)}")
    bad = ~torch.isfinite(v) | (v < 0) | (v != v.round())
    if bad.any():
        row, column = bad.nonzero()[0].tolist()
        raise DulError(f"{layer}: word counts must be non-negative integers; found {v[row, column].item():g} "
                       f"at row {row}, column {column}; pass raw counts per document, not normalised "
                       "or log-scaled frequencies")
