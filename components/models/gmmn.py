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
``Density``; it samples. The paper's GMMN+AE, the same loss in an
autoencoder's code space, is not here yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    """The biased squared MMD between rows of x (n, D) and y (m, D) with a Gaussian-mixture kernel."""
    xy = torch.cat([x, y])
    squared = torch.cdist(xy, xy).square()
    kernel = sum(torch.exp(-squared / (2 * s * s)) for s in bandwidths)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class GMMN(Checkpointed, nn.Module):
    """A generator trained by MMD on grey images (see the module docstring)."""

    family: ClassVar[str] = "gmmn"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        latent: int = 10  # uniform noise units (the paper's 10 for MNIST)
        hidden: tuple[int, ...] = (64, 256, 256, 1024)  # the generator's ReLU layers (the paper's MNIST net)
        bandwidths: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # Gaussian kernels' s (the paper's)

        def validate(self) -> None:
            self.check_training("gmmn")
            if self.latent < 1 or not self.hidden or min(self.hidden) < 1:
                raise DulError(f"gmmn.latent is {self.latent} and gmmn.hidden {list(self.hidden)}: all must be positive")
            if not self.bandwidths or min(self.bandwidths) <= 0:
                raise DulError(f"gmmn.bandwidths is {list(self.bandwidths)}: give one or more positive widths")

    def __init__(self, n_inputs: int, latent: int = 10, hidden: Sequence[int] = (64, 256, 256, 1024),
                 bandwidths: Sequence[float] = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)):
        super().__init__()
        hidden, bandwidths = [int(h) for h in hidden], [float(s) for s in bandwidths]
        self.inputs = "real"
        self.latent, self.bandwidths = latent, bandwidths
        self.hyperparameters = {"n_inputs": n_inputs, "latent": latent, "hidden": hidden, "bandwidths": bandwidths}
        layers, width = [], latent
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.generator = nn.Sequential(*layers, nn.Linear(width, n_inputs))

    @classmethod
    def from_params(cls, params: GMMN.Params, shape: tuple[int, ...]) -> GMMN:
        if len(shape) != 3 or shape[0] != 1:
            raise DulError(f"gmmn models grey images (1, H, W); this dataset's items are {list(shape)}")
        return cls(shape[1] * shape[2], params.latent, params.hidden, params.bandwidths)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]

    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        weight = self.generator[0].weight
        z = torch.rand(n, self.latent, generator=generator, device=generator.device if generator else weight.device)
        return torch.sigmoid(self.generator(2 * z.to(device=weight.device, dtype=weight.dtype) - 1))

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on MMD(x, G(z)) (the square root of the biased MMD^2, as the paper)."""
        (optimizer,) = optimizers
        x = x.reshape(len(x), -1).to(self.generator[0].weight.dtype)
        squared = mmd2(x, self.generate(len(x)), self.bandwidths)
        loss = squared.clamp_min(1e-12).sqrt()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "mmd2": squared.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, D) in [0, 1]: G(z), z ~ U(-1, 1) from ``generator``."""
        return self.generate(n, generator)
