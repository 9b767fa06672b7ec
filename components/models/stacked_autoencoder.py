"""Stacked autoencoder, greedy layer-wise: plain, denoising or sparse, one family.

Bengio, Lamblin, Popovici & Larochelle (2007), "Greedy layer-wise training
of deep networks" (NIPS): a deep encoder built one autoencoder at a time,
each trained on the codes of the layers below; Vincent, Larochelle, Bengio &
Manzagol (2008), "Extracting and composing robust features with denoising
autoencoders" (ICML) and Vincent et al. (2010), "Stacked denoising
autoencoders" (JMLR): each layer reconstructs its clean input from a
corrupted one; Ng, CS294A lecture notes, "Sparse autoencoder" (section 3):
a KL penalty pulls each code unit's mean activation toward a target rho.

Layers l = 1..L of sizes D = H_0, H_1, ..., H_L (``hidden``), each a
tied-weight ``AutoencoderLayer`` (components/models/nn/autoencoder_layer.py, whose
maths this family reuses as it is): W_l (H_{l-1}, H_l), b_v^l (H_{l-1},), b_h^l (H_l,).

    h_0 = x,   h_l = sigmoid(b_h^l + h_{l-1} W_l)               the clean codes, (B, H_l)
    encode(x) = h_L
    reconstruct(x) = g_1(g_2(... g_L(h_L))),  g_l(h) = sigmoid(b_v^l + h W_l^T)   in [0, 1]

Layer l is trained on a = h_{l-1} (the clean codes of the frozen layers below)
with its own masking noise: a~ = a with round(noise * H_{l-1}) of each row's
entries set to 0 (a~ = a when noise = 0), and minimises, per batch of B rows,

    J_l = -(1/B) sum_b sum_i [a_i log a^_i + (1 - a_i) log(1 - a^_i)]
          + cost * sum_j KL(rho || rho^_j),
    a^ = sigmoid(b_v^l + sigmoid(b_h^l + a~ W_l) W_l^T),
    rho^_j = (1/B) sum_b sigmoid(b_h^l + a~ W_l)_bj,
    KL(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q)),

the cross-entropy against the clean a (``noise`` > 0: denoising) plus the KL
sparsity penalty (``sparsity_cost`` > 0: sparse; every layer's units are
logistic, so their means are in (0, 1) as the KL needs). Adam on the current
layer's W, b_v, b_h only.

The schedule: the loop runs ``epochs`` epochs in all (as for dbm, whose
stages share its ``epochs``: family.py's loop reads ``params.epochs`` as the
run's length), split evenly over the layers in order: before epoch e
(0-based; resumed runs too) ``start_epoch`` selects layer l = floor(e L / epochs),
so layer l trains during epochs [l E / L, (l + 1) E / L) (E = epochs, bounds
rounded up) and, when E is a multiple of L, for exactly E / L epochs each.
The layer in training is kept in a buffer (``layer``) and logged with the loss.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams
from components.models.nn.autoencoder_layer import AutoencoderLayer, sparsity_kl
from components.models.nn.rows import flatten

FAMILY = "stacked_autoencoder"


class StackedAutoencoder(Checkpointed, nn.Module):
    """A stack of tied-weight autoencoders over D = n_inputs units in [0, 1] (binarized or not), trained greedily (module docstring).

    Not a density and not a sampler: an autoencoder defines neither p(x) nor a way to draw from it.
    """

    family: ClassVar[str] = FAMILY
    # ``inputs`` (an instance attribute, from its params): "binary", the zoo's binarized images (as the
    # VAE's), or "real", the intensities in [0, 1], which the cross-entropy takes as soft targets.
    # The codes are logistic units in (0, 1), like NASH's and the DBM's mean-field mu2, which
    # are "binary" too: index and search threshold them at their training medians (base.Encoder).
    code_units = "binary"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        """A stack of tied-weight autoencoders trained greedily, layer by layer, on binarized
        images: plain, denoising (``noise``) or sparse (``sparsity_cost``); its codes are the
        top layer's logistic units. ``epochs`` is the whole run's, split evenly over the layers."""

        hidden: tuple[int, ...] = (500,)  # the layers' sizes, bottom to top; the last is the code. epochs (the run's
        # total) are split evenly over them: layer l trains during epochs [l E / L, (l + 1) E / L), the others frozen
        noise: float = 0.0  # masking noise: the fraction of each layer's inputs set to 0 per row, in [0, 1); > 0 is
        # a denoising autoencoder (Vincent et al. 2008)
        sparsity_target: float = 0.05  # rho, the mean activation the KL penalty pulls each code unit toward, in (0, 1)
        sparsity_cost: float = 0.0  # the weight of the KL penalty sum_j KL(rho || rho^_j) per layer; > 0 is a sparse
        # autoencoder (Ng's CS294A notes), 0 none
        inputs: str = "binary"  # binary: the images binarized by the zoo's protocol | real: the intensities in [0, 1]
        # (the cross-entropy's targets are then soft, as in Vincent et al. 2010)

        def validate(self) -> None:
            self.check_training(FAMILY)
            if not self.hidden:
                raise DulError(f"{FAMILY}.hidden is []: give at least one layer size")
            if min(self.hidden) < 1:
                raise DulError(f"{FAMILY}.hidden is {list(self.hidden)}: every layer size must be positive")
            if not 0.0 <= self.noise < 1.0:
                raise DulError(f"{FAMILY}.noise is {self.noise}: the fraction of inputs zeroed must be in [0, 1)")
            if self.sparsity_cost < 0:
                raise DulError(f"{FAMILY}.sparsity_cost is {self.sparsity_cost}: must be 0 or more")
            if not 0.0 < self.sparsity_target < 1.0:
                raise DulError(f"{FAMILY}.sparsity_target is {self.sparsity_target}: must be in (0, 1)")
            if self.inputs not in ("binary", "real"):
                raise DulError(f"{FAMILY}.inputs is '{self.inputs}': binary or real")
            if self.epochs < len(self.hidden):
                raise DulError(f"{FAMILY}.epochs is {self.epochs}: the run's epochs are split over the "
                               f"{len(self.hidden)} layers, so give at least {len(self.hidden)}")

    def __init__(self, n_inputs: int, hidden: Sequence[int], noise: float = 0.0, sparsity_target: float = 0.05,
                 sparsity_cost: float = 0.0, epochs: int = 1, inputs: str = "binary"):
        super().__init__()
        hidden = [int(size) for size in hidden]
        if n_inputs < 1 or not hidden or min(hidden) < 1 or epochs < len(hidden) or inputs not in ("binary", "real"):
            raise DulError(f"a stacked autoencoder needs n_inputs >= 1, at least one positive layer size, at least "
                           f"one epoch per layer and binary or real inputs; got {n_inputs}, {hidden}, {epochs} "
                           f"epochs and {inputs!r}")
        self.hyperparameters = {"n_inputs": n_inputs, "hidden": hidden, "noise": noise,
                                "sparsity_target": sparsity_target, "sparsity_cost": sparsity_cost, "epochs": epochs,
                                "inputs": inputs}
        self.inputs = inputs
        self.epochs = epochs
        sizes = [n_inputs, *hidden]
        self.layers = nn.ModuleList(
            AutoencoderLayer(n_visible, n_hidden, noise=noise, sparsity_target=sparsity_target,
                             sparsity_cost=sparsity_cost) for n_visible, n_hidden in itertools.pairwise(sizes))
        # The layer in training (an index into ``layers``), in the state dict with the weights.
        self.register_buffer("layer", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_params(cls, params: StackedAutoencoder.Params, shape: tuple[int, ...]) -> StackedAutoencoder:
        """A stack for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(math.prod(shape), params.hidden, params.noise, params.sparsity_target, params.sparsity_cost,
                   params.epochs, params.inputs)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_visible  # D

    @property
    def code_size(self) -> int:
        return self.layers[-1].n_hidden  # H_L

    # ---- training ----

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        """One Adam over every layer: the frozen layers have no gradient (``training_step``
        clears them), so Adam leaves them and their moments alone."""
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def layer_at(self, epoch: int) -> int:
        """The layer trained during epoch ``epoch`` (0-based): floor(epoch L / epochs), the last after the run."""
        return min(epoch * len(self.layers) // self.epochs, len(self.layers) - 1)

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        """The loop's call before epoch ``epoch`` (resumed runs included): train that epoch's layer."""
        self.layer.fill_(self.layer_at(epoch))

    @torch.no_grad()
    def codes(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """h_depth, the clean codes of the bottom ``depth`` layers: (B, D) -> (B, H_depth); depth 0 is x."""
        h = flatten(x, self.layers[0].W.dtype)
        for layer in self.layers[:depth]:
            h = layer.h_mean(h)
        return h

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """J of the layer in training on x (B, D) without its noise (the clean input a is its own
        corrupted one): ``loss`` = ``cross_entropy`` + cost * ``sparsity`` (the sum of the KLs,
        computed whatever the cost). With noise 0 this is what ``training_step`` descends."""
        return self._layer_loss(int(self.layer), self.codes(x, int(self.layer)))

    def _layer_loss(self, index: int, a: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss`` of layer ``index`` on its input a, the codes of the layers below."""
        layer = self.layers[index]
        cross_entropy = layer.loss(a)["loss"]
        sparsity = sparsity_kl(layer.h_mean(a), layer.sparsity_target)
        return {"loss": cross_entropy + layer.sparsity_cost * sparsity, "cross_entropy": cross_entropy,
                "sparsity": sparsity}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One Adam step of the layer in training on the batch x (B, D): its input is the clean codes
        of the layers below, its gradient the layer's own (``layer_step``: with its noise and sparsity
        penalty). Returns the layer's noise-free ``loss`` before the step and the ``layer`` index."""
        (optimizer,) = optimizers
        index = int(self.layer)
        a = self.codes(x, index)
        optimizer.zero_grad(set_to_none=True)  # the frozen layers: no gradient, so no step
        with torch.no_grad():
            loss = self._layer_loss(index, a)["loss"]
        self.layers[index].layer_step(a)
        optimizer.step()
        return {"loss": loss, "layer": torch.tensor(float(index))}

    # ---- the capabilities: Encoder, Reconstructor ----

    def filters(self) -> torch.Tensor:
        """(D, K): the first layer's weights into each of its hidden units, one a column (``Filters``: the picture of what the first layer learned)."""
        return self.layers[0].W.detach()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """h_L (B, H_L): the clean input up through every layer."""
        return self.codes(x, len(self.layers))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """(B, D) in [0, 1]: x up through the bottom ``depth`` layers (all by default) and back
        down through their tied weights, g_1(... g_depth(h_depth))."""
        depth = len(self.layers) if depth is None else depth
        h = self.codes(x, depth)
        for layer in reversed(self.layers[:depth]):
            h = layer.v_mean(h)
        return h

    @torch.no_grad()
    def validation_figures(self, x: torch.Tensor) -> dict[str, float]:
        """The loop's figure after every epoch: the squared error per item of the reconstruction
        through the layers trained so far (the bottom ones up to the one in training)."""
        v = flatten(x, self.layers[0].W.dtype)
        error = (v - self.reconstruct(v, int(self.layer) + 1)).square().sum(-1)
        return {"valid_recon_error": float(error.double().mean())}
