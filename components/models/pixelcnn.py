"""PixelCNN and gated PixelCNN: autoregressive convolutional densities over images.

van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel recurrent neural
networks" (ICML), section 3.5: the chain rule p(x) = prod_i p(x_i | x_<i) over
the pixels in raster order, all H*W conditionals computed at once by
convolutions whose kernels are masked so that output i sees only inputs
before i: mask A (the first layer) zeroes the kernel's centre and everything
after it in raster order, mask B (later layers) keeps the centre, which by
then holds features of earlier pixels only. Stacked masked 3x3 kernels
leave a *blind spot*: the receptive field grows up and to the left but never
reaches the pixels above and to the right of the diagonal, however deep the
net (van den Oord et al. 2016b, figure 1).

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016),
"Conditional image generation with PixelCNN decoders" (NeurIPS): the *gated*
PixelCNN removes the blind spot with two stacks. The vertical stack v sees
every pixel of the rows up to the current one (a k//2+1 by k kernel, padded
above); the horizontal stack h sees the current row up to the current pixel
(a 1 by k//2+1 kernel, padded on the left) plus the vertical stack's features
shifted down one row, so together they cover all of x_<i. Each layer:

    v' = conv_v(v),  a_h = conv_h(h) + link(shift_down(v'))
    v  = tanh(v'_1) * sigmoid(v'_2),  h = h + out(tanh(a_h,1) * sigmoid(a_h,2))

(the gate splits the 2C channels in halves; the residual is on h, not in the
first layer). v reaches h only shifted down a row, and in the first layer h
reads the image shifted right a column, so pixel i itself is never seen
(mask A).

Both end in ReLU, 1x1 convolution, ReLU, 1x1 convolution to the outputs:

- ``bernoulli`` (binarized images): one logit l_i per pixel,
  log p(x) = sum_i x_i l_i - softplus(l_i);
- ``categorical`` (8-bit images): 256 logits per pixel, the value
  round(255 x) as the class, log p(x) = sum_i log softmax(l_i)[x_i].

log_prob is exact (one forward pass); ``sample`` fills the H*W pixels in
raster order, one forward pass each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError, did_you_mean
from components.models.base import Checkpointed, TrainingParams

LIKELIHOODS = ("bernoulli", "categorical")
LEVELS = 256  # categorical: the values of an 8-bit pixel


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution (k odd, 'same' padding) whose kernel is zero after its centre in
    raster order, and at the centre too for mask ``A``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, mask: str):
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        centre = kernel // 2
        keep = torch.ones(kernel, kernel)
        keep[centre, centre + (mask == "B"):] = 0
        keep[centre + 1:] = 0
        self.register_buffer("mask", keep, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): row r takes row r - 1's values, row 0 zeros."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): column c takes column c - 1's values, column 0 zeros."""
    return F.pad(x, (1, 0))[:, :, :, :-1]


def gate(a: torch.Tensor) -> torch.Tensor:
    """tanh of the first half of the channels times sigmoid of the second half."""
    first, second = a.chunk(2, dim=1)
    return torch.tanh(first) * torch.sigmoid(second)


