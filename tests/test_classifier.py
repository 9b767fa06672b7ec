"""The DBN classifier: built from a stack, trains, and pretraining initialises it."""

import pytest
import torch

from components.errors import DulError
from components.models.rbm import BernoulliRBM
from components.models.classifier import DBNClassifier


def test_from_rbms_copies_the_recognition_weights():
    torch.manual_seed(0)
    rbms = [BernoulliRBM(6, 5), BernoulliRBM(5, 4)]
    model = DBNClassifier.from_rbms(rbms, n_classes=3)
    assert model.sizes == [6, 5, 4]
    x = torch.rand(7, 6)
    h = rbms[1].h_mean(rbms[0].h_mean(x))
    assert torch.allclose(torch.sigmoid(model.hidden[-1](torch.sigmoid(model.hidden[0](x)))), h, atol=1e-6)
    assert model(x).shape == (7, 3)


def test_it_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    prototypes = (torch.rand(3, 20, generator=g) > 0.5).float()
    y = torch.randint(0, 3, (300,), generator=g)
    x = (prototypes[y] + 0.2 * torch.rand(300, 20, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = DBNClassifier([20, 16], 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = model.error_rate(x, y)
    for _ in range(100):
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
    assert before > 0.3 and model.error_rate(x, y) == 0.0


def test_bad_shapes_are_clear_errors():
    with pytest.raises(DulError, match="does not chain"):
        DBNClassifier.from_rbms([BernoulliRBM(6, 5), BernoulliRBM(4, 3)], n_classes=2)
    with pytest.raises(DulError, match="classes"):
        DBNClassifier([6, 5], n_classes=1)
