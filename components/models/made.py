"""MADE: the masked autoencoder for distribution estimation, for binary vectors.

Germain, Gregor, Murray & Larochelle (2015), "MADE: Masked autoencoder for
distribution estimation" (ICML). A ReLU MLP x (B, D) -> logits l (B, D) whose
weights are masked (components.models.nn.MaskedLinear) so that l_d depends
only on the inputs before d in an ordering: each input d gets a degree
m^0(d) in 1..D (its place in the ordering), each hidden unit k of layer l a
degree m^l(k) drawn uniformly from min_k' m^{l-1}(k') .. D-1, and

    hidden layer l:  M^l[k, j] = 1[m^l(k) >= m^{l-1}(j)]
    output layer:    M^V[d, k] = 1[m^0(d) >  m^L(k)]

so p(x) = prod_d p(x_d | x_<d) with p(x_d = 1 | x_<d) = sigmoid(l_d) and
log p(x) = sum_d x_d l_d - softplus(l_d), exact, in one pass.

Connectivity-agnostic training: with ``masks`` = K > 1 the model holds K
degree assignments (orderings too, if ``order_agnostic``) and each minibatch
trains under one of them, drawn from the global torch RNG. All K come from
``mask_seed`` and are kept as buffers ``degrees_l`` (K, n_l), so a
checkpoint reloads the masks it was trained with. At test time, with
``test_masks`` = M, the first M masks form an equal mixture:

    log p(x) = log (1/M) sum_m p_m(x)        (exact for the mixture)

and ``sample`` draws from that mixture: a mask m uniformly per sample, then
x in mask m's ordering, one input per pass (D passes per mask).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams
from components.models.nn.masked import MaskedLinear, degree_mask
from components.models.nn.rows import flatten, uniforms


class MADE(Checkpointed, nn.Module):
    """MADE over D = n_inputs binary units, ReLU hidden layers of sizes ``hidden`` (see the module docstring)."""

    family: ClassVar[str] = "made"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        hidden: tuple[int, ...] = (128,)  # ReLU hidden layer sizes, bottom to top (paper: (500,)); (): logistic autoregression
        masks: int = 1  # K connectivities trained, one drawn per minibatch (connectivity-agnostic when > 1)
        order_agnostic: bool = False  # each mask also draws its own input ordering (else the natural order)
        test_masks: int = 1  # M: log_prob and sample use the mixture of the first M masks (M <= masks)

        def validate(self) -> None:
            self.check_training("made")
            check_architecture("made", self.hidden, self.masks, self.test_masks)

    def __init__(self, n_inputs: int, hidden: Sequence[int], masks: int = 1, order_agnostic: bool = False,
                 test_masks: int = 1, mask_seed: int = 0):
        super().__init__()
        hidden = tuple(int(size) for size in hidden)
        if n_inputs < 1:
            raise DulError(f"MADE needs at least one input, got {n_inputs}")
        check_architecture("made", hidden, masks, test_masks)
        self.hyperparameters = {"n_inputs": n_inputs, "hidden": list(hidden), "masks": masks,
                                "order_agnostic": order_agnostic, "test_masks": test_masks, "mask_seed": mask_seed}
        sizes = (n_inputs, *hidden, n_inputs)
        self.layers = nn.ModuleList(MaskedLinear(a, b, persistent=False) for a, b in pairwise(sizes))
        for l, degrees in enumerate(draw_degrees(n_inputs, hidden, masks, order_agnostic, mask_seed)):
            self.register_buffer(f"degrees_{l}", degrees)  # (K, n_l): m^l of every mask
        self.current_mask = -1
        self.use_mask(0)
        self.register_load_state_dict_post_hook(_refresh_masks)  # loaded degrees: rebuild the layers' masks

    @classmethod
    def from_params(cls, params: MADE.Params, shape: tuple[int, ...]) -> MADE:
        """A MADE for items of ``shape`` ((D,) or (C, H, W), flattened), masks drawn from ``params.seed``."""
        return cls(n_inputs=math.prod(shape), hidden=params.hidden, masks=params.masks,
                   order_agnostic=params.order_agnostic, test_masks=params.test_masks, mask_seed=params.seed)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step on the batch x (B, D) under one mask drawn from the global RNG;
        "loss": that mask's mean negative log-likelihood, nats per item."""
        (optimizer,) = optimizers
        mask = int(torch.randint(self.hyperparameters["masks"], ()))
        optimizer.zero_grad(set_to_none=True)
        loss = -self.log_prob_under(x, mask).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def degrees(self, mask: int) -> list[torch.Tensor]:
        """m^0 (D,), m^1 (H_1,), ..., m^L (H_L,) of mask ``mask``."""
        return [getattr(self, f"degrees_{l}")[mask] for l in range(len(self.layers))]

    def use_mask(self, mask: int, force: bool = False) -> None:
        """Set every layer's connectivity to mask ``mask`` (0 <= mask < masks)."""
        if mask == self.current_mask and not force:
            return
        degrees = self.degrees(mask)
        for l, layer in enumerate(self.layers):
            last = l == len(self.layers) - 1
            layer.set_mask(degree_mask(degrees[l], degrees[0] if last else degrees[l + 1], strict=last))
        self.current_mask = mask

    def logits(self, x: torch.Tensor, mask: int = 0) -> torch.Tensor:
        """l (B, D) under mask ``mask``: l_d depends on x_j only where m^0(j) < m^0(d)."""
        self.use_mask(mask)
        h = flatten(x, self.layers[0].weight.dtype)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return self.layers[-1](h)

    def log_prob_under(self, x: torch.Tensor, mask: int) -> torch.Tensor:
        """Exact log p_mask(x) in nats, x (B, D) binary -> (B,)."""
        target = flatten(x, self.layers[0].weight.dtype)
        return -F.binary_cross_entropy_with_logits(self.logits(x, mask), target, reduction="none").sum(dim=1)

    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Exact log (1/M) sum_m p_m(x) over the first M = test_masks masks, (B, D) -> (B,);
        ``samples`` is ignored."""
        M = self.hyperparameters["test_masks"]
        if M == 1:
            return self.log_prob_under(x, 0)
        per_mask = torch.stack([self.log_prob_under(x, m) for m in range(M)])  # (M, B)
        return torch.logsumexp(per_mask, dim=0) - math.log(M)

    def estimator(self, samples: int) -> str:
        return "exact"

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, D) from the mixture of the first M = test_masks masks: per sample a mask m
        uniformly, then x_d ~ Bernoulli(sigmoid(l_d)) in m's ordering. Uniforms (n, D), then the
        mask choices (n,), come from ``generator`` (on its own device), else the global RNG."""
        weight = self.layers[0].weight
        u = uniforms(n, weight.shape[1], generator, weight)
        device = generator.device if generator is not None else weight.device
        choice = torch.randint(self.hyperparameters["test_masks"], (n,), generator=generator, device=device)
        choice = choice.to(weight.device)
        x = torch.zeros_like(u)
        for m in range(self.hyperparameters["test_masks"]):
            rows = (choice == m).nonzero().squeeze(1)
            x[rows] = self.sample_under(m, u[rows])
        return x

    def sample_under(self, mask: int, u: torch.Tensor) -> torch.Tensor:
        """Samples (r, D) under one mask from uniforms u (r, D): input d is 1 where u_d < p(x_d = 1 | x_<d)."""
        x = torch.zeros_like(u)
        for d in torch.argsort(self.degrees(mask)[0]).tolist():  # inputs in the mask's ordering
            p = torch.sigmoid(self.logits(x, mask)[:, d])  # (r,)
            x[:, d] = (u[:, d] < p).to(x.dtype)
        return x


