"""The classifier whose features the sample scores are computed in.

The FID's Inception network was trained on ImageNet; dul's datasets are not
ImageNet, nothing may be downloaded, and a network trained elsewhere would
score what it learned there. So dul trains its own: a small convolutional
classifier on the dataset's training split, as the zoo sees the images
(binarized by the zoo's protocol; the first half of it, the other half held
back for the sample report's real-data row), its epoch kept by validation
accuracy and its test accuracy stated (Salimans et al. 2016 and Li, Swersky & Zemel 2015
score MNIST samples with such a classifier too). Its features are the 128
units before the softmax layer.

    conv 3x3 (1 -> 32), ReLU, max-pool 2  ->  conv 3x3 (32 -> 64), ReLU, max-pool 2
    ->  linear (64 * H/4 * W/4 -> 128), ReLU  (the features)  ->  linear (128 -> classes)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError

FEATURES = 128


def grey_image_shape(card: dict, shape: tuple[int, ...], stage: str) -> tuple[int, ...]:
    """``shape`` if the dataset's items are grey images (1, H, W), else a one-line DulError for ``stage``."""
    if len(shape) != 3 or shape[0] != 1:
        raise DulError(f"{stage}: {card['dataset']}'s items are {list(shape)}, not grey images; the sample report "
                       "scores image samplers (run the other stages by name, e.g. dvc repro zoo)")
    return shape


def halves(n: int) -> tuple[slice, slice]:
    """The training rows the scorer learns from (the first half) and the held-back half the
    sample report's real-data row draws from: real items the scorer has not seen, like the test
    items, so the ceiling is not flattered by features the classifier fitted."""
    return slice(0, n - n // 2), slice(n - n // 2, n)


class ScorerNet(nn.Module):
    def __init__(self, image_shape: Sequence[int], n_classes: int):
        super().__init__()
        height, width = (int(s) for s in image_shape)
        if height < 4 or width < 4 or n_classes < 2:
            raise DulError(f"the sample scorer needs grey images of at least 4x4 and 2 or more classes, got "
                           f"{height}x{width} and {n_classes}")
        self.image_shape, self.n_classes = (height, width), n_classes
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.hidden = nn.Linear(64 * (height // 4) * (width // 4), FEATURES)
        self.output = nn.Linear(FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W) rows in [0, 1] -> (B, 128)."""
        x = x.reshape(len(x), 1, *self.image_shape)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.hidden(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))

    @torch.no_grad()
    def embed(self, X: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
        """Features of many rows, (N, H*W) -> (N, 128) float64."""
        self.eval()
        X = torch.as_tensor(np.array(X, dtype=np.float32))
        return torch.cat([self.features(x) for x in X.split(batch_size)]).double().numpy()

    @torch.no_grad()
    def accuracy(self, X: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
        self.eval()
        X = torch.as_tensor(np.array(X, dtype=np.float32))
        predicted = torch.cat([self(x).argmax(1) for x in X.split(batch_size)]).numpy()
        return float((predicted == np.asarray(y)).mean())

    def to_checkpoint(self) -> dict:
        return {"kind": "sample-scorer", "image_shape": list(self.image_shape), "n_classes": self.n_classes,
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> ScorerNet:
        if checkpoint.get("kind") != "sample-scorer":
            raise DulError("not a sample-scorer checkpoint; run the stage scorer (dvc repro scorer)")
        net = cls(checkpoint["image_shape"], checkpoint["n_classes"])
        net.load_state_dict(checkpoint["state_dict"])
        return net.eval()


def train_scorer(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                 image_shape: Sequence[int], *, epochs: int, batch_size: int, lr: float, seed: int,
                 on_epoch: Callable[[dict], None] | None = None) -> tuple[ScorerNet, list[dict]]:
    """Adam on the cross-entropy for ``epochs`` epochs; the net of the best validation epoch."""
    (X, y), (X_valid, y_valid) = train, valid
    if (np.asarray(y) < 0).all():
        raise DulError("the sample scorer is a classifier: this dataset has no labels to train it on")
    torch.manual_seed(seed)
    net = ScorerNet(image_shape, int(max(np.max(y), np.max(y_valid))) + 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    X, y = torch.as_tensor(np.array(X, dtype=np.float32)), torch.as_tensor(np.array(y, dtype=np.int64))
    best, history = (-1.0, None, 0), []
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + epoch))
        total = 0.0
        for batch in order.split(batch_size):
            loss = F.cross_entropy(net(X[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        row = {"epoch": epoch, "train_loss": total / len(X), "valid_accuracy": net.accuracy(X_valid, y_valid)}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if row["valid_accuracy"] > best[0]:
            best = (row["valid_accuracy"], copy.deepcopy(net.state_dict()), epoch)
    net.load_state_dict(best[1])
    return net.eval(), history
