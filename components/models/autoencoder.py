"""Deep autoencoder unrolled from a stack of RBMs.

Hinton & Salakhutdinov (2006), "Reducing the dimensionality of data with
neural networks", Science 313: a stack of RBMs (e.g. 784-1000-500-250-30)
is unrolled into an encoder with the RBMs' weights and a decoder with their
transposes; the encoder and decoder weights are then untied and fine-tuned
by backpropagating the cross-entropy of the reconstruction.

Encoder: logistic hidden layers, a linear (or logistic) code layer.
Decoder: logistic layers, then output units that match the data
(``input_units``, the first RBM's visible type):

- ``bernoulli``: logistic outputs, cross-entropy (pixel intensities in [0, 1]);
- ``gaussian``: linear outputs, squared error / 2 in standardised units.
  The model holds the training set's per-feature mean and std
  (``standardise``, a ``Standardise``; identity unless given): ``encode``,
  ``forward`` and ``codes`` take raw inputs and standardise them first,
  ``forward`` returns standardised reconstructions (what the loss fits, to
  ``target(x)``), ``decode`` and ``reconstruct`` return the data's units;
- ``poisson`` and ``softmax``: word counts. The outputs are a softmax over
  the vocabulary and the loss is the multinomial cross-entropy
  -sum_i v_i log softmax(z)_i, the Science paper's document autoencoder
  objective; the reconstruction is N softmax(z), N = the document's length.
  A ``softmax`` (replicated softmax) first layer scales its hidden biases by
  N, as that RBM does (Salakhutdinov & Hinton 2009).

For semantic hashing (Salakhutdinov & Hinton 2009) the logistic code
layer's inputs get Gaussian noise during fine-tuning (``forward(x, noise)``),
which pushes the codes towards 0 and 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError
from components.models.standardise import Standardise

INPUT_UNITS = ("bernoulli", "gaussian", "poisson", "softmax")
COUNT_UNITS = ("poisson", "softmax")


class DeepAutoencoder(nn.Module):
    def __init__(self, sizes: Sequence[int], code_units: str = "linear", input_units: str = "bernoulli"):
        """``sizes`` runs from the input to the code, e.g. (784, 1000, 500, 250, 30)."""
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise DulError(f"autoencoder sizes must be two or more positive ints, got {sizes}")
        if code_units not in ("linear", "binary"):
            raise DulError(f"autoencoder code_units must be 'linear' or 'binary', got {code_units!r}")
        if input_units not in INPUT_UNITS:
            raise DulError(f"autoencoder input_units must be one of {', '.join(INPUT_UNITS)}, got {input_units!r}")
        self.sizes = sizes
        self.code_units = code_units
        self.input_units = input_units
        pairs = list(itertools.pairwise(sizes))
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.decoder = nn.ModuleList(nn.Linear(b, a) for a, b in reversed(pairs))
        self.standardise = Standardise(sizes[0]) if input_units == "gaussian" else None

    @classmethod
    def from_rbms(cls, rbms: Sequence[nn.Module], standardise: dict | None = None) -> DeepAutoencoder:
        """Unroll a trained stack: encoder W_i, b_h_i; decoder W_i^T, b_v_i (untied copies).
        ``standardise``: {"mean", "std"} (D,) of the training inputs, for a Gaussian first layer."""
        sizes = [rbms[0].n_visible] + [rbm.n_hidden for rbm in rbms]
        for below, above in itertools.pairwise(rbms):
            if below.n_hidden != above.n_visible:
                raise DulError(f"RBM stack does not chain: {below.n_hidden} hidden units feed {above.n_visible} visible")
        code_units = "linear" if rbms[-1].hidden_type == "linear" else "binary"
        model = cls(sizes, code_units, getattr(rbms[0], "visible_type", "bernoulli"))
        with torch.no_grad():
            for layer, rbm in zip(model.encoder, rbms):
                layer.weight.copy_(rbm.W.T)  # (H, D)
                layer.bias.copy_(rbm.b_h)
            for layer, rbm in zip(model.decoder, reversed(rbms)):
                layer.weight.copy_(rbm.W)  # (D, H)
                layer.bias.copy_(rbm.b_v)
        if standardise is not None:
            if model.standardise is None:
                raise DulError(f"standardisation statistics apply to gaussian inputs, not {model.input_units}")
            model.standardise = Standardise.from_statistics(standardise)
            if len(model.standardise.mean) != sizes[0]:
                raise DulError(f"standardisation statistics for {len(model.standardise.mean)} features, "
                               f"but the stack has {sizes[0]} inputs; run pretrain again")
        return model

    @property
    def code_size(self) -> int:
        return self.sizes[-1]

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    def encode(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) data (raw: gaussian inputs are standardised here) -> (B, code_size) codes;
        ``noise`` (B, code_size) is added to the code layer's input."""
        x = self.code_inputs(x)
        if noise is not None:
            x = x + noise
        return x if self.code_units == "linear" else torch.sigmoid(x)

    def code_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) raw data -> (B, code_size): the code layer's total input, before its
        sigmoid (binary codes) and before any code noise."""
        x = self.target(x)
        for i, layer in enumerate(self.encoder):
            if i == 0 and self.input_units == "softmax":  # b_h scaled by the document length N
                z = torch.addmm(x.sum(dim=1, keepdim=True) * layer.bias, x, layer.weight.T)
            else:
                z = layer(x)
            x = torch.sigmoid(z) if i < len(self.encoder) - 1 else z
        return x

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            z = torch.sigmoid(layer(z))
        return self.decoder[-1](z)  # (B, D) logits

    def decode(self, z: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, code_size) -> (B, D) reconstruction: probabilities in [0, 1] for
        bernoulli, values in the data's units for gaussian, word distributions
        for counts (times ``length`` (B, 1) if given)."""
        return self._data_units(output_mean(self.decode_logits(z), self.input_units, length))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) mean reconstruction in the data's own units."""
        return self._data_units(output_mean(self(x), self.input_units, x.sum(dim=1, keepdim=True)))

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What the output logits fit, (B, D): x standardised for gaussian inputs, x itself otherwise."""
        return x if self.standardise is None else self.standardise(x)

    def _data_units(self, mean: torch.Tensor) -> torch.Tensor:
        return mean if self.standardise is None else self.standardise.inverse(mean)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) raw inputs -> (B, D) output logits, standardised reconstructions for gaussian
        inputs (what a DDP wrapper calls); ``noise``: see ``encode``."""
        return self.decode_logits(self.encode(x, noise))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``reconstruction_losses`` of raw x (B, D); for gaussian inputs the loss in
        standardised units, the squared error in the data's."""
        std = None if self.standardise is None else self.standardise.std  # (D,): standardised -> data units
        return reconstruction_losses(self(x), self.target(x), self.input_units, std)

    def codes(self, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
        """Binary codes for retrieval: code units above their thresholds, (B, code_size) bool."""
        return self.encode(x) > thresholds

    family = "deep-autoencoder"  # its name in the registry (components/models/registry.py)
    label = "autoencoder"  # what reports call it (metric names: precision_at_100/autoencoder)

    @property
    def hyperparameters(self) -> dict:
        return {"sizes": self.sizes, "code_units": self.code_units, "input_units": self.input_units}

    def to_checkpoint(self) -> dict:
        """Family, hyperparameters and state dict: loadable with ``torch.load(..., weights_only=True)``."""
        return {"family": self.family, "params": self.hyperparameters, "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> DeepAutoencoder:
        """From ``to_checkpoint()``, or the ``{"config", "state_dict"}`` form written before the registry."""
        params = checkpoint["params"] if "params" in checkpoint else checkpoint["config"]
        model = cls(params["sizes"], params["code_units"], params.get("input_units", "bernoulli"))
        model.load_state_dict(checkpoint["state_dict"])
        return model


def output_mean(logits: torch.Tensor, input_units: str, length: torch.Tensor | None = None) -> torch.Tensor:
    """The reconstruction the output units predict from their logits (B, D)."""
    if input_units == "bernoulli":
        return torch.sigmoid(logits)
    if input_units == "gaussian":
        return logits
    probabilities = torch.softmax(logits, dim=1)
    return probabilities if length is None else probabilities * length


def reconstruction_losses(logits: torch.Tensor, x: torch.Tensor, input_units: str = "bernoulli",
                          std: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The training loss summed over the D inputs and averaged over the batch,
    and the paper's squared reconstruction error (same reduction).

    bernoulli: cross-entropy; gaussian: squared error / 2 of standardised x
    against the logits, the squared error then scaled back to the data's
    units by the features' ``std`` (D,) if given; counts:
    -sum_i v_i log softmax(z)_i, with ``loss_per_word`` (its total over the
    batch's words: the log of the perplexity) also returned."""
    batch = len(x)
    if input_units == "bernoulli":
        loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
    elif input_units == "gaussian":
        loss = 0.5 * (logits - x).pow(2).sum() / batch
    else:
        total = -(x * torch.log_softmax(logits, dim=1)).sum()
        length = x.sum(dim=1, keepdim=True)
        squared_error = (output_mean(logits, input_units, length) - x).pow(2).sum() / batch
        return {"loss": total / batch, "squared_error": squared_error.detach(),
                "loss_per_word": (total / length.sum().clamp(min=1)).detach()}
    difference = output_mean(logits, input_units) - x  # (B, D)
    if std is not None:  # standardised -> data units: (z^ - z) * std = x^ - x
        difference = difference * std
    squared_error = difference.pow(2).sum() / batch
    return {"loss": loss, "squared_error": squared_error.detach()}
