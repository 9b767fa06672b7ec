"""Variational autoencoder (VAE).

Kingma & Welling (2014), "Auto-encoding variational Bayes" (ICLR): a
generative model with continuous latents, trained by maximising a lower
bound on log p(x) with the reparameterised gradient:

    L(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x),

one reparameterised draw of z per item, the KL analytic. The model, its
estimates and its samples are the shared Gaussian-latent model's
(components/models/nn/gaussian_latent.py, where the maths and shapes are);
the IWAE family trains the same model on a tighter bound.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from components.models.nn.gaussian_latent import GaussianLatentModel, LatentParams


class VAE(GaussianLatentModel):
    """The Gaussian-latent model trained on the ELBO."""

    family: ClassVar[str] = "vae"

    @dataclasses.dataclass(frozen=True)
    class Params(LatentParams):
        section: ClassVar[str] = "vae"  # the key in params.yaml (error messages name it)
