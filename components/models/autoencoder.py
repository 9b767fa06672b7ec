"""Deep autoencoder unrolled from a stack of RBMs.

Hinton & Salakhutdinov (2006), "Reducing the dimensionality of data with
neural networks", Science 313: a stack of RBMs (e.g. 784-1000-500-250-30)
is unrolled into an encoder with the RBMs' weights and a decoder with their
transposes; the encoder and decoder weights are then untied and fine-tuned
by backpropagating the cross-entropy of the reconstruction.

Encoder: logistic hidden layers, a linear (or logistic) code layer.
Decoder: logistic layers, logistic output units (data in [0, 1]).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError


class DeepAutoencoder(nn.Module):
    def __init__(self, sizes: Sequence[int], code_units: str = "linear"):
        """``sizes`` runs from the input to the code, e.g. (784, 1000, 500, 250, 30)."""
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise DulError(f"autoencoder sizes must be two or more positive ints, got {sizes}")
        if code_units not in ("linear", "binary"):
            raise DulError(f"autoencoder code_units must be 'linear' or 'binary', got {code_units!r}")
        self.sizes = sizes
        self.code_units = code_units
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.decoder = nn.ModuleList(nn.Linear(b, a) for a, b in reversed(pairs))

    @classmethod
    def from_rbms(cls, rbms: Sequence[nn.Module]) -> "DeepAutoencoder":
        """Unroll a trained stack: encoder W_i, b_h_i; decoder W_i^T, b_v_i (untied copies)."""
        sizes = [rbms[0].n_visible] + [rbm.n_hidden for rbm in rbms]
        for below, above in zip(rbms[:-1], rbms[1:]):
            if below.n_hidden != above.n_visible:
                raise DulError(f"RBM stack does not chain: {below.n_hidden} hidden units feed {above.n_visible} visible")
        code_units = "linear" if rbms[-1].hidden_type == "linear" else "binary"
        model = cls(sizes, code_units)
        with torch.no_grad():
            for layer, rbm in zip(model.encoder, rbms):
                layer.weight.copy_(rbm.W.T)  # (H, D)
                layer.bias.copy_(rbm.b_h)
            for layer, rbm in zip(model.decoder, reversed(rbms)):
                layer.weight.copy_(rbm.W)  # (D, H)
                layer.bias.copy_(rbm.b_v)
        return model

    @property
    def code_size(self) -> int:
        return self.sizes[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) in [0, 1] -> (B, code_size) codes."""
        for layer in self.encoder[:-1]:
            x = torch.sigmoid(layer(x))
        z = self.encoder[-1](x)
        return z if self.code_units == "linear" else torch.sigmoid(z)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            z = torch.sigmoid(layer(z))
        return self.decoder[-1](z)  # (B, D) logits

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, code_size) -> (B, D) reconstruction in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) reconstruction logits (what a DDP wrapper calls)."""
        return self.decode_logits(self.encode(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_losses(self(x), x)

    def codes(self, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
        """Binary codes for retrieval: code units above their thresholds, (B, code_size) bool."""
        return self.encode(x) > thresholds

    def to_checkpoint(self) -> dict:
        """Config plus state dict: loadable with ``torch.load(..., weights_only=True)``."""
        config = {"model": "deep-autoencoder", "sizes": self.sizes, "code_units": self.code_units}
        return {"config": config, "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "DeepAutoencoder":
        config = checkpoint["config"]
        model = cls(config["sizes"], config["code_units"])
        model.load_state_dict(checkpoint["state_dict"])
        return model


def reconstruction_losses(logits: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy summed over pixels and averaged over the batch (the training
    loss), and the paper's squared reconstruction error (same reduction)."""
    cross_entropy = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    squared_error = (torch.sigmoid(logits) - x).pow(2).sum() / len(x)
    return {"loss": cross_entropy, "squared_error": squared_error.detach()}
