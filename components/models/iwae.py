"""Importance-weighted autoencoder (IWAE).

Burda, Grosse & Salakhutdinov (2016), "Importance weighted autoencoders"
(ICLR): the VAE's model and encoder (components/models/nn/gaussian_latent.py), trained on
a tighter bound than the ELBO, the k-sample importance-weighted bound

    L_k(x) = E[log 1/k sum_i w_i],  w_i = p(x, z_i) / q(z_i | x),  z_1..z_k ~ q(z | x)  iid,

with L_1 = ELBO <= L_k <= L_{k+1} <= log p(x), and L_k -> log p(x) as k grows.
The loss is -log 1/k sum_i w_i for one set of k reparameterised draws,
averaged over the batch; its gradient is the standard one (the normalised
weights w_i / sum_j w_j times each sample's gradient), not DReG.

Shapes: x (B, D), log w (k, B). With k = 1 the bound is the ELBO, computed as
the VAE does (analytic KL: the same bound, with less variance). Evaluation
(log_prob, sample, encode) is the VAE's: the IS estimate with ``samples`` draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import torch

from components.errors import DulError
from components.models.nn.gaussian_latent import (
    GaussianLatentModel,
    LatentParams,
    check_positive,
)


class IWAE(GaussianLatentModel):
    """The VAE trained on L_k (see the module docstring)."""

    family: ClassVar[str] = "iwae"

    @dataclasses.dataclass(frozen=True)
    class Params(LatentParams):
        section: ClassVar[str] = "iwae"  # the key in params.yaml (error messages name it)
        k: int = 50  # importance samples in the training bound L_k (the paper trains with 1, 5 and 50)

        def validate(self) -> None:
            super().validate()
            check_positive(self.section, self, ("k",))

    def __init__(self, n_inputs: int, latent: int, hidden: Sequence[int], likelihood: str, k: int = 50):
        if k < 1:
            raise DulError(f"IWAE k is {k}: must be positive")
        super().__init__(n_inputs, latent, hidden, likelihood)
        self.k = k
        self.hyperparameters["k"] = k

    @classmethod
    def from_params(cls, params: IWAE.Params, shape: tuple[int, ...]) -> IWAE:
        return cls(math.prod(shape), params.latent, params.hidden, params.likelihood, params.k)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss": -mean L_k, "elbo": mean log w (the ELBO's estimate from the same
        draws), "kl": mean analytic KL(q || p)}, scalars with gradients."""
        if self.k == 1:
            return super().loss(x)
        x = self.flat(x)
        mu, log_var = self.posterior(x)
        log_w = self.log_weights(x, mu, log_var, self.k)  # (k, B)
        bound = torch.logsumexp(log_w, 0) - math.log(self.k)  # (B,)
        return {"loss": -bound.mean(), "elbo": log_w.mean(), "kl": self.kl(mu, log_var).mean()}
