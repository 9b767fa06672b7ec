"""Deep belief net fine-tuned as a classifier.

Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief
nets"; Hinton & Salakhutdinov (2006), whose 784-500-500-2000-10 net is the
reference: a stack of RBMs (784-500-500-2000) is pretrained greedily, its
recognition weights initialise a logistic multilayer net, a softmax layer of
10 units goes on top, and the whole net is fine-tuned by backpropagating the
cross-entropy of the labels. The same net from random weights is the
baseline that shows what pretraining buys.

Hidden layers: h_l = sigmoid(b_h_l + h_{l-1} W_l); output logits z = b + h_L V.

The deep Boltzmann machine's discriminative net (Salakhutdinov & Hinton 2009,
"Deep Boltzmann machines", section 4): a DBM's h1 gets input from above as
well as from below, so the feed-forward net is given that input too. For an
item v, the DBM's mean-field posterior marginal q2 = mu2 (the code
``DBM.mean_field`` infers) is computed once and kept fixed, and the net

    h1 = sigmoid(v W1 + q2 W2^T + b_h1),  h2 = sigmoid(h1 W2 + b_h2),  z = b + h2 V

starts from the DBM's W1, W2, b_h1, b_h2 (a fresh softmax layer V on top), so
that at the start h1 and h2 are one more mean-field sweep: h2 = mu2 at the
fixed point. Fine-tuning backpropagates the label cross-entropy through it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError


class Classifier(nn.Module):
    """What the two classifiers share: the training loss and the error rate of ``forward``'s logits."""

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(x)
        errors = (logits.argmax(dim=1) != y).float().mean()
        return {"loss": F.cross_entropy(logits, y), "error_rate": errors.detach()}

    @torch.no_grad()
    def error_rate(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
        """Fraction of misclassified items."""
        wrong = sum((self(x).argmax(dim=1) != t).sum().item() for x, t in zip(X.split(batch_size), y.split(batch_size)))
        return wrong / max(len(X), 1)


class DBNClassifier(Classifier):
    def __init__(self, sizes: Sequence[int], n_classes: int):
        """``sizes`` runs from the input to the top hidden layer, e.g. (784, 500, 500, 2000)."""
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1 or n_classes < 2:
            raise DulError(f"a DBN classifier needs two or more positive layer sizes and >= 2 classes, "
                           f"got sizes {sizes} and {n_classes} classes")
        self.sizes, self.n_classes = sizes, n_classes
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = nn.Linear(sizes[-1], n_classes)

    @classmethod
    def from_rbms(cls, rbms: Sequence[nn.Module], n_classes: int) -> DBNClassifier:
        """Recognition weights W_l, b_h_l of each trained layer; a fresh output layer."""
        sizes = [rbms[0].n_visible] + [rbm.n_hidden for rbm in rbms]
        for below, above in itertools.pairwise(rbms):
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


class MeanFieldClassifier(Classifier):
    """The DBM's mean-field-augmented net (see the module docstring): input ``x`` is
    [v, q2] (B, D + H2), from ``augment``; output the (B, n_classes) logits."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if n_inputs < 1 or len(hidden) != 2 or min(hidden) < 1 or n_classes < 2:
            raise DulError(f"a mean-field classifier needs n_inputs positive, two positive hidden sizes and >= 2 "
                           f"classes, got {n_inputs}, {hidden} and {n_classes} classes")
        self.n_inputs, self.hidden, self.n_classes = n_inputs, hidden, n_classes
        self.bottom = nn.Linear(n_inputs + hidden[1], hidden[0])  # [v, q2] -> h1: weight [W1^T, W2] (H1, D + H2)
        self.top = nn.Linear(hidden[0], hidden[1])  # h1 -> h2: weight W2^T (H2, H1)
        self.output = nn.Linear(hidden[1], n_classes)

    @classmethod
    def from_dbm(cls, dbm, n_classes: int) -> MeanFieldClassifier:
        """A net holding ``dbm``'s weights (anything with W1 (D, H1), W2 (H1, H2), b_h1, b_h2); a fresh output layer."""
        model = cls(dbm.W1.shape[0], (dbm.W1.shape[1], dbm.W2.shape[1]), n_classes)
        with torch.no_grad():
            model.bottom.weight.copy_(torch.cat([dbm.W1.T, dbm.W2], dim=1))
            model.bottom.bias.copy_(dbm.b_h1)
            model.top.weight.copy_(dbm.W2.T)
            model.top.bias.copy_(dbm.b_h2)
        return model

    @staticmethod
    @torch.no_grad()
    def augment(dbm, v: torch.Tensor, steps: int, batch_size: int = 1000) -> torch.Tensor:
        """[v, q2] (N, D + H2): each item with its mean-field marginals of the top layer after ``steps`` sweeps."""
        return torch.cat([torch.cat([x, dbm.mean_field(x, steps)[1]], dim=1) for x in v.split(batch_size)])

    def hidden_units(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = torch.sigmoid(self.bottom(x))
        return h1, torch.sigmoid(self.top(h1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D + H2) -> (B, n_classes) logits."""
        return self.output(self.hidden_units(x)[1])
