"""NASH: a binary-latent VAE for semantic hashing of documents.

Shen et al. (2018), "NASH: Toward end-to-end neural architecture for
generative semantic hashing" (ACL). Documents are word counts n (B, V).

Encoder input:  u = log(1 + n)  (``log``),  or  u = n * idf / ||n * idf||  (``tfidf``, unit length;
                idf (V,) = log((1 + N) / (1 + df)) + 1 from the training split, set by ``fit_inputs``)
Encoder:        q = sigmoid(MLP(u)) (B, bits), two ReLU hidden layers of ``hidden`` units;
                q(z | n) = prod_j Bernoulli(z_j; q_j)
Sample:         z = 1[r < q], r ~ U(0, 1), with the straight-through gradient dz/dq = I:
                z = q + stopgrad(1[r < q] - q); the decoder sees z' = z + noise * eps, eps ~ N(0, I)
Decoder:        p(w | z') = softmax(W z' + b)_w over the vocabulary (a single linear layer, (V, bits))
Reconstruction: -sum_w n_w log p(w | z')  (the multinomial log-likelihood, less its count coefficient)
Prior:          p(z) = Bernoulli(1/2)^bits,  KL = sum_j q_j log(2 q_j) + (1 - q_j) log(2 (1 - q_j))
Loss:           reconstruction + KL, averaged over the batch.
Codes:          encode(n) = q (B, bits); the index thresholds each bit at its training median.
Expected counts: reconstruct(n) = N softmax(W q + b), N = sum_w n_w (evaluation's reconstruction).

Not a ``Density``: the bound is on a document's words given its length, not
a normalised density of the data the other families model; not a ``Sampler``.

The trainer calls ``fit_inputs(counts)`` once, on the training split, before
training: it sets the ``idf`` buffer, which checkpoints carry. A NASH built
without it uses idf = 1 (unit-length term frequencies).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError, did_you_mean
from components.models.base import Checkpointed, TrainingParams

INPUTS = ("tfidf", "log")


def straight_through(q: torch.Tensor) -> torch.Tensor:
    """Bits z ~ Bernoulli(q), binary in the forward pass, with dz/dq = I backwards; (B, bits)."""
    bits = (torch.rand_like(q) < q).to(q.dtype)
    return q + (bits - q).detach()


class NASH(Checkpointed, nn.Module):
    """Binary-code document VAE with straight-through bits (see the module docstring)."""

    family: ClassVar[str] = "nash"
    code_units = "binary"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        bits: int = 32  # code length: Bernoulli latents
        hidden: int = 500  # width of the encoder's two ReLU layers
        noise: float = 0.1  # std of the Gaussian noise on the bits the decoder sees (training only)
        input: str = "tfidf"  # tfidf (unit length, training-split idf) | log (log(1 + counts))

        def validate(self) -> None:
            for name in ("bits", "hidden", "epochs", "batch_size", "lr"):
                if getattr(self, name) <= 0:
                    raise DulError(f"nash.{name} is {getattr(self, name)}: must be positive")
            if not math.isfinite(self.noise) or self.noise < 0:
                raise DulError(f"nash.noise is {self.noise}: must be 0 or more")
            if self.input not in INPUTS:
                raise DulError(f"nash.input is '{self.input}'; {did_you_mean(self.input, INPUTS)}")

    def __init__(self, n_inputs: int, bits: int, hidden: int, noise: float, input: str):
        super().__init__()
        if input not in INPUTS:
            raise DulError(f"NASH input '{input}'; {did_you_mean(input, INPUTS)}")
        self.noise, self.input_kind = noise, input
        self.encoder = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, bits))
        self.decoder = nn.Linear(bits, n_inputs)  # W (V, bits), b (V,)
        self.register_buffer("idf", torch.ones(n_inputs))  # (V,)
        self.inputs = "counts"  # what the zoo hands it: word counts, not binarized images
        self.hyperparameters = {"n_inputs": n_inputs, "bits": bits, "hidden": hidden, "noise": noise, "input": input}

    @classmethod
    def from_params(cls, params: NASH.Params, shape: tuple[int, ...]) -> NASH:
        return cls(math.prod(shape), params.bits, params.hidden, params.noise, params.input)

    def optimizers(self, params) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]  # V

    @property
    def code_size(self) -> int:
        return self.hyperparameters["bits"]

    @torch.no_grad()
    def fit_inputs(self, counts: torch.Tensor) -> NASH:
        """Set idf (V,) = log((1 + N) / (1 + df)) + 1 from the training split's counts (N, V)."""
        if counts.dim() != 2 or counts.shape[1] != len(self.idf):
            raise DulError(f"NASH.fit_inputs needs counts of shape (N, {len(self.idf)}), got {tuple(counts.shape)}")
        df = (counts > 0).sum(0).to(self.idf)  # documents holding each word, (V,)
        self.idf.copy_(torch.log((1 + len(counts)) / (1 + df)) + 1)
        return self

    def encoder_inputs(self, counts: torch.Tensor) -> torch.Tensor:
        """u: what the encoder sees, (B, V)."""
        counts = counts.to(self.idf.dtype)
        if self.input_kind == "log":
            return torch.log1p(counts)
        weighted = counts * self.idf
        return weighted / weighted.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V) counts -> q (B, bits), the code probabilities."""
        return torch.sigmoid(self.encoder(self.encoder_inputs(x)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V) counts -> (B, V) expected counts N softmax(W q + b), N = the document's
        length, decoding the code probabilities q (the bits' mean) without noise."""
        counts = x.to(self.idf.dtype)
        return counts.sum(1, keepdim=True) * torch.softmax(self.decoder(self.encode(counts)), dim=1)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss", "reconstruction", "kl"}: batch means, scalars with gradients."""
        counts = x.to(self.idf.dtype)
        q = self.encode(counts)  # (B, bits)
        z = straight_through(q)
        log_p = F.log_softmax(self.decoder(z + self.noise * torch.randn_like(z)), dim=1)  # (B, V)
        reconstruction = -(counts * log_p).sum(1).mean()
        kl = (q * torch.log(2 * q + 1e-10) + (1 - q) * torch.log(2 * (1 - q) + 1e-10)).sum(1).mean()
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One gradient step on ``loss(x)``; bits and noise drawn from the global torch generator."""
        figures = self.loss(x)
        for optimizer in optimizers:
            optimizer.zero_grad()
        figures["loss"].backward()
        for optimizer in optimizers:
            optimizer.step()
        return {name: value.detach() for name, value in figures.items()}
