"""A sequence family in the zoo's loop: windows of the training stream, bits per character.

A sequence family (``inputs = "sequence"``, e.g. wavenet) reads a split as one
byte stream (``components.data.chars.read_stream``: the posts in id order,
each followed by the end-of-post byte). An epoch is ``steps`` batches of
``batch_size`` windows of ``window`` bytes, each window at an offset drawn
uniformly from the epoch's generator (``WindowBatches``): every worker draws
its own offsets, from its own per-epoch seed, so a resumed run draws what an
uninterrupted one would. Validation and test figures are bits per character
of the stream, each byte scored with its true context (``stream_figures``),
on all of it or on evenly spaced blocks of it (``spaced_blocks``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from components.data.stream import Batches
from components.errors import DulError


class WindowBatches(Batches):
    """Batches (B, window) of bytes, int64, cut at random offsets of ``stream`` (L,) uint8."""

    def __init__(self, stream: torch.Tensor, window: int, batch_size: int, n_batches: int):
        if len(stream) < window:
            raise DulError(f"the training stream holds {len(stream)} bytes, fewer than one window of {window}; "
                           "lower the family's window")
        self.stream, self.window, self.batch_size, self.n_batches = stream, window, batch_size, n_batches
        self.device = stream.device

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        offsets = torch.randint(len(self.stream) - self.window + 1, (self.n_batches, self.batch_size),
                                generator=generator).to(self.device)
        span = torch.arange(self.window, device=self.device)
        for b in range(self.n_batches):
            yield self.stream[offsets[b][:, None] + span].long()  # (B, window)

    def sequential(self, size: int) -> Iterator[torch.Tensor]:
        usable = len(self.stream) // self.window * self.window
        return iter(self.stream[:usable].reshape(-1, self.window).long().split(size))


def spaced_blocks(length: int, chars: int, block: int) -> torch.Tensor | None:
    """Indices of about ``chars`` / ``block`` blocks of ``block`` bytes evenly spaced over a
    stream of ``length`` bytes (each scored with its own context); None: every block (``chars``
    0, or at least the stream)."""
    total = math.ceil(length / block)
    wanted = math.ceil(chars / block)
    if chars == 0 or wanted >= total:
        return None
    return torch.linspace(0, total - 1, wanted).round().long().unique()


@torch.no_grad()
def stream_figures(model, stream: torch.Tensor, blocks: torch.Tensor | None = None) -> dict:
    """Bits per character of ``stream`` (its ``blocks``, or all of it) under a sequence family,
    the mean nats per character, and how many characters were scored."""
    model.eval()
    logp = model.stream_log_prob(stream, blocks)
    nats = float(-logp.mean())
    return {"bits_per_char": nats / math.log(2), "nats_per_char": nats, "n_chars": int(len(logp)),
            "estimator": model.estimator(1)}
