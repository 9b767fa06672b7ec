"""Rows and draws the families share: items as rows, uniforms on the right device."""

from __future__ import annotations

import torch


def flatten(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Items as rows: (B, D) or (B, C, H, W) -> (B, D), in the parameters' dtype."""
    return x.reshape(len(x), -1).to(dtype)


def uniforms(n: int, D: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws (n, D) from ``generator`` (made on its device), moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.rand(n, D, generator=generator, device=device, dtype=like.dtype).to(like.device)
