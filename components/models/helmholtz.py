"""Helmholtz machine: a layered sigmoid belief net with a recognition network, for binary vectors.

Hinton, Dayan, Frey & Neal (1995), "The wake-sleep algorithm for unsupervised
neural networks" (Science 268); Dayan, Hinton, Neal & Zemel (1995), "The
Helmholtz machine" (Neural Computation 7); Bornschein & Bengio (2015),
"Reweighted wake-sleep" (ICLR).

Generative model p, top down, over x (B, D) and binary layers h_1..h_L of
sizes H_1..H_L (``layers``, bottom to top), h_0 = x:

    p(h_L) = prod_j Bernoulli(h_Lj; sigmoid(b_j))                      b (H_L,)
    p(h_{l-1} | h_l) = prod_j Bernoulli(h_{l-1,j}; sigmoid(W_l h_l + c_l))   W_l (H_{l-1}, H_l)
    log p(x, h) = log p(h_L) + sum_{l=1..L} log p(h_{l-1} | h_l)

Recognition model q, bottom up, factorised in each layer:

    q(h_l | h_{l-1}) = prod_j Bernoulli(h_lj; sigmoid(R_l h_{l-1} + r_l))  R_l (H_l, H_{l-1})
    log q(h | x) = sum_{l=1..L} log q(h_l | h_{l-1})

where log Bernoulli(h; sigmoid(a)) = h a - softplus(a).

Training (``algorithm``), each step on a batch x:

- ``wake-sleep`` (Hinton et al. 1995). Wake: h ~ q(h | x), a step up
  log p(x, h) for p's weights. Sleep: (x~, h~) ~ p ancestrally (B draws, no
  data), a step up log q(h~ | x~) for q's weights. ``k`` and ``sleep_q`` are
  not used.
- ``rws`` (Bornschein & Bengio 2015). h_1..h_K ~ q(h | x), normalised weights
  w_k = softmax_k(log p(x, h_k) - log q(h_k | x)). p's update is
  sum_k w_k grad log p(x, h_k), a consistent estimator of grad log p(x); q's
  is the wake-phase sum_k w_k grad log q(h_k | x) (towards the exact
  posterior, grad of -KL(p(h | x) || q(h | x))), plus, with ``sleep_q``, the
  sleep-phase update above. ``sleep_q`` defaults to true, the paper's best
  setting (both q updates; its released MNIST settings give the wake and
  the sleep q updates one learning rate).

Samples and weights are drawn without gradients (the weights enter as
constants), so autograd of these losses gives the updates above and each
optimizer (one for p, one for q) sees only its own weights' gradients.

Evaluation: log_prob(x, S) = log 1/S sum_s p(x, h_s) / q(h_s | x), h_s ~ q
(importance sampling; in expectation a lower bound that rises with S
towards log p(x); S = 1 is the one-sample ELBO), its draws in chunks
combined by log-sum-exp. sample(n) = the means sigmoid(W_1 h_1 + c_1) (n, D)
of p(x | h_1) at h ~ p ancestrally. encode(x) = q(h_1 = 1 | x) (B, H_1),
q's mean of the bottom layer: the binary units the recognition network
infers, thresholded by the index like NASH's bits.
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
from components.models.nn.gaussian_latent import CHUNK_ELEMENTS
from components.models.nn.rows import flatten, uniforms

ALGORITHMS = ("rws", "wake-sleep")


def bernoulli_log_prob(logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """sum_j h_j a_j - softplus(a_j) over the last dimension, broadcast: (..., H) -> (...)."""
    logits, h = torch.broadcast_tensors(logits, h)
    return -F.binary_cross_entropy_with_logits(logits, h, reduction="none").sum(-1)


def check_layers(layers: Sequence[int], where: str) -> None:
    if len(layers) == 0 or any(size < 1 for size in layers):
        raise DulError(f"{where} is {list(layers)}: give at least one layer, every size positive")


class HelmholtzMachine(Checkpointed, nn.Module):
    """Sigmoid belief net p with recognition net q (see the module docstring)."""

    family: ClassVar[str] = "helmholtz"
    code_units = "binary"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        layers: tuple[int, ...] = (64,)  # H_1..H_L, binary latent layer sizes bottom to top (papers: 200 or 200, 200)
        algorithm: str = "rws"  # rws (reweighted wake-sleep, Bornschein & Bengio 2015) | wake-sleep (Hinton 1995)
        k: int = 5  # rws: samples from q per item and step (the paper's 5); wake-sleep draws one
        sleep_q: bool = True  # rws: add the sleep-phase q update to the wake-phase one (the paper's best)

        def validate(self) -> None:
            self.check_training("helmholtz")
            check_layers(self.layers, "helmholtz.layers")
            if self.algorithm not in ALGORITHMS:
                raise DulError(f"helmholtz.algorithm is '{self.algorithm}'; {did_you_mean(self.algorithm, ALGORITHMS)}")
            if self.k < 1:
                raise DulError(f"helmholtz.k is {self.k}: must be positive")

    def __init__(self, n_inputs: int, layers: Sequence[int], algorithm: str = "rws", k: int = 5,
                 sleep_q: bool = True):
        super().__init__()
        layers = [int(size) for size in layers]
        check_layers(layers, "Helmholtz machine layers")
        if n_inputs < 1 or k < 1:
            raise DulError(f"Helmholtz machine needs n_inputs and k positive, got {n_inputs} and {k}")
        if algorithm not in ALGORITHMS:
            raise DulError(f"Helmholtz machine algorithm '{algorithm}'; {did_you_mean(algorithm, ALGORITHMS)}")
        self.algorithm, self.k, self.sleep_q = algorithm, k, bool(sleep_q)
        self.hyperparameters = {"n_inputs": n_inputs, "layers": layers, "algorithm": algorithm, "k": k,
                                "sleep_q": self.sleep_q}
        sizes = [n_inputs, *layers]  # H_0 = D, H_1, ..., H_L
        self.prior = nn.Parameter(torch.zeros(layers[-1]))  # b (H_L,), p(h_L)'s logits
        # generative[l - 1]: h_l -> logits of h_{l-1} (W_l, c_l); recognition[l - 1]: h_{l-1} -> logits of h_l (R_l, r_l)
        self.generative = nn.ModuleList(nn.Linear(sizes[l], sizes[l - 1]) for l in range(1, len(sizes)))
        self.recognition = nn.ModuleList(nn.Linear(sizes[l - 1], sizes[l]) for l in range(1, len(sizes)))

    @classmethod
    def from_params(cls, params: HelmholtzMachine.Params, shape: tuple[int, ...]) -> HelmholtzMachine:
        """A Helmholtz machine for items of ``shape`` ((D,) or (C, H, W), flattened)."""
        return cls(math.prod(shape), params.layers, params.algorithm, params.k, params.sleep_q)

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        """Adam for p's weights (prior and generative layers), Adam for q's (recognition layers)."""
        generative = [self.prior, *self.generative.parameters()]
        return [torch.optim.Adam(generative, lr=params.lr), torch.optim.Adam(self.recognition.parameters(), lr=params.lr)]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]  # D

    @property
    def code_size(self) -> int:
        return self.hyperparameters["layers"][0]  # H_1

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x, self.prior.dtype)

    # ---- the two networks ----

    def generative_terms(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)], each (...,) for x (B, D) and
        hs = [h_1, ..., h_L], h_l (..., B, H_l)."""
        below = [x, *hs[:-1]]
        terms = [bernoulli_log_prob(layer(h), under) for layer, h, under in zip(self.generative, hs, below)]
        return terms + [bernoulli_log_prob(self.prior.expand_as(hs[-1]), hs[-1])]

    def recognition_terms(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[log q(h_1 | x), log q(h_2 | h_1), ..., log q(h_L | h_{L-1})], each (...,)."""
        below = [x, *hs[:-1]]
        return [bernoulli_log_prob(layer(under), h) for layer, h, under in zip(self.recognition, hs, below)]

    def log_joint(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """log p(x, h), (...,)."""
        terms = self.generative_terms(x, hs)
        return sum(terms[1:], terms[0])

    def log_q(self, x: torch.Tensor, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """log q(h | x), (...,)."""
        terms = self.recognition_terms(x, hs)
        return sum(terms[1:], terms[0])

    @torch.no_grad()
    def recognise(self, x: torch.Tensor, k: int) -> list[torch.Tensor]:
        """k draws h ~ q(h | x) bottom up: [h_1, ..., h_L], h_l (k, B, H_l), no gradient."""
        h, hs = x.expand(k, *x.shape), []
        for layer in self.recognition:
            p = torch.sigmoid(layer(h))
            h = (torch.rand_like(p) < p).to(p.dtype)
            hs.append(h)
        return hs

    @torch.no_grad()
    def dream(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, list]:
        """n ancestral draws from p, top down: (E[x | h_1] (n, D), x (n, D), [h_1, ..., h_L]).
        Uniforms come from ``generator`` (on its own device), else the global RNG."""
        p = torch.sigmoid(self.prior).expand(n, -1)  # (n, H_L)
        hs: list[torch.Tensor] = []
        for layer in reversed(self.generative):
            h = (uniforms(n, p.shape[1], generator, p) < p).to(p.dtype)
            hs.insert(0, h)
            p = torch.sigmoid(layer(h))
        x = (uniforms(n, p.shape[1], generator, p) < p).to(p.dtype)
        return p, x, hs

    # ---- training ----

    def importance(self, x: torch.Tensor, k: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(hs, log p(x, h_k), log q(h_k | x)) for k draws h_k ~ q(h | x): logs (k, B), with
        gradients for p's and q's weights respectively; the draws have none."""
        hs = self.recognise(x, k)
        return hs, self.log_joint(x, hs), self.log_q(x, hs)

    def sleep_loss(self, n: int) -> torch.Tensor:
        """-mean log q(h~ | x~) over n dreams (x~, h~) ~ p: the sleep phase, data-free."""
        _, x, hs = self.dream(n)
        return -self.log_q(x, hs).mean()

    def wake_sleep_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"p": -mean log p(x, h), h ~ q (wake), "q": the sleep loss over len(x) dreams,
        "elbo": mean log p(x, h) - log q(h | x) of the wake draw (no gradient)}."""
        _, log_p, log_q = self.importance(x, 1)
        return {"p": -log_p.mean(), "q": self.sleep_loss(len(x)), "elbo": (log_p - log_q).detach().mean()}

    def rws_losses(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """{"p": -mean_B sum_k w_k log p(x, h_k), "q": -mean_B sum_k w_k log q(h_k | x) (+ the sleep
        loss with sleep_q), "bound": mean log 1/k sum_k p/q (no gradient), "weights": w (k, B)}."""
        _, log_p, log_q = self.importance(x, k)
        log_w = (log_p - log_q).detach()  # (k, B)
        w = torch.softmax(log_w, 0)
        q_loss = -(w * log_q).sum(0).mean()
        if self.sleep_q:
            q_loss = q_loss + self.sleep_loss(len(x))
        bound = (torch.logsumexp(log_w, 0) - math.log(k)).mean()
        return {"p": -(w * log_p).sum(0).mean(), "q": q_loss, "bound": bound, "weights": w}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One step of ``algorithm`` for p and q; "loss" is minus the batch's mean bound from the
        same draws (one-sample ELBO for wake-sleep, log 1/k sum_k p/q for rws)."""
        x = self.flat(x)
        if self.algorithm == "rws":
            losses = self.rws_losses(x, self.k)
            bound = losses["bound"]
        else:
            losses = self.wake_sleep_losses(x)
            bound = losses["elbo"]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        (losses["p"] + losses["q"]).backward()  # disjoint weights: each loss reaches its own network only
        for optimizer in optimizers:
            optimizer.step()
        return {"loss": -bound, "p_loss": losses["p"].detach(), "q_loss": losses["q"].detach()}

    # ---- the contract ----

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """(B, D) -> (B,) nats: log 1/S sum_s p(x, h_s) / q(h_s | x), h_s ~ q(h | x) (S = ``samples``;
        S = 1 is the one-sample ELBO), in chunks of CHUNK_ELEMENTS floats combined by log-sum-exp."""
        if samples < 1:
            raise DulError(f"log_prob needs samples >= 1, got {samples}")
        x = self.flat(x)
        chunk = self.chunk_size(len(x))
        parts = []
        for start in range(0, samples, chunk):
            _, log_p, log_q = self.importance(x, min(chunk, samples - start))
            parts.append(torch.logsumexp(log_p - log_q, 0))  # (B,)
        return torch.logsumexp(torch.stack(parts), 0) - math.log(samples)

    def chunk_size(self, batch: int) -> int:
        """Samples per chunk of log_prob: CHUNK_ELEMENTS / (batch * widest layer), so 5000
        samples of 100 MNIST images take chunks of 213 (64 MiB a float32 activation)."""
        return max(1, CHUNK_ELEMENTS // (batch * max(self.n_inputs, *self.hyperparameters["layers"])))

    def estimator(self, samples: int) -> str:
        return "elbo" if samples == 1 else f"is-{samples}"

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D): the means of p(x | h_1), probabilities, at h ~ p drawn ancestrally."""
        return self.dream(n, generator)[0]

    def filters(self) -> torch.Tensor:
        """(D, K): the recognition weights into each first-layer unit, one a column (``Filters``: the picture of what the first layer learned)."""
        return self.recognition[0].weight.T.detach()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, H_1): q(h_1 = 1 | x) = sigmoid(R_1 x + r_1)."""
        return torch.sigmoid(self.recognition[0](self.flat(x)))
