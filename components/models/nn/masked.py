"""Masked linear layers: the connectivity of autoregressive networks.

A ``MaskedLinear`` computes y = x (W * M)^T + b, with W (out, in) and a fixed
binary mask M (out, in) held as a buffer: M[k, j] = 0 cuts the connection
from input j to output k, for every input and in the gradient too
(d y_k / d W[k, j] = M[k, j] x_j). MADE (Germain et al., 2015) builds its
masks from unit degrees (``degree_mask``); PixelCNN's masked convolutions
follow the same rule over pixel positions.

Degrees: input d of an autoregressive model has degree m(d) in 1..D, its
place in the ordering; a hidden unit of degree m(k) may see inputs of degree
at most m(k), and output d may see only hidden units of degree below m(d),
so output d depends on x_j only if m(j) < m(d):

    hidden:  M[k, j] = 1[m_out(k) >= m_in(j)]
    output:  M[d, k] = 1[m_out(d) >  m_in(k)]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def degree_mask(in_degrees: torch.Tensor, out_degrees: torch.Tensor, strict: bool = False) -> torch.Tensor:
    """The mask (out, in) of a layer from its units' degrees, in (in,) and out (out,):
    M[k, j] = out_degrees[k] > in_degrees[j] if ``strict`` (an output layer), else >=."""
    out_column, in_row = out_degrees[:, None], in_degrees[None, :]
    return out_column > in_row if strict else out_column >= in_row


class MaskedLinear(nn.Linear):
    """A linear layer whose weight W (out, in) is multiplied by a mask M (out, in):
    y = x (W * M)^T + b, x (..., in) -> y (..., out).

    ``mask`` (out, in), anything whose nonzeros are the kept connections;
    default all ones (a plain Linear until ``set_mask``). It is stored as a
    bool buffer, so ``.to(dtype)`` leaves it alone; ``persistent=False``
    keeps it out of the state_dict, for owners that rebuild it themselves
    (MADE switches masks between minibatches and derives them from degrees).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 mask: torch.Tensor | None = None, persistent: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=torch.bool), persistent=persistent)
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask in place (same shape (out, in); kept on the layer's device)."""
        if tuple(mask.shape) != tuple(self.mask.shape):
            raise ValueError(f"mask of shape {tuple(mask.shape)} for a layer of weight {tuple(self.mask.shape)}")
        self.mask.copy_(mask.to(device=self.mask.device, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)  # masked weights get exactly zero gradient

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, connections={int(self.mask.sum())}/{self.mask.numel()}"
