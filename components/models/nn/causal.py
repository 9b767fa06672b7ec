"""Causal dilated 1-D convolutions over sequences kept channels last, (B, T, C).

A causal convolution with kernel k and dilation d computes output t from
inputs t - (k - 1) d, ..., t - d, t: never a later one (van den Oord et al.
2016, "WaveNet", section 2.1). Here it is one matrix product over the k taps
side by side, each tap the input shifted right by a multiple of d with zeros
in front, which is what ``Conv1d`` does with left padding, as a GEMM on
(B * T, k C) rows (faster on CPUs than a dilated ``Conv1d``, and the same
arithmetic). Its receptive field is (k - 1) d + 1 inputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def causal_shift(h: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, C): position t takes position t - steps, the first ``steps`` positions zeros."""
    if steps == 0:
        return h
    return F.pad(h, (0, 0, steps, 0))[:, :h.shape[1]]


class CausalConv1d(nn.Module):
    """A causal convolution of kernel ``kernel`` and ``dilation`` from ``in_channels`` to
    ``out_channels``, channels last: (B, T, C_in) -> (B, T, C_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.taps = nn.Linear(kernel * in_channels, out_channels, bias=bias)  # tap j (oldest first) in block j

    @property
    def receptive_field(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        taps = [causal_shift(h, (self.kernel - 1 - j) * self.dilation) for j in range(self.kernel)]
        return self.taps(torch.cat(taps, dim=-1) if self.kernel > 1 else h)