class GatedLayer(nn.Module):
    """One layer of the two stacks (see the module docstring); ``first``: the input layer."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.first, self.kernel = first, kernel
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (kernel // 2 + 1, kernel))  # rows <= r, cols r +- k//2
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, kernel // 2 + 1))  # this row, cols <= c
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)  # the vertical stack's features into the horizontal
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.kernel // 2
        # mask A: the horizontal stack reads the image shifted right, so never pixel (r, c) itself; the vertical
        # stack reads rows <= r whole, and reaches the horizontal one only shifted down a row (rows < r)
        h_in = shift_right(h) if self.first else h
        v_pre = self.vertical(F.pad(v, (half, half, half, 0)))  # sees rows <= r of its input
        h_pre = self.horizontal(F.pad(h_in, (half, 0, 0, 0))) + self.link(shift_down(v_pre))
        h_new = self.out(gate(h_pre))
        return gate(v_pre), (h_new if self.first else h + h_new)


class PixelCNN(Checkpointed, nn.Module):
    """A PixelCNN (``gated`` false) or gated PixelCNN over (C = 1, H, W) images."""

    family: ClassVar[str] = "pixelcnn"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        gated: bool = False  # false: masked convolutions (van den Oord et al. 2016a, blind spot); true: the gated
        # PixelCNN's vertical and horizontal stacks (2016b), which see every earlier pixel
        channels: int = 32  # C, feature maps of every layer (the gated layers' gates use 2C)
        layers: int = 6  # layers after the first (7x7) one: masked 3x3 residual blocks, or gated layers
        first_kernel: int = 7  # the first layer's kernel (odd): mask A
        kernel: int = 3  # the later layers' kernel (odd)
        likelihood: str = "bernoulli"  # bernoulli (the zoo's binarized images) | categorical (256-way, 8-bit images)

        def validate(self) -> None:
            self.check_training("pixelcnn")
            for name in ("channels", "layers", "first_kernel", "kernel"):
                if getattr(self, name) < 1:
                    raise DulError(f"pixelcnn.{name} is {getattr(self, name)}: must be positive")
            for name in ("first_kernel", "kernel"):
                if getattr(self, name) % 2 == 0:
                    raise DulError(f"pixelcnn.{name} is {getattr(self, name)}: use an odd size (3, 5, 7)")
            if self.likelihood not in LIKELIHOODS:
                raise DulError(f"pixelcnn.likelihood is '{self.likelihood}'; {did_you_mean(self.likelihood, LIKELIHOODS)}")

    def __init__(self, image_shape: Sequence[int], gated: bool = False, channels: int = 32, layers: int = 6,
                 first_kernel: int = 7, kernel: int = 3, likelihood: str = "bernoulli"):
        super().__init__()
        image_shape = [int(s) for s in image_shape]
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise DulError(f"PixelCNN models grey images (H, W); got items of shape {image_shape}: "
                           "use an image dataset with one channel")
        if likelihood not in LIKELIHOODS:
            raise DulError(f"PixelCNN likelihood '{likelihood}'; {did_you_mean(likelihood, LIKELIHOODS)}")
        self.hyperparameters = {"image_shape": image_shape, "gated": bool(gated), "channels": channels,
                                "layers": layers, "first_kernel": first_kernel, "kernel": kernel,
                                "likelihood": likelihood}
        self.image_shape, self.gated, self.likelihood = tuple(image_shape), bool(gated), likelihood
        self.inputs = "binary" if likelihood == "bernoulli" else "real"  # what the zoo hands it
        outputs = 1 if likelihood == "bernoulli" else LEVELS
        if self.gated:
            self.stack = nn.ModuleList([GatedLayer(1, channels, first_kernel, first=True)]
                                       + [GatedLayer(channels, channels, kernel, first=False) for _ in range(layers)])
        else:
            self.first = MaskedConv2d(1, channels, first_kernel, "A")
            self.blocks = nn.ModuleList(nn.ModuleDict({"masked": MaskedConv2d(channels, channels, kernel, "B"),
                                                       "mix": nn.Conv2d(channels, channels, 1)})
                                        for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, outputs, 1))

    @classmethod
    def from_params(cls, params: PixelCNN.Params, shape: tuple[int, ...]) -> PixelCNN:
        """A PixelCNN for items of ``shape`` (1, H, W)."""
        if len(shape) != 3 or shape[0] != 1:
            raise DulError(f"pixelcnn models grey images (1, H, W); this dataset's items are {list(shape)}: "
                           "use an image dataset (digits, mnist, fashion-mnist)")
        return cls(shape[1:], params.gated, params.channels, params.layers, params.first_kernel, params.kernel,
                   params.likelihood)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on the mean negative log-likelihood of the batch, in nats per item."""
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        loss = -self.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    @property
    def n_inputs(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) or (B, 1, H, W) rows -> (B, 1, H, W) in the weights' dtype; items of another
        size are a one-line DulError."""
        if x.dim() < 2 or x[0].numel() != self.n_inputs:
            raise DulError(f"this PixelCNN models {self.image_shape[0]}x{self.image_shape[1]} grey images "
                           f"({self.n_inputs} pixels); got items of shape {list(x.shape[1:])}")
        return x.reshape(len(x), 1, *self.image_shape).to(self.head[-1].weight.dtype)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, outputs, H, W): pixel i's logits from the pixels before i only."""
        if self.gated:
            v = h = x
            for layer in self.stack:
                v, h = layer(v, h)
            return self.head(h)
        h = self.first(x)
        for block in self.blocks:
            h = h + block["mix"](F.relu(block["masked"](F.relu(h))))
        return self.head(h)

    def receptive_radius(self) -> int:
        """How far, in rows up and in columns either way, an output pixel's logits reach into the image:
        each layer's kernel adds its half-width; in the gated stacks the vertical stack reaches the horizontal
        one a row down, one more."""
        first, later = self.hyperparameters["first_kernel"] // 2, self.hyperparameters["kernel"] // 2
        return first + self.hyperparameters["layers"] * later + int(self.gated)

    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Exact log p(x) in nats, (B, D) -> (B,): binary pixels (bernoulli) or intensities in
        [0, 1] read as 8-bit values (categorical); ``samples`` is ignored."""
        x = self.images(x)
        logits = self.logits(x)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        levels = torch.round(x[:, 0] * (LEVELS - 1)).long()  # (B, H, W)
        return -F.cross_entropy(logits, levels, reduction="none").flatten(1).sum(1)

    def estimator(self, samples: int) -> str:
        return "exact"

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, D), pixel by pixel in raster order (one forward pass each): binary pixels,
        or intensities k / 255; the uniforms come from ``generator``, else the global RNG."""
        height, width = self.image_shape
        weight = self.head[-1].weight
        x = torch.zeros(n, 1, height, width, dtype=weight.dtype, device=weight.device)
        u = torch.rand(n, height * width, generator=generator, device=generator.device if generator else None)
        u = u.to(device=weight.device, dtype=torch.float64)
        reach = self.receptive_radius()
        for i in range(height * width):
            r, c = divmod(i, width)
            # pixel (r, c)'s logits see only the window of rows r - reach..r and columns c +- reach, and every
            # layer pads with zeros: the net runs on that window, not the image (4-5x less work on 28x28)
            top, left = max(0, r - reach), max(0, c - reach)
            window = x[:, :, top:r + 1, left:c + reach + 1]
            logits = self.logits(window)[:, :, r - top, c - left]  # (n, outputs)
            if self.likelihood == "bernoulli":
                x[:, 0, r, c] = (u[:, i] < torch.sigmoid(logits[:, 0]).double()).to(x.dtype)
            else:  # inverse CDF of the 256-way softmax
                cdf = torch.softmax(logits.double(), dim=1).cumsum(1)
                level = (cdf < u[:, i, None]).sum(1).clamp(max=LEVELS - 1)
                x[:, 0, r, c] = (level / (LEVELS - 1)).to(x.dtype)
        return x.reshape(n, -1)
