"""NADE (components/models/nade.py): the exact likelihood checked against enumeration and
a naive loop over the conditionals, sampling against the density, learning, checkpoints,
params and the protocols."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from components.errors import DulError
from components.models import registry
from components.models.base import Density, Encoder, Model, Sampler
from components.models.nade import NADE


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def all_binary(D: int) -> torch.Tensor:
    """Every binary vector of length D, (2^D, D) float64, row i the bits of i (most significant first)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=torch.float64)


def randomised(model: torch.nn.Module, scale: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """The model in float64 with every parameter (biases too) drawn as scale * N(0, 1)."""
    model = model.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def prototypes_data(n: int, seed: int) -> torch.Tensor:
    """4 fixed prototype patterns of D = 12, each bit flipped with probability 0.05, (n, 12)."""
    prototypes = (torch.rand(4, 12, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    generator = torch.Generator().manual_seed(seed)
    rows = prototypes[torch.randint(4, (n,), generator=generator)]
    flips = (torch.rand(n, 12, generator=generator) < 0.05).float()
    return (rows + flips) % 2


def trained(model, steps: int = 3):
    optimizers = model.optimizers(type(model).Params(lr=0.05))
    for _ in range(steps):
        model.training_step(prototypes_data(30, seed=5)[:, :model.hyperparameters["n_inputs"]], optimizers)
    return model


def naive_nade_log_prob(model: NADE, x: torch.Tensor) -> torch.Tensor:
    """The paper's conditionals one d at a time: h_d = sigmoid(c + W[:, <d] x_<d)."""
    total = torch.zeros(len(x), dtype=x.dtype)
    for d in range(x.shape[1]):
        h = torch.sigmoid(model.c + x[:, :d] @ model.W[:, :d].T)  # (B, H)
        p = torch.sigmoid(model.b[d] + h @ model.V[d])  # (B,)
        total += x[:, d] * torch.log(p) + (1 - x[:, d]) * torch.log1p(-p)
    return total


# ---- exact likelihoods ----

def test_nade_sums_to_one_over_all_binary_vectors():
    with torch.no_grad():
        total = randomised(NADE(8, 6)).log_prob(all_binary(8)).exp().sum()
    assert abs(total.item() - 1) < 1e-5


def test_nade_log_prob_equals_a_loop_over_the_conditionals():
    model, x = randomised(NADE(8, 6), scale=1.5), all_binary(8)
    with torch.no_grad():
        fast, naive = model.log_prob(x), naive_nade_log_prob(model, x)
    assert torch.allclose(fast, naive, atol=1e-10, rtol=0)
    assert fast.std() > 0.5  # a distribution far from uniform: the comparison has something to compare


# ---- sampling ----

def test_nade_samples_are_reproducible_and_follow_log_prob():
    model = randomised(NADE(4, 5), scale=1.5)
    first = model.sample(64, torch.Generator().manual_seed(3))
    assert first.shape == (64, 4) and set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, model.sample(64, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, model.sample(64, torch.Generator().manual_seed(4)))
    samples = model.sample(20000, torch.Generator().manual_seed(5))
    index = (samples @ torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=samples.dtype)).long()  # row of all_binary(4)
    frequency = torch.bincount(index, minlength=16).double() / len(samples)
    with torch.no_grad():
        probability = model.log_prob(all_binary(4)).exp()
    assert probability.max() - probability.min() > 0.1  # not near uniform: a wrong sampler would show
    assert (frequency - probability).abs().max() < 0.02


# ---- training ----

def test_nade_adam_steps_raise_the_held_out_log_prob():
    torch.manual_seed(0)
    model, train, held_out = NADE(12, 32), prototypes_data(400, seed=1), prototypes_data(200, seed=2)
    optimizers = model.optimizers(NADE.Params(lr=0.01))
    with torch.no_grad():
        before = model.log_prob(held_out).mean().item()
    for step in range(400):
        figures = model.training_step(train[step % 8 * 50:(step % 8 + 1) * 50], optimizers)
    with torch.no_grad():
        after = model.log_prob(held_out).mean().item()
    assert figures["loss"].dim() == 0 and not figures["loss"].requires_grad
    assert before < -7.5  # about 12 log 2 = 8.3 nats untrained; the data's entropy is about 3.8
    assert after > before + 3 and after > -5.5, (before, after)


def test_nade_training_step_loss_is_the_batch_nll_before_the_step():
    model, x = NADE(6, 4), prototypes_data(20, seed=3)[:, :6]
    with torch.no_grad():
        expected = -model.log_prob(x).mean()
    loss = model.training_step(x, model.optimizers(NADE.Params(lr=0.01)))["loss"]
    assert torch.allclose(loss, expected)
    with torch.no_grad():
        assert -model.log_prob(x).mean() < expected  # and the step lowered it


# ---- checkpoints, params, protocols ----

def test_nade_checkpoint_round_trip_reproduces_log_prob(tmp_path):
    model, x = trained(NADE(12, 7)), prototypes_data(40, seed=6)
    torch.save(model.to_checkpoint(), tmp_path / "model.pt")
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["family"] == model.family and checkpoint["params"] == model.hyperparameters
    for loaded in (NADE.from_checkpoint(checkpoint), registry.load(tmp_path / "model.pt")):
        assert type(loaded) is NADE
        with torch.no_grad():
            assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_nade_state_dict_with_a_wrong_shape_raises():
    checkpoint = NADE(12, 7).to_checkpoint()
    checkpoint["state_dict"] = dict(checkpoint["state_dict"], W=torch.zeros(3, 3))
    with pytest.raises(RuntimeError, match="W"):
        NADE.from_checkpoint(checkpoint)
    with pytest.raises(DulError, match="does not match"):
        registry.load(checkpoint)


@pytest.mark.parametrize("changes, message", [
    (dict(hidden=0), "nade.hidden is 0: must be positive"),
    (dict(lr=0.0), "nade.lr is 0.0"),
    (dict(epochs=0), "nade.epochs is 0"),
])
def test_nade_params_reject_bad_values_naming_the_key(changes, message):
    NADE.Params().validate()
    with pytest.raises(DulError, match=message):
        dataclasses.replace(NADE.Params(), **changes).validate()


def test_nade_builds_for_a_shape_and_follows_the_protocols():
    assert NADE.from_params(NADE.Params(hidden=9), (2, 5)).W.shape == (9, 10)
    model = NADE(5, 3)
    assert isinstance(model, Model) and isinstance(model, Density) and isinstance(model, Sampler)
    assert not isinstance(model, Encoder)
    assert model.estimator(1) == "exact" and model.estimator(100) == "exact"
