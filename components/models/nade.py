"""NADE: the neural autoregressive distribution estimator, for binary vectors.

Larochelle & Murray (2011), "The neural autoregressive distribution
estimator" (AISTATS). The chain rule p(x) = prod_d p(x_d | x_<d) in the
natural pixel order, each conditional a one-hidden-layer network whose
hidden pre-activations share one weight matrix across d:

    a_1 = c,  a_{d+1} = a_d + W[:, d] x_d          W (H, D), c (H,)
    h_d = sigmoid(a_d)                              (H,)
    p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d)    V (D, H), b (D,)

so a_d = c + W[:, <d] x_<d is an exclusive cumulative sum over d and all D
conditionals cost O(DH) per item, not O(D^2 H). ``log_prob`` computes them
at once as tensors (B, D, H) (memory O(BDH)); ``sample`` draws x_1, ..., x_D
in turn, updating a_d as it goes. log p(x) is exact:

    log p(x) = sum_d x_d l_d - softplus(l_d),  l_d = b_d + V_d . h_d
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
from components.models.nn.rows import flatten, uniforms


class NADE(Checkpointed, nn.Module):
    """NADE over D = n_inputs binary units with H = hidden sigmoid units (see the module docstring)."""

    family: ClassVar[str] = "nade"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        hidden: int = 64  # H, hidden units shared by all D conditionals (the paper's 500 on MNIST)

        def validate(self) -> None:
            self.check_training("nade")
            if self.hidden < 1:
                raise DulError(f"nade.hidden is {self.hidden}: must be positive")

    def __init__(self, n_inputs: int, hidden: int):
        super().__init__()
        if n_inputs < 1 or hidden < 1:
            raise DulError(f"NADE needs at least one input and one hidden unit, got {n_inputs}x{hidden}")
        self.hyperparameters = {"n_inputs": n_inputs, "hidden": hidden}
        self.W = nn.Parameter(torch.empty(hidden, n_inputs).uniform_(-1, 1) / math.sqrt(n_inputs))  # (H, D)
        self.c = nn.Parameter(torch.zeros(hidden))  # (H,)
        self.V = nn.Parameter(torch.empty(n_inputs, hidden).uniform_(-1, 1) / math.sqrt(hidden))  # (D, H)
        self.b = nn.Parameter(torch.zeros(n_inputs))  # (D,)

    @classmethod
    def from_params(cls, params: NADE.Params, shape: tuple[int, ...]) -> NADE:
        """A NADE for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(n_inputs=math.prod(shape), hidden=params.hidden)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on the mean negative log-likelihood of the batch x (B, D), in nats per item."""
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        loss = -self.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """l_d = b_d + V_d . sigmoid(c + W[:, <d] x_<d) for every d at once: x (B, D) -> (B, D)."""
        x = flatten(x, self.W.dtype)
        steps = x[:, :, None] * self.W.T  # x_d W[:, d], (B, D, H)
        a = self.c + F.pad(torch.cumsum(steps[:, :-1], dim=1), (0, 0, 1, 0))  # a_d: sum over j < d, (B, D, H)
        return self.b + torch.einsum("bdh,dh->bd", torch.sigmoid(a), self.V)  # (B, D)

    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Exact log p(x) in nats, x (B, D) binary -> (B,); ``samples`` is ignored."""
        return -F.binary_cross_entropy_with_logits(self.logits(x), flatten(x, self.W.dtype),
                                                   reduction="none").sum(dim=1)

    def estimator(self, samples: int) -> str:
        return "exact"

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, D) of x, x_d ~ Bernoulli(p(x_d = 1 | x_<d)) for d = 1..D in turn.
        The uniforms (n, D) come from ``generator`` (on its own device), else the global RNG."""
        (H, D), dtype = self.W.shape, self.W.dtype
        u = uniforms(n, D, generator, self.W)
        x = torch.zeros(n, D, dtype=dtype, device=self.W.device)
        a = self.c.expand(n, H).clone()  # a_1 = c, (n, H)
        for d in range(D):
            p = torch.sigmoid(self.b[d] + torch.sigmoid(a) @ self.V[d])  # p(x_d = 1 | x_<d), (n,)
            x[:, d] = (u[:, d] < p).to(dtype)
            a += x[:, d, None] * self.W[:, d]  # a_{d+1} = a_d + W[:, d] x_d
        return x