def _refresh_masks(module: MADE, incompatible_keys) -> None:
    module.use_mask(module.current_mask, force=True)


def draw_degrees(D: int, hidden: tuple[int, ...], masks: int, order_agnostic: bool, seed: int) -> list[torch.Tensor]:
    """Degrees of K = masks connectivities from one seeded CPU generator: per layer l a
    tensor (K, n_l); m^0 is 1..D (a random permutation if ``order_agnostic``), m^l(k)
    uniform in min m^{l-1} .. D-1 (0 when D = 1: the unit sees no input)."""
    generator = torch.Generator().manual_seed(seed)
    per_mask = []
    for _ in range(masks):
        order = torch.randperm(D, generator=generator) + 1 if order_agnostic else torch.arange(1, D + 1)
        layers = [order]
        for size in hidden:
            low = min(int(layers[-1].min()), D - 1)
            layers.append(torch.randint(low, D, (size,), generator=generator))
        per_mask.append(layers)
    return [torch.stack(layer) for layer in zip(*per_mask)]


def check_architecture(section: str, hidden: tuple[int, ...], masks: int, test_masks: int) -> None:
    """Hidden sizes positive, 1 <= test_masks <= masks, as DulErrors naming the key."""
    for i, size in enumerate(hidden):
        if size < 1:
            raise DulError(f"{section}.hidden[{i}] is {size}: must be positive")
    for name, value in (("masks", masks), ("test_masks", test_masks)):
        if value < 1:
            raise DulError(f"{section}.{name} is {value}: must be positive")
    if test_masks > masks:
        raise DulError(f"{section}.test_masks is {test_masks}: must be at most {section}.masks ({masks}), "
                       "the masks trained")
