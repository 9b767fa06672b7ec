"""GAN and DCGAN: a generator trained against a discriminator, for images.

Goodfellow et al. (2014), "Generative adversarial nets" (NeurIPS); Radford,
Metz & Chintala (2016), "Unsupervised representation learning with deep
convolutional generative adversarial networks" (ICLR). Items are grey images
(1, H, W) with intensities in [0, 1] (``inputs = "real"``: a discriminator
told binary data from a generator's grey levels would win by that alone).

Generator G: z ~ N(0, I) of ``latent`` units -> an image in [0, 1] (sigmoid).
Discriminator D: an image -> a logit, D's belief that the image is real.

- ``mlp`` (the 2014 paper's fully connected nets): G: z -> hidden -> 2 hidden
  -> H*W, ReLU; D: H*W -> 2 hidden -> hidden -> 1, LeakyReLU(0.2).
- ``dcgan`` (H and W divisible by 4): G: z -> linear -> (2C, H/4, W/4),
  batch norm, ReLU -> transposed conv 4x4 stride 2 -> (C, H/2, W/2), batch
  norm, ReLU -> transposed conv -> (1, H, W), sigmoid; D: conv 4x4 stride 2
  -> (C, H/2, W/2), LeakyReLU(0.2) -> conv -> (2C, H/4, W/4), batch norm,
  LeakyReLU -> linear -> 1; weights N(0, 0.02) as the paper's.

Each training step: one Adam step on D's loss,
    -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))   (G(z) held fixed),
then one on G's non-saturating loss -log sigmoid(D(G(z))) for a fresh z
(the paper's recommendation over log(1 - D(G(z)))). Two optimizers, Adam
with beta1 = 0.5 (DCGAN's); the loop needs nothing special for them.

Not a ``Density`` (a GAN has no likelihood to report) and not an
``Encoder``; it samples: sample(n) = G(z) for z from the given generator.
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

ARCHITECTURES = ("mlp", "dcgan")


class GAN(Checkpointed, nn.Module):
    """Generator and discriminator over (1, H, W) images (see the module docstring)."""

    family: ClassVar[str] = "gan"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        lr: float = 0.0002  # Adam's learning rate, both networks (DCGAN's 2e-4)
        architecture: str = "mlp"  # mlp (Goodfellow et al. 2014) | dcgan (Radford et al. 2016; H, W divisible by 4)
        latent: int = 64  # noise units z ~ N(0, I) the generator maps to an image
        hidden: int = 256  # mlp: width of the first hidden layer (the next has twice as many); dcgan: C, feature maps
        # of the first convolution (the second has 2C)
        beta1: float = 0.5  # Adam's first-moment decay (DCGAN's 0.5; PyTorch's default 0.9)

        def validate(self) -> None:
            self.check_training("gan")
            if self.architecture not in ARCHITECTURES:
                raise DulError(f"gan.architecture is '{self.architecture}'; "
                               f"{did_you_mean(self.architecture, ARCHITECTURES)}")
            for name in ("latent", "hidden"):
                if getattr(self, name) < 1:
                    raise DulError(f"gan.{name} is {getattr(self, name)}: must be positive")
            if not 0 <= self.beta1 < 1:
                raise DulError(f"gan.beta1 is {self.beta1}: must be in [0, 1)")

    def __init__(self, image_shape: Sequence[int], architecture: str = "mlp", latent: int = 64, hidden: int = 256):
        super().__init__()
        height, width = (int(s) for s in image_shape)
        if architecture not in ARCHITECTURES:
            raise DulError(f"GAN architecture '{architecture}'; {did_you_mean(architecture, ARCHITECTURES)}")
        if architecture == "dcgan" and (height % 4 or width % 4):
            raise DulError(f"dcgan needs image sides divisible by 4 (two stride-2 layers), got {height}x{width}; "
                           "use gan.architecture: mlp")
        self.inputs = "real"  # intensities in [0, 1], not binarized
        self.image_shape, self.architecture, self.latent = (height, width), architecture, latent
        self.hyperparameters = {"image_shape": [height, width], "architecture": architecture, "latent": latent,
                                "hidden": hidden}
        pixels = height * width
        if architecture == "mlp":
            self.generator = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 2 * hidden),
                                           nn.ReLU(), nn.Linear(2 * hidden, pixels))
            self.discriminator = nn.Sequential(nn.Linear(pixels, 2 * hidden), nn.LeakyReLU(0.2),
                                               nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        else:
            quarter = (2 * hidden, height // 4, width // 4)
            self.generator = nn.Sequential(
                nn.Linear(latent, math.prod(quarter)), nn.Unflatten(1, quarter), nn.BatchNorm2d(2 * hidden), nn.ReLU(),
                nn.ConvTranspose2d(2 * hidden, hidden, 4, 2, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
                nn.ConvTranspose2d(hidden, 1, 4, 2, 1), nn.Flatten())
            self.discriminator = nn.Sequential(
                nn.Unflatten(1, (1, height, width)), nn.Conv2d(1, hidden, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(hidden, 2 * hidden, 4, 2, 1), nn.BatchNorm2d(2 * hidden), nn.LeakyReLU(0.2), nn.Flatten(),
                nn.Linear(math.prod(quarter), 1))
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    nn.init.normal_(module.weight, 0.0, 0.02)
                    nn.init.zeros_(module.bias)

    @classmethod
    def from_params(cls, params: GAN.Params, shape: tuple[int, ...]) -> GAN:
        if len(shape) != 3 or shape[0] != 1:
            raise DulError(f"gan models grey images (1, H, W); this dataset's items are {list(shape)}: use an image "
                           "dataset (digits, mnist, fashion-mnist)")
        return cls(shape[1:], params.architecture, params.latent, params.hidden)

    def optimizers(self, params: GAN.Params) -> list[torch.optim.Optimizer]:
        """[discriminator's Adam, generator's Adam]."""
        betas = (params.beta1, 0.999)
        return [torch.optim.Adam(self.discriminator.parameters(), lr=params.lr, betas=betas),
                torch.optim.Adam(self.generator.parameters(), lr=params.lr, betas=betas)]

    @property
    def n_inputs(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, H*W) images in [0, 1]."""
        return torch.sigmoid(self.generator(z))

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        weight = next(self.generator.parameters())
        z = torch.randn(n, self.latent, generator=generator, device=generator.device if generator else weight.device)
        return z.to(device=weight.device, dtype=weight.dtype)

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One discriminator step, then one generator step (see the module docstring)."""
        d_optimizer, g_optimizer = optimizers
        x = x.reshape(len(x), -1).to(next(self.generator.parameters()).dtype)
        fake = self.generate(self.noise(len(x))).detach()
        real_logits, fake_logits = self.discriminator(x), self.discriminator(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        logits = self.discriminator(self.generate(self.noise(len(x))))
        g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        g_optimizer.zero_grad(set_to_none=True)
        self.discriminator.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()
        return {"loss": (d_loss + g_loss).detach(), "d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(), "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, H*W) in [0, 1]: G(z), z ~ N(0, I) from ``generator`` (batch norm in eval mode)."""
        was_training = self.training
        self.eval()
        drawn = self.generate(self.noise(n, generator))
        self.train(was_training)
        return drawn
