"""VDSH: variational deep semantic hashing, a Gaussian-latent document VAE whose
mean code, thresholded at its training medians, is the document's binary code.

Chaidaroon & Fang (2017), "Variational deep semantic hashing for text
documents" (SIGIR), the unsupervised VDSH. Documents are word counts n (B, V).

Encoder input:  u = log(1 + n) * log(1 + N / df)  (the semantic-hashing papers' TF-IDF, bayesquant/VDSH's
                preparation; N and df (V,) from the training split, set by ``fit_inputs``)
Encoder:        two ReLU layers of ``hidden`` units, then mu (B, bits) and log sigma^2 (B, bits)
Sample:         z = mu + sigma * eps, eps ~ N(0, I)
Decoder:        p(w | z) = softmax(W z + b)_w over the vocabulary (one linear layer, (V, bits))
Reconstruction: -sum_w n_w log p(w | z)  (the multinomial log-likelihood, less its count coefficient)
KL:             KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1),
                weighted by beta, which rises linearly from 0 to 1 over the first ``kl_warmup`` epochs
                (the paper's weight annealing, after Sønderby et al. 2016), then stays 1
Loss:           reconstruction + beta KL, averaged over the batch.
Codes:          encode(n) = mu (B, bits); the index thresholds each unit at its training median (VDSH's rule).
Expected counts: reconstruct(n) = N softmax(W mu + b), N = sum_w n_w.

Not a ``Density``: like NASH's, its bound is on a document's words given its
length. The trainer calls ``fit_inputs(counts)`` once on the training split
before training; the ``idf`` buffer it sets travels in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams


class VDSH(Checkpointed, nn.Module):
    """Gaussian-latent document VAE for semantic hashing (see the module docstring)."""

    family: ClassVar[str] = "vdsh"
    code_units = "binary"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        bits: int = 32  # code length: the Gaussian latents, each thresholded at its training median
        hidden: int = 500  # width of the encoder's two ReLU layers (the paper's 500)
        kl_warmup: int = 0  # epochs over which the KL weight rises linearly from 0 to 1 (0: 1 from the start)

        def validate(self) -> None:
            self.check_training("vdsh")
            for name in ("bits", "hidden"):
                if getattr(self, name) <= 0:
                    raise DulError(f"vdsh.{name} is {getattr(self, name)}: must be positive")
            if self.kl_warmup < 0:
                raise DulError(f"vdsh.kl_warmup is {self.kl_warmup}: must be 0 or more")

    def __init__(self, n_inputs: int, bits: int, hidden: int, kl_warmup: int = 0):
        super().__init__()
        if n_inputs < 1 or bits < 1 or hidden < 1:
            raise DulError(f"VDSH needs a vocabulary, bits and hidden units, got {n_inputs}, {bits}, {hidden}")
        self.inputs = "counts"  # what the zoo hands it: word counts
        self.kl_warmup = kl_warmup
        self.encoder = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu, self.log_var = nn.Linear(hidden, bits), nn.Linear(hidden, bits)
        self.decoder = nn.Linear(bits, n_inputs)  # W (V, bits), b (V,)
        self.register_buffer("idf", torch.ones(n_inputs))  # (V,) log(1 + N / df)
        self.register_buffer("beta", torch.tensor(1.0 if kl_warmup == 0 else 0.0))  # the KL weight this epoch
        self.hyperparameters = {"n_inputs": n_inputs, "bits": bits, "hidden": hidden, "kl_warmup": kl_warmup}

    @classmethod
    def from_params(cls, params: VDSH.Params, shape: tuple[int, ...]) -> VDSH:
        return cls(math.prod(shape), params.bits, params.hidden, params.kl_warmup)

    def optimizers(self, params) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]  # V

    @property
    def code_size(self) -> int:
        return self.hyperparameters["bits"]

    @torch.no_grad()
    def fit_inputs(self, counts: torch.Tensor) -> VDSH:
        """Set idf (V,) = log(1 + N / df) from the training split's counts (N, V); a word in no
        training document gets log(1 + N), as if it were in one."""
        if counts.dim() != 2 or counts.shape[1] != len(self.idf):
            raise DulError(f"VDSH.fit_inputs needs counts of shape (N, {len(self.idf)}), got {tuple(counts.shape)}")
        df = (counts > 0).sum(0).to(self.idf).clamp_min(1)
        self.idf.copy_(torch.log1p(len(counts) / df))
        return self

    def start_epoch(self, epoch: int) -> None:
        """The KL weight of epoch ``epoch`` (0-based): (epoch + 1) / kl_warmup up to 1."""
        self.beta.fill_(1.0 if self.kl_warmup == 0 else min(1.0, (epoch + 1) / self.kl_warmup))

    def tfidf(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.log1p(counts.to(self.idf.dtype)) * self.idf

    def posterior(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.tfidf(counts))
        return self.mu(h), self.log_var(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V) counts -> mu (B, bits), the code before its median threshold."""
        return self.posterior(x)[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V) counts -> (B, V) expected counts N softmax(W mu + b)."""
        counts = x.to(self.idf.dtype)
        return counts.sum(1, keepdim=True) * torch.softmax(self.decoder(self.encode(counts)), dim=1)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss", "reconstruction", "kl", "beta"}: batch means, scalars (the first three with gradients)."""
        counts = x.to(self.idf.dtype)
        mu, log_var = self.posterior(counts)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        reconstruction = -(counts * F.log_softmax(self.decoder(z), dim=1)).sum(1).mean()
        kl = 0.5 * (mu.square() + log_var.exp() - log_var - 1).sum(1).mean()
        return {"loss": reconstruction + self.beta * kl, "reconstruction": reconstruction, "kl": kl,
                "beta": self.beta.clone()}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on ``loss(x)``; the noise from the global torch generator."""
        figures = self.loss(x)
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        figures["loss"].backward()
        optimizer.step()
        return {name: value.detach() for name, value in figures.items()}
