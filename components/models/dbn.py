"""Deep belief net: a stack of trained RBMs read as one generative model.

Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief
nets", Neural Computation 18. With layers 1..L trained greedily (layer l on
the hidden probabilities of layer l - 1), the model is

    p(v, h_1, ..., h_L) = p(h_{L-1}, h_L) * prod_{l < L-1} p(h_l | h_{l+1})    (h_0 = v)

where the top two layers form an undirected associative memory, the top RBM's
joint p(h_{L-1}, h_L), and every lower layer is a directed sigmoid belief net
that uses the RBM's generative (down) weights:
p(h_l,i = 1 | h_{l+1}) = sigmoid(b_v + W h_{l+1})_i of RBM l + 1.

Ancestral sampling: run block Gibbs sampling in the top RBM until it is near
equilibrium, then one down pass, drawing binary states through the lower
layers and keeping the means at the bottom (the picture). Recognition goes
up with the RBMs' E[h | v] (the approximate posterior of the paper, before
any up-down fine-tuning).

A top layer with linear hidden units (the autoencoder code layer) still
gives a proper Gibbs chain: its h | v ~ N(b_h + v W, I), unit-variance
Gaussian noise as in the RBM's ``sample_h``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from components.errors import DulError


class DeepBeliefNet(nn.Module):
    """``layers`` are trained RBMs, bottom (data) to top, each with W (D, H),
    b_v, b_h, ``hidden_type``, ``h_mean`` and ``v_mean``."""

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise DulError("a deep belief net needs at least one trained RBM layer")
        for i, (below, above) in enumerate(itertools.pairwise(layers), start=1):
            if below.n_hidden != above.n_visible:
                raise DulError(f"DBN layers do not chain: layer {i} has {below.n_hidden} hidden units, "
                               f"layer {i + 1} has {above.n_visible} visible; each layer must model the codes of the one below")
            if below.hidden_type != "binary":
                raise DulError(f"DBN layer {i} has {below.hidden_type} hidden units; only the top layer may be "
                               "non-binary (its hidden units feed no layer above)")
        for i, layer in enumerate(layers, start=1):
            if not hasattr(layer, "free_energy"):
                raise DulError(f"DBN layer {i} ({type(layer).__name__}) is not an RBM; a DBN samples from RBMs "
                               "(an autoencoder stack unrolls with DeepAutoencoder.from_rbms instead)")
            visible = getattr(layer, "visible_type", "bernoulli")
            bottom_below_top = i == 1 and len(layers) > 1  # its visibles are only ever means
            allowed = ("bernoulli", "gaussian") if bottom_below_top else ("bernoulli",)
            if visible not in allowed:
                raise DulError(f"DBN layer {i} has {visible} visible units; the DBN draws binary states above "
                               "the bottom layer, and the bottom (below the top RBM) may be bernoulli or gaussian")
        self.layers = nn.ModuleList(layers)

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].n_visible] + [layer.n_hidden for layer in self.layers]

    @torch.no_grad()
    def up(self, v: torch.Tensor) -> torch.Tensor:
        """Deterministic recognition pass: E[h | v] through every layer, (B, D) -> (B, H_top)."""
        for layer in self.layers:
            v = layer.h_mean(v)
        return v

    @torch.no_grad()
    def sample(self, n: int, gibbs_steps: int = 1000, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` ancestral samples, (n, D) visible means: in [0, 1] for Bernoulli
        data, in the standardised data units for a Gaussian bottom layer.

        The top RBM's chain starts from visible states drawn from its bias,
        Bernoulli(sigmoid(b_v)), and runs ``gibbs_steps`` steps v -> h -> v of
        block Gibbs sampling (binary states throughout; Gaussian for linear
        hidden units). Its last visible state goes down: binary draws from
        p(h_l | h_{l+1}) through the lower layers, E[v | h_1] at the bottom.
        A one-layer DBN (a single RBM) returns the chain's last E[v | h]. With
        ``generator`` all the draws come from it (reproducible samples).
        """
        if n < 1 or gibbs_steps < 0:
            raise DulError(f"DBN sample needs n >= 1 and gibbs_steps >= 0, got n={n}, gibbs_steps={gibbs_steps}")
        top = self.layers[-1]
        bias = torch.sigmoid(top.b_v).expand(n, -1)  # (n, H_{L-1})
        v_mean, v = bias, _bernoulli(bias, generator)
        for _ in range(gibbs_steps):
            h = self._draw_hidden(top, top.h_mean(v), generator)  # (n, H_L)
            v_mean = top.v_mean(h)  # (n, H_{L-1})
            v = _bernoulli(v_mean, generator)
        if len(self.layers) == 1:  # the top RBM's visibles are the data: keep the means
            return v_mean
        return self.down(v, generator)

    @torch.no_grad()
    def down(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The directed down pass from states ``h`` of the top RBM's visible layer
        (n, H_{L-1}) to the data: binary draws in between, means at the bottom, (n, D)."""
        if len(self.layers) == 1:  # no directed layers below the top RBM
            return h
        for layer in reversed(self.layers[1:-1]):
            h = _bernoulli(layer.v_mean(h), generator)
        return self.layers[0].v_mean(h)

    @staticmethod
    def _draw_hidden(layer: nn.Module, mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A draw of the hidden units given their mean: Bernoulli, or N(mean, 1) for linear units."""
        if layer.hidden_type == "linear":
            return mean + torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return _bernoulli(mean, generator)


def _bernoulli(mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary states with P(1) = mean; ``rand < mean`` as in the RBM (torch.bernoulli's distribution)."""
    return (torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype) < mean).to(mean.dtype)
