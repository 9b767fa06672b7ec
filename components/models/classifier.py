"""Deep belief net fine-tuned as a classifier.

Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief
nets"; Hinton & Salakhutdinov (2006), whose 784-500-500-2000-10 net is the
reference: a stack of RBMs (784-500-500-2000) is pretrained greedily, its
recognition weights initialise a logistic multilayer net, a softmax layer of
10 units goes on top, and the whole net is fine-tuned by backpropagating the
cross-entropy of the labels. The same net from random weights is the
baseline that shows what pretraining buys.

Hidden layers: h_l = sigmoid(b_h_l + h_{l-1} W_l); output logits z = b + h_L V.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError


class DBNClassifier(nn.Module):
    def __init__(self, sizes: Sequence[int], n_classes: int):
        """``sizes`` runs from the input to the top hidden layer, e.g. (784, 500, 500, 2000)."""
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1 or n_classes < 2:
            raise DulError(f"a DBN classifier needs two or more positive layer sizes and >= 2 classes, "
                           f"got sizes {sizes} and {n_classes} classes")
        self.sizes, self.n_classes = sizes, n_classes
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], n_classes)

    @classmethod
    def from_rbms(cls, rbms: Sequence[nn.Module], n_classes: int) -> "DBNClassifier":
        """Recognition weights W_l, b_h_l of each trained layer; a fresh output layer."""
        sizes = [rbms[0].n_visible] + [rbm.n_hidden for rbm in rbms]
        for below, above in zip(rbms[:-1], rbms[1:]):
            if below.n_hidden != above.n_visible:
                raise DulError(f"RBM stack does not chain: {below.n_hidden} hidden units feed {above.n_visible} visible")
        model = cls(sizes, n_classes)
        with torch.no_grad():
            for layer, rbm in zip(model.hidden, rbms):
                layer.weight.copy_(rbm.W.T)  # (H, D)
                layer.bias.copy_(rbm.b_h)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, n_classes) logits."""
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.output(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(x)
        errors = (logits.argmax(dim=1) != y).float().mean()
        return {"loss": F.cross_entropy(logits, y), "error_rate": errors.detach()}

    @torch.no_grad()
    def error_rate(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
        """Fraction of misclassified items."""
        wrong = sum((self(x).argmax(dim=1) != t).sum().item() for x, t in zip(X.split(batch_size), y.split(batch_size)))
        return wrong / max(len(X), 1)
