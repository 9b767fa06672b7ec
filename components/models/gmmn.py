"""Generative moment matching network: a generator trained to minimise the MMD to the data.

Li, Swersky & Zemel (2015), "Generative moment matching networks" (ICML).
No discriminator: the generator G (z ~ U(-1, 1) of ``latent`` units -> an
image in [0, 1]; ReLU layers of ``hidden`` units, sigmoid output) is trained
on the squared maximum mean discrepancy between a batch of data X and a
batch of samples Y = G(Z) of the same size, with a mixture of Gaussian
kernels (the paper's bandwidths, in pixel units for images in [0, 1]):

    k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)),  s in ``bandwidths``
    MMD^2(X, Y) = mean k(X, X') + mean k(Y, Y') - 2 mean k(X, Y)

(the biased estimator, whose square root the paper minimises: it is never
negative). Items are the intensities (``inputs = "real"``). Not a
``Density``; it samples.

GMMN+AE (``space: autoencoder``, the paper's section 3.3): the same loss in
the code space of an autoencoder (``autoencoder`` = [hidden, code] sigmoid
units, mirrored decoder, cross-entropy reconstruction), where the data's
distribution is simpler and the kernels see structure, not pixels. The
generator then outputs a code (sigmoid, in [0, 1]^code) and a sample is
decode(G(z)), and the kernels are ``code_bandwidths``, in code units. The paper trains the
autoencoder first and freezes it; here each step takes one autoencoder step
(its own optimizer) and then one generator step on the codes of the current
encoder, detached, so one training loop serves both: the generator's target
moves while the autoencoder still learns and is fixed once it has converged.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams

SPACES = ("pixels", "autoencoder")


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """The biased squared MMD between rows of x (n, D) and y (m, D) with a Gaussian-mixture kernel."""
    xy = torch.cat([x, y])
    squared = torch.cdist(xy, xy).square()
    kernel = sum(torch.exp(-squared / (2 * s * s)) for s in bandwidths)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def _sigmoid_layers(sizes: Sequence[int]) -> list[nn.Module]:
    """Linear then sigmoid for each consecutive pair of ``sizes``."""
    return [layer for a, b in itertools.pairwise(sizes) for layer in (nn.Linear(a, b), nn.Sigmoid())]


class GMMN(Checkpointed, nn.Module):
    """A generator trained by MMD on grey images (see the module docstring)."""

    family: ClassVar[str] = "gmmn"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        latent: int = 10  # uniform noise units (the paper's 10 for MNIST)
        hidden: tuple[int, ...] = (64, 256, 256, 1024)  # the generator's ReLU layers (the paper's MNIST net)
        bandwidths: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # Gaussian kernels' s (the paper's)
        space: str = "pixels"  # pixels (GMMN) | autoencoder (GMMN+AE: the MMD on an autoencoder's codes)
        autoencoder: tuple[int, ...] = (1024, 32)  # space autoencoder: its sigmoid layers, the last the code (paper's)
        code_bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # space autoencoder: the kernels' s on codes in [0, 1]

        def validate(self) -> None:
            self.check_training("gmmn")
            if self.latent < 1 or not self.hidden or min(self.hidden) < 1:
                raise DulError(f"gmmn.latent is {self.latent} and gmmn.hidden {list(self.hidden)}: all must be positive")
            for key in ("bandwidths", "code_bandwidths"):
                if not getattr(self, key) or min(getattr(self, key)) <= 0:
                    raise DulError(f"gmmn.{key} is {list(getattr(self, key))}: give one or more positive widths")
            if self.space not in SPACES:
                raise DulError(f"gmmn.space is {self.space!r}: choose one of {', '.join(SPACES)}")
            if self.space == "autoencoder" and (not self.autoencoder or min(self.autoencoder) < 1):
                raise DulError(f"gmmn.autoencoder is {list(self.autoencoder)}: give positive layer sizes, "
                               "the last the code, e.g. [1024, 32]")

    def __init__(self, n_inputs: int, latent: int = 10, hidden: Sequence[int] = (64, 256, 256, 1024),
                 bandwidths: Sequence[float] = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0), space: str = "pixels",
                 autoencoder: Sequence[int] = (1024, 32)):
        super().__init__()
        hidden, bandwidths = [int(h) for h in hidden], [float(s) for s in bandwidths]
        autoencoder = [int(a) for a in autoencoder] if space == "autoencoder" else []
        self.inputs = "real"
        self.latent, self.bandwidths, self.space = latent, bandwidths, space
        self.hyperparameters = {"n_inputs": n_inputs, "latent": latent, "hidden": hidden, "bandwidths": bandwidths,
                                "space": space, "autoencoder": autoencoder}
        layers, width = [], latent
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.generator = nn.Sequential(*layers, nn.Linear(width, autoencoder[-1] if autoencoder else n_inputs))
        if autoencoder:
            sizes = [n_inputs, *autoencoder]
            self.encoder = nn.Sequential(*_sigmoid_layers(sizes))
            self.decoder = nn.Sequential(*_sigmoid_layers(sizes[::-1])[:-1])  # logits out: the loss is cross-entropy

    @classmethod
    def from_params(cls, params: GMMN.Params, shape: tuple[int, ...]) -> GMMN:
        if len(shape) != 3 or shape[0] != 1:
            raise DulError(f"gmmn models grey images (1, H, W); this dataset's items are {list(shape)}")
        autoencoder = params.space == "autoencoder"
        return cls(shape[1] * shape[2], params.latent, params.hidden,
                   params.code_bandwidths if autoencoder else params.bandwidths, params.space, params.autoencoder)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        """The generator's Adam; under ``space: autoencoder``, the autoencoder's first."""
        generator = torch.optim.Adam(self.generator.parameters(), lr=params.lr)
        if self.space != "autoencoder":
            return [generator]
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        return [torch.optim.Adam(autoencoder, lr=params.lr), generator]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]

    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """G(z) (n, D) in [0, 1], z ~ U(-1, 1): images, or codes under ``space: autoencoder``."""
        weight = self.generator[0].weight
        z = torch.rand(n, self.latent, generator=generator, device=generator.device if generator else weight.device)
        return torch.sigmoid(self.generator(2 * z.to(device=weight.device, dtype=weight.dtype) - 1))

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on MMD(x, G(z)) (the square root of the biased MMD^2, as the paper); under
        ``space: autoencoder`` first one on the reconstruction's cross-entropy, then the MMD is the codes'."""
        x = x.reshape(len(x), -1).to(self.generator[0].weight.dtype)
        figures = {}
        if self.space == "autoencoder":
            autoencoder, optimizer = optimizers
            code = self.encoder(x)
            reconstruction = F.binary_cross_entropy_with_logits(self.decoder(code), x, reduction="sum") / len(x)
            autoencoder.zero_grad(set_to_none=True)
            reconstruction.backward()
            autoencoder.step()
            x = code.detach()  # the generator's target: the codes, not the pixels
            figures["reconstruction"] = reconstruction.detach()
        else:
            (optimizer,) = optimizers
        squared = mmd2(x, self.generate(len(x)), self.bandwidths)
        loss = squared.clamp_min(1e-12).sqrt()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "mmd2": squared.detach(), **figures}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, D) in [0, 1]: G(z), z ~ U(-1, 1) from ``generator``; decode(G(z)) for GMMN+AE."""
        drawn = self.generate(n, generator)
        return torch.sigmoid(self.decoder(drawn)) if self.space == "autoencoder" else drawn
