"""The Gaussian-latent model the VAE and IWAE families share (components/models/vae.py,
components/models/iwae.py): they differ only in the bound they train on.

Prior:          p(z) = N(0, I_L)                                        z (B, L)
Decoder:        f(z) = MLP(z) (B, D), and either
                x | z ~ Bernoulli(sigmoid(f(z)))   (``bernoulli``: binarised data; f gives logits), or
                x | z ~ N(f(z), diag(exp(s)))       (``gaussian``: s (D,) a learned per-pixel
                                                    log-variance, clamped to LOG_VAR_RANGE)
Encoder:        q(z | x) = N(mu(x), diag(exp(v(x)))),  [mu, v] = MLP(x)   (B, 2L)
Sample:         z = mu + exp(v / 2) * eps,  eps ~ N(0, I)  (reparameterisation)
Bound (ELBO):   L(x) = log p(x | z) - KL(q(z | x) || p(z)) <= log p(x)  (in expectation over z),
                KL = 1/2 sum_l (mu_l^2 + exp(v_l) - 1 - v_l)  (analytic)
Loss:           -L(x) averaged over the batch.
Estimate:       log p(x) ~= log 1/k sum_i p(x, z_i) / q(z_i | x),  z_i ~ q(z | x)
                (importance sampling: Burda et al. 2016's test protocol, k = 5000; its
                expectation L_k rises with k towards log p(x)).

encode(x) = mu(x) (B, L); reconstruct(x) = the likelihood's mean at z = mu(x) (B, D).

x is (B, D) with D = prod(item shape): images (B, C, H, W) are flattened.
Grey-level images under ``bernoulli`` give a cross-entropy, not a
log-likelihood: binarise them for densities comparable with the papers'.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError, did_you_mean
from components.models.base import Checkpointed, TrainingParams

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)
LOG_VAR_RANGE = (-9.0, 5.0)  # s: a constant pixel (MNIST's borders) cannot drive the density to infinity
CHUNK_ELEMENTS = 1 << 24  # log_prob: floats in the widest activation of one chunk of samples (64 MiB)


def mlp(sizes: Sequence[int], n_out: int) -> nn.Sequential:
    """Linear-tanh layers through ``sizes``, then a linear layer to ``n_out``.

    tanh, not softplus: both papers' experiments use it (Kingma & Welling
    2014, appendix C; Burda et al. 2016, section 5), and its bounded units
    keep the encoder's log-variances moderate early in training.
    """
    layers: list[nn.Module] = []
    for n_in, n_next in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_next), nn.Tanh()]
    layers.append(nn.Linear(sizes[-1], n_out))
    return nn.Sequential(*layers)


def check_positive(section: str, params, names: Sequence[str]) -> None:
    """DulError naming ``section.name`` for the first field that is not > 0."""
    for name in names:
        value = getattr(params, name)
        if value <= 0:
            raise DulError(f"{section}.{name} is {value}: must be positive")


@dataclasses.dataclass(frozen=True)
class LatentParams(TrainingParams):
    """The hyperparameters of a Gaussian-latent family (its params section adds ``section``)."""

    section: ClassVar[str] = "vae"  # the key in params.yaml (error messages name it)
    latent: int = 8  # L, the size of z (the code encode() gives; the papers: 50 on MNIST)
    hidden: tuple[int, ...] = (64,)  # tanh hidden widths from x to z; the decoder mirrors them (papers: 200, 200)
    likelihood: str = "bernoulli"  # bernoulli (binarised data) | gaussian (learned per-pixel variance)

    def validate(self) -> None:
        check_positive(self.section, self, ("latent", "epochs", "batch_size", "lr"))
        if any(width <= 0 for width in self.hidden):
            raise DulError(f"{self.section}.hidden is {list(self.hidden)}: every width must be positive")
        if self.likelihood not in LIKELIHOODS:
            raise DulError(f"{self.section}.likelihood is '{self.likelihood}'; "
                           f"{did_you_mean(self.likelihood, LIKELIHOODS)}")


class GaussianLatentModel(Checkpointed, nn.Module):
    """Gaussian-latent VAE with a Bernoulli or Gaussian likelihood (see the module docstring);
    a family subclasses it with its ``family`` name and ``Params``."""

    family: ClassVar[str]
    code_units = "linear"

    def __init__(self, n_inputs: int, latent: int, hidden: Sequence[int], likelihood: str):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise DulError(f"VAE likelihood '{likelihood}'; {did_you_mean(likelihood, LIKELIHOODS)}")
        hidden = [int(width) for width in hidden]
        self.latent, self.likelihood = latent, likelihood
        self.encoder = mlp([n_inputs, *hidden], 2 * latent)  # x -> [mu, v]
        self.decoder = mlp([latent, *reversed(hidden)], n_inputs)  # z -> logits or means
        if likelihood == "gaussian":
            self.log_var_x = nn.Parameter(torch.zeros(n_inputs))  # s (D,)
        self.hyperparameters = {"n_inputs": n_inputs, "latent": latent, "hidden": hidden, "likelihood": likelihood}

    @classmethod
    def from_params(cls, params: LatentParams, shape: tuple[int, ...]) -> GaussianLatentModel:
        return cls(math.prod(shape), params.latent, params.hidden, params.likelihood)

    def optimizers(self, params) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    @property
    def n_inputs(self) -> int:
        return self.hyperparameters["n_inputs"]  # D

    @property
    def code_size(self) -> int:
        return self.latent  # L

    # ---- the model ----

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, D) in the parameters' dtype."""
        return x.flatten(1).to(self.decoder[-1].weight.dtype)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x)'s mean mu and log-variance v, each (B, L), for x (B, D)."""
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z], (..., D) for z (..., L): sigmoid(f(z)) (bernoulli) or f(z) (gaussian)."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z), (..., B) for x (B, D) and z (..., B, L)."""
        out = self.decoder(z)  # (..., B, D)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
        log_var = self.log_var_x.clamp(*LOG_VAR_RANGE)  # (D,)
        return -0.5 * (LOG_2PI + log_var + (x - out) ** 2 * torch.exp(-log_var)).sum(-1)

    @staticmethod
    def kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(v)) || N(0, I)) = 1/2 sum_l (mu^2 + exp(v) - 1 - v), (B,)."""
        return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)

    def elbo(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L(x), KL), each (B,): log p(x | z) - KL for one reparameterised z ~ q(z | x)."""
        mu, log_var = self.posterior(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)  # (B, L)
        kl = self.kl(mu, log_var)
        return self.log_likelihood(x, z) - kl, kl

    def log_weights(self, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, k: int) -> torch.Tensor:
        """log w_i = log p(x, z_i) - log q(z_i | x) for k draws z_i ~ q(z | x): (k, B).

        log q uses eps directly ((z - mu)^2 / exp(v) = eps^2), exact to rounding.
        """
        eps = torch.randn((k, *mu.shape), dtype=mu.dtype, device=mu.device)  # (k, B, L)
        z = mu + torch.exp(0.5 * log_var) * eps
        log_q = -0.5 * (LOG_2PI + log_var + eps**2).sum(-1)  # (k, B)
        log_prior = -0.5 * (LOG_2PI + z**2).sum(-1)
        return self.log_likelihood(x, z) + log_prior - log_q

    # ---- the contract ----

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss": -mean ELBO, "elbo": mean ELBO, "kl": mean KL}, scalars with gradients."""
        elbo, kl = self.elbo(self.flat(x))
        return {"loss": -elbo.mean(), "elbo": elbo.mean(), "kl": kl.mean()}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One gradient step on ``loss(x)``; z drawn from the global torch generator."""
        figures = self.loss(x)
        for optimizer in optimizers:
            optimizer.zero_grad()
        figures["loss"].backward()
        for optimizer in optimizers:
            optimizer.step()
        return {name: value.detach() for name, value in figures.items()}

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """(B, D) -> (B,) nats, an evaluation (no gradient): ``samples`` = 1 gives
        the analytic-KL ELBO L(x) for one draw of z (a bound in expectation);
        k > 1 gives the importance-sampling estimate log 1/k sum_i w_i, its
        k draws taken in chunks of CHUNK_ELEMENTS floats (k = 5000 on 100
        MNIST images: chunks of 213) and combined by log-sum-exp."""
        if samples < 1:
            raise DulError(f"log_prob needs samples >= 1, got {samples}")
        x = self.flat(x)
        if samples == 1:
            return self.elbo(x)[0]
        mu, log_var = self.posterior(x)
        chunk = self.chunk_size(len(x))
        parts = [torch.logsumexp(self.log_weights(x, mu, log_var, min(chunk, samples - start)), 0)
                 for start in range(0, samples, chunk)]  # each (B,)
        return torch.logsumexp(torch.stack(parts), 0) - math.log(samples)

    def chunk_size(self, batch: int) -> int:
        """Samples per chunk of log_prob: CHUNK_ELEMENTS / (batch * widest layer)."""
        widest = max(self.n_inputs, 2 * self.latent, *self.hyperparameters["hidden"])
        return max(1, CHUNK_ELEMENTS // (batch * widest))

    def estimator(self, samples: int) -> str:
        return "elbo" if samples == 1 else f"is-{samples}"

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D): the likelihood's means at z ~ p(z) (probabilities for bernoulli).
        z is drawn on the generator's device, then moved to the parameters'."""
        weight = self.decoder[-1].weight
        where = generator.device if generator is not None else weight.device
        z = torch.randn(n, self.latent, generator=generator, device=where, dtype=weight.dtype).to(weight.device)
        return self.decode(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, L): the posterior mean mu(x)."""
        return self.posterior(self.flat(x))[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D): the likelihood's mean at z = mu(x) (probabilities for bernoulli)."""
        return self.decode(self.encode(x))
