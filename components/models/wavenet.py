"""WaveNet: causal dilated convolutions with gated units, here over bytes of text.

van den Oord, Dieleman, Zen, Simonyan, Vinyals, Graves, Kalchbrenner, Senior
& Kavukcuoglu (2016), "WaveNet: A generative model for raw audio"
(arXiv:1609.03499), sections 2.1-2.4. The chain rule over a sequence,
p(x) = prod_t p(x_t | x_<t), every conditional computed at once by
convolutions that never look ahead. For bytes (V = 256 symbols, the
paper's mu-law audio has 256 too):

    v_t   = onehot(x_{t-1})   (v_0 = 0: nothing before the sequence)   # (B, T, V)
    h     = causal_conv_k(v)                                           # (B, T, C)
    layer i, dilation d_i:  a = causal_conv_{k, d_i}(h)                # (B, T, 2C)
                            z = tanh(a_1) * sigmoid(a_2)               # the gated unit, (B, T, C)
                            h = h + W_res z,  s = s + W_skip z         # residual and skip
    logits = W_2 relu(W_1 relu(s))                                     # (B, T, V)
    p(x_t | x_<t) = softmax(logits_t)[x_t]

with dilations 1, 2, ..., 2^(layers - 1), repeated ``blocks`` times. Output t
sees v_{t-R+1}, ..., v_t, i.e. the bytes x_{t-R}, ..., x_{t-1}: R bytes of
context, R = ``receptive_field`` = 1 + (k - 1) (1 + blocks (2^layers - 1))
(256 for k = 2, 2 blocks of 7 layers).

``log_prob(x)`` is exact, nats per sequence (B,): a sequence scored from its
start, with nothing before it. ``stream_log_prob(stream)`` gives every byte
of a long stream its log-probability in nats, block by block, each block
with the R bytes before it as context: the same figures as one pass over the
whole stream, at any length (bits per character: the mean, over ln 2).
``sample`` draws bytes one at a time (a pass over the last R bytes each).
Training (``training_step``) is on windows of ``window`` bytes cut at random
from the training stream (components/training/family.py), the loss in nats
per byte. Two training options: ``lr_decay`` lowers Adam's rate linearly
over the epochs (lr times 1, (E-1)/E, ..., 1/E for E epochs; a resumed run
decays alike, as the DBM's joint stage does), and ``matmul_dtype: bfloat16``
runs the training step's matrix products in bfloat16 under autocast, the
weights, Adam's state and every score staying float32: measured 1.6x (32
channels) and 1.85x (64) the float32 steps a second on one thread of an
AMD EPYC with AVX-512 BF16, and refused where bf16 products are emulated
(``slow_bfloat16``).
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
from components.models.base import Checkpointed, SequenceParams
from components.models.nn.causal import CausalConv1d, causal_shift

V = 256  # bytes
BLOCK = 4096  # bytes of a stream scored per row by stream_log_prob
ROWS = 8  # rows of BLOCK + R bytes per forward pass


class ResidualLayer(nn.Module):
    """One gated layer: its dilated causal convolution, the residual and the skip outputs."""

    def __init__(self, channels: int, skip_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.dilated = CausalConv1d(channels, 2 * channels, kernel, dilation)
        self.residual = nn.Linear(channels, channels)
        self.skip = nn.Linear(channels, skip_channels)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = self.dilated(h).chunk(2, dim=-1)
        z = torch.tanh(first) * torch.sigmoid(second)  # (B, T, C)
        return h + self.residual(z), self.skip(z)


class WaveNet(Checkpointed, nn.Module):
    """WaveNet over byte sequences (see the module docstring)."""

    family: ClassVar[str] = "wavenet"
    inputs: ClassVar[str] = "sequence"  # the zoo hands it byte windows and streams, never fixed-size rows
    block: ClassVar[int] = BLOCK  # stream_log_prob's unit

    @dataclasses.dataclass(frozen=True)
    class Params(SequenceParams):
        channels: int = 64  # C, the residual channels (the gates use 2C)
        skip_channels: int = 128  # S, the skip connections' channels, summed over the layers
        head: int = 256  # hidden units of the output's first 1x1 layer (relu, W_1, relu, W_2); 0: W_2 only
        blocks: int = 2  # repeats of the dilation schedule
        layers: int = 7  # layers per block, dilations 1, 2, ..., 2^(layers - 1)
        kernel: int = 2  # taps of every causal convolution (the paper's 2)
        lr: float = 0.002  # Adam's learning rate
        lr_decay: bool = False  # the rate falls linearly over the epochs: lr times 1, (E-1)/E, ..., 1/E for E epochs
        matmul_dtype: str = "float32"  # float32 | bfloat16 (the training step's products under autocast; weights,
        # Adam and every score stay float32; refused on a device without native bf16 units)

        def validate(self) -> None:
            self.check_training("wavenet")
            if self.matmul_dtype not in ("float32", "bfloat16"):
                raise DulError(f"wavenet.matmul_dtype is {self.matmul_dtype!r}: use float32 or bfloat16")
            for name in ("channels", "skip_channels", "blocks", "layers"):
                if getattr(self, name) < 1:
                    raise DulError(f"wavenet.{name} is {getattr(self, name)}: must be positive")
            if self.kernel < 2:
                raise DulError(f"wavenet.kernel is {self.kernel}: use 2 or more taps")
            if self.head < 0:
                raise DulError(f"wavenet.head is {self.head}: 0 (none) or more units")

    def __init__(self, channels: int = 64, skip_channels: int = 128, head: int = 256, blocks: int = 2,
                 layers: int = 7, kernel: int = 2, epochs: int | None = None, lr_decay: bool = False,
                 matmul_dtype: str = "float32"):
        super().__init__()
        self.hyperparameters = {"channels": channels, "skip_channels": skip_channels, "head": head,
                                "blocks": blocks, "layers": layers, "kernel": kernel}
        if lr_decay and epochs is None:
            raise DulError("a wavenet whose rate decays over its epochs needs the run's epochs")
        if lr_decay or matmul_dtype != "float32":  # training options: a checkpoint without them loads as before
            self.hyperparameters.update(epochs=epochs, lr_decay=lr_decay, matmul_dtype=matmul_dtype)
        self.epochs, self.lr_decay, self.epoch = epochs, lr_decay, 0
        self.matmul_dtype = getattr(torch, matmul_dtype)
        self.first = CausalConv1d(V, channels, kernel)  # the paper's initial causal convolution
        self.stack = nn.ModuleList(ResidualLayer(channels, skip_channels, kernel, 2 ** i)
                                   for _ in range(blocks) for i in range(layers))
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(skip_channels, head), nn.ReLU(), nn.Linear(head, V)) if head \
            else nn.Sequential(nn.ReLU(), nn.Linear(skip_channels, V))

    @classmethod
    def from_params(cls, params: WaveNet.Params, shape: tuple[int | None, ...]) -> WaveNet:
        """A WaveNet for a sequence dataset (its card's shape is [null])."""
        if tuple(shape) != (None,):
            raise DulError(f"wavenet models byte sequences; this dataset's items have the fixed shape {list(shape)}: "
                           "ingest 20newsgroups with ingest.representation: chars")
        return cls(params.channels, params.skip_channels, params.head, params.blocks, params.layers, params.kernel,
                   epochs=params.epochs, lr_decay=params.lr_decay, matmul_dtype=params.matmul_dtype)

    @property
    def receptive_field(self) -> int:
        """R: the bytes before x_t that p(x_t | x_<t) depends on."""
        return self.first.receptive_field + sum(layer.dilated.receptive_field - 1 for layer in self.stack)

    def optimizers(self, params: SequenceParams) -> list[torch.optim.Optimizer]:
        if self.matmul_dtype == torch.bfloat16:
            reason = slow_bfloat16(self.out[-1].weight.device)
            if reason is not None:
                raise DulError(f"wavenet.matmul_dtype: bfloat16 would be slow here: {reason}; use float32")
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def start_epoch(self, epoch: int) -> None:
        """The loop's call before epoch ``epoch`` (0-based): the learning rate's schedule."""
        self.epoch = epoch

    def rate_factor(self) -> float:
        """The learning rate's factor in the current epoch e (0-based) of E: 1 - e / E with
        ``lr_decay``, else 1."""
        return 1.0 - self.epoch / self.epochs if self.lr_decay else 1.0

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on windows x (B, T); "loss": nats per byte, and bits per byte."""
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        for group in optimizer.param_groups:  # "initial_lr" is saved with the optimizer: a resumed run decays alike
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * self.rate_factor()
        weight = self.out[-1].weight
        with torch.autocast(weight.device.type, dtype=self.matmul_dtype, enabled=self.matmul_dtype != torch.float32):
            loss = -self.log_prob(x).mean() / x.shape[1]
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "bits_per_char": loss.detach() / math.log(2)}

    def net(self, v: torch.Tensor) -> torch.Tensor:
        """(B, T, V) inputs -> (B, T, V) logits; output t depends on v_{t-R+1..t} only."""
        h = self.first(v)
        skip = 0
        for layer in self.stack:
            h, s = layer(h)
            skip = skip + s
        return self.out(skip)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Bytes (B, T) -> (B, T, V): position t's logits for x_t, from x_{t-R..t-1}."""
        x = check_bytes(x)
        v = F.one_hot(x, V).to(self.out[-1].weight.dtype)
        return self.net(causal_shift(v, 1))

    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Exact log p(x) in nats of each sequence (B, T) -> (B,), scored from its start;
        ``samples`` is ignored."""
        logits = self.logits(x).float()  # float32 under bf16 autocast too: the softmax and the loss
        return -F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none").sum(1)

    def estimator(self, samples: int) -> str:
        return "exact"

    @torch.no_grad()
    def stream_log_prob(self, stream: torch.Tensor, blocks: torch.Tensor | None = None) -> torch.Tensor:
        """ln p(x_t | x_<t) of every byte of ``stream`` (L,), float64 (L,), as one pass from
        its start would give them; ``blocks``: indices of the ``block``-byte blocks to score
        (then (len(blocks) * BLOCK,) figures, the last block maybe shorter)."""
        stream = check_bytes(stream.reshape(1, -1))[0]
        R, L = self.receptive_field, len(stream)
        starts = range(0, L, BLOCK) if blocks is None else [int(b) * BLOCK for b in blocks]
        out, batch = {}, []
        for start in starts:
            if start < R or start + BLOCK > L:  # no full context, or short: on its own
                lo = max(0, start - R)
                out[start] = self._scores(stream[lo:start + BLOCK][None], start - lo)[0]
            else:
                batch.append(start)
            if len(batch) == ROWS or (batch and start == starts[-1]):
                rows = torch.stack([stream[s - R:s + BLOCK] for s in batch])
                out.update(zip(batch, self._scores(rows, R), strict=True))
                batch = []
        return torch.cat([out[start] for start in starts]) if out else torch.zeros(0, dtype=torch.float64)

    def _scores(self, rows: torch.Tensor, skip: int) -> torch.Tensor:
        """(n, T) bytes -> (n, T - skip) float64: ln p of each byte after the first ``skip``."""
        logp = torch.log_softmax(self.logits(rows)[:, skip:].double(), dim=-1)
        return logp.gather(-1, rows[:, skip:].long()[..., None])[..., 0].cpu()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, length: int = 256,
               prompt: bytes = b"") -> torch.Tensor:
        """n sequences (n, length) of bytes drawn after ``prompt`` (the prompt not included),
        each byte by the inverse CDF of p(x_t | the R bytes before it); the uniforms come from
        ``generator``, else the global RNG."""
        weight = self.out[-1].weight
        x = torch.tensor(list(prompt), dtype=torch.long, device=weight.device).repeat(n, 1)
        u = torch.rand(n, length, generator=generator, device=generator.device if generator else None)
        u = u.to(device=weight.device, dtype=torch.float64)
        for t in range(length):
            context = torch.cat([x[:, -self.receptive_field:], x.new_zeros(n, 1)], dim=1)  # the last: a placeholder
            cdf = torch.softmax(self.logits(context)[:, -1].double(), dim=-1).cumsum(-1)
            x = torch.cat([x, (cdf < u[:, t, None]).sum(-1, keepdim=True).clamp(max=V - 1)], dim=1)
        return x[:, len(prompt):]


def slow_bfloat16(device: torch.device) -> str | None:
    """Why bfloat16 products would be slow on ``device``, or None where it has native bf16
    units: AVX-512 BF16 or AMX on a CPU (torch's own cpuinfo), a bf16-capable GPU. The rule
    of pretrain.matmul_dtype (components/training/pretrain.py), which reads /proc/cpuinfo; a
    family imports no training code, so that its stage depends on its own file only."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"GPU {torch.cuda.get_device_name(device)} has no bf16 units"
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "this CPU has neither AVX-512 BF16 nor AMX, so bf16 products are emulated (35x slower measured)"
    return None


def check_bytes(x: torch.Tensor) -> torch.Tensor:
    """``x`` as long bytes, or a one-line DulError: sequences are integer tensors (B, T) in 0..255."""
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dim() != 2:
        images = " (images?)" if x.dtype.is_floating_point else ""
        raise DulError(f"wavenet models byte sequences, integer tensors (B, T) of values 0-255; got a "
                       f"{str(x.dtype).removeprefix('torch.')} tensor of shape {list(x.shape)}{images}: "
                       "ingest 20newsgroups with ingest.representation: chars")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= V):
        raise DulError(f"wavenet models bytes 0-255; got values {int(x.min())} to {int(x.max())}")
    return x.long()
