"""MADE (components/models/made.py): exact likelihoods checked against enumeration, the mask
ensemble, the autoregressive property by gradients, sampling against the density, learning with a mask per minibatch,
checkpoints that keep their masks, params and the protocols."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from components.config import parse_dataclass
from components.errors import DulError
from components.models import registry
from components.models.base import Density, Encoder, Model, Sampler
from components.models.made import MADE

MADE_CONFIGS = [  # D = 8: one mask; several masks in the natural order; order-agnostic, test_masks 1 and 3
    dict(hidden=[24, 24], masks=1),
    dict(hidden=[24], masks=3, test_masks=3),
    dict(hidden=[24, 24], masks=4, order_agnostic=True, test_masks=1),
    dict(hidden=[24, 24], masks=4, order_agnostic=True, test_masks=3),
    dict(hidden=[], masks=2, order_agnostic=True, test_masks=2),
]


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


def made(n_inputs: int = 8, seed: int = 0, **config) -> MADE:
    return randomised(MADE(n_inputs, mask_seed=seed, **config), seed=seed)


# ---- exact likelihoods ----

@pytest.mark.parametrize("config", MADE_CONFIGS)
def test_made_sums_to_one_over_all_binary_vectors(config):
    model, x = made(**config), all_binary(8)
    with torch.no_grad():
        assert abs(model.log_prob(x).exp().sum().item() - 1) < 1e-5
        for mask in range(config["masks"]):  # every trained mask alone is normalised too
            assert abs(model.log_prob_under(x, mask).exp().sum().item() - 1) < 1e-5


def test_made_test_masks_average_the_first_masks_probabilities():
    model, x = made(hidden=[24, 24], masks=4, order_agnostic=True, test_masks=3), all_binary(8)
    with torch.no_grad():
        mixture = torch.stack([model.log_prob_under(x, m).exp() for m in range(3)]).mean(dim=0)
        assert torch.allclose(model.log_prob(x).exp(), mixture, atol=1e-12, rtol=0)
        assert (model.log_prob(x) - model.log_prob_under(x, 0)).abs().max() > 0.1  # the ensemble is not mask 0


def test_made_masks_come_from_the_seed():
    natural, agnostic = MADE(8, [24], masks=3), MADE(8, [24], masks=3, order_agnostic=True)
    assert all(torch.equal(natural.degrees(m)[0], torch.arange(1, 9)) for m in range(3))
    orders = {tuple(agnostic.degrees(m)[0].tolist()) for m in range(3)}
    assert len(orders) == 3 and all(sorted(order) == list(range(1, 9)) for order in orders)
    assert not torch.equal(natural.degrees(0)[1], natural.degrees(1)[1])  # connectivities differ per mask
    again, other = MADE(8, [24], masks=3, mask_seed=0), MADE(8, [24], masks=3, mask_seed=1)
    assert torch.equal(again.degrees_1, natural.degrees_1) and not torch.equal(other.degrees_1, natural.degrees_1)


def input_gradients(model: MADE, x: torch.Tensor, mask: int) -> torch.Tensor:
    """|d l_d / d x_j| summed over the rows of x (B, D) (rows are independent), (D, D) [d, j]."""
    x = x.clone().requires_grad_(True)
    logits = model.logits(x, mask)  # (B, D)
    rows = [torch.autograd.grad(logits[:, d].sum(), x, retain_graph=True)[0].abs().sum(dim=0)
            for d in range(x.shape[1])]
    return torch.stack(rows)


@pytest.mark.parametrize("config", [MADE_CONFIGS[0], MADE_CONFIGS[1], MADE_CONFIGS[3]])
def test_made_output_d_depends_exactly_on_the_inputs_before_d(config):
    """A random net at random points: d l_d / d x_j is exactly 0 unless j precedes d. The same
    net with |weights| and |biases| at positive points: every ReLU is active and the gradient is
    a sum over paths of positive products, so it is > 0 for every j before d (d first: none)."""
    model, positive = made(**config), made(**config)
    with torch.no_grad():
        for parameter in positive.parameters():
            parameter.abs_()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, dtype=torch.float64, generator=generator)
    for mask in range(config["masks"]):
        order = model.degrees(mask)[0]  # m^0 (D,)
        precedes = order[None, :] < order[:, None]  # [d, j]: j comes before d
        assert (input_gradients(model, x, mask)[~precedes] == 0).all()
        assert torch.equal(input_gradients(positive, x.abs(), mask) > 0, precedes)


# ---- sampling ----

@pytest.mark.parametrize("build", [
    lambda: made(4, hidden=[16], masks=1),
    lambda: made(4, hidden=[16, 16], masks=3, order_agnostic=True, test_masks=2, seed=3),  # orders 3421, 3412
], ids=["made", "made-mixture"])
def test_made_samples_are_reproducible_and_follow_log_prob(build):
    model = build()
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

def test_made_adam_steps_raise_the_held_out_log_prob():
    torch.manual_seed(0)
    model = MADE(12, [64], masks=4, order_agnostic=True, test_masks=4)
    train, held_out = prototypes_data(400, seed=1), prototypes_data(200, seed=2)
    optimizers = model.optimizers(MADE.Params(lr=0.01))
    with torch.no_grad():
        before = model.log_prob(held_out).mean().item()
    for step in range(400):
        figures = model.training_step(train[step % 8 * 50:(step % 8 + 1) * 50], optimizers)
    with torch.no_grad():
        after = model.log_prob(held_out).mean().item()
    assert figures["loss"].dim() == 0 and not figures["loss"].requires_grad
    assert before < -7.5  # about 12 log 2 = 8.3 nats untrained; the data's entropy is about 3.8
    assert after > before + 3 and after > -5.5, (before, after)


def test_made_training_step_loss_is_the_batch_nll_before_the_step():
    model, x = MADE(6, [8], masks=1), prototypes_data(20, seed=3)[:, :6]
    with torch.no_grad():
        expected = -model.log_prob(x).mean()
    loss = model.training_step(x, model.optimizers(MADE.Params(lr=0.01)))["loss"]
    assert torch.allclose(loss, expected)
    with torch.no_grad():
        assert -model.log_prob(x).mean() < expected  # and the step lowered it


def test_made_training_draws_a_mask_per_minibatch_from_the_global_rng_only():
    x, results = prototypes_data(50, seed=4), []
    for _ in range(2):
        torch.manual_seed(7)
        model, used = MADE(12, [16], masks=4, order_agnostic=True), []
        optimizers = model.optimizers(MADE.Params(lr=0.01))
        for _ in range(12):
            used.append((model.training_step(x, optimizers)["loss"].item(), model.current_mask))
        results.append((used, model.layers[0].weight.detach().clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert {mask for _, mask in used} == {0, 1, 2, 3}  # connectivity-agnostic: every mask trained


def test_made_hidden_units_are_never_cut_off():
    """m^l(k) >= min m^{l-1}: every hidden unit sees some unit below it, even after a narrow layer."""
    model = MADE(8, [2, 16, 16], masks=8, order_agnostic=True)
    for mask in range(8):
        model.use_mask(mask)
        assert all(layer.mask.any(dim=1).all() for layer in model.layers[:-1]), mask


# ---- checkpoints, params, protocols ----

def test_made_checkpoint_round_trip_reproduces_log_prob(tmp_path):
    model = trained(MADE(12, [16, 8], masks=3, order_agnostic=True, test_masks=2, mask_seed=9))
    x = prototypes_data(40, seed=6)
    torch.save(model.to_checkpoint(), tmp_path / "model.pt")
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["family"] == model.family and checkpoint["params"] == model.hyperparameters
    for loaded in (MADE.from_checkpoint(checkpoint), registry.load(tmp_path / "model.pt")):
        assert type(loaded) is MADE
        with torch.no_grad():
            assert torch.equal(loaded.log_prob(x), model.log_prob(x))
        assert all(torch.equal(a, b) for m in range(3) for a, b in zip(loaded.degrees(m), model.degrees(m)))


def test_made_checkpoint_keeps_its_masks_over_the_seed():
    model = trained(MADE(12, [16], masks=2, order_agnostic=True, mask_seed=1))
    checkpoint = model.to_checkpoint()
    checkpoint["params"] = dict(checkpoint["params"], mask_seed=2)  # a seed that would draw other masks
    loaded, x = MADE.from_checkpoint(checkpoint), prototypes_data(10, seed=7)
    assert torch.equal(loaded.degrees_0, model.degrees_0)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("key", ["layers.0.weight", "degrees_1"])
def test_made_state_dict_with_a_wrong_shape_raises(key):
    checkpoint = MADE(12, [16], masks=2).to_checkpoint()
    checkpoint["state_dict"] = dict(checkpoint["state_dict"], **{key: torch.zeros(3, 3)})
    with pytest.raises(RuntimeError, match=key):
        MADE.from_checkpoint(checkpoint)
    with pytest.raises(DulError, match="does not match"):
        registry.load(checkpoint)


@pytest.mark.parametrize("changes, message", [
    (dict(hidden=(8, 0)), r"made.hidden\[1\] is 0"),
    (dict(masks=0), "made.masks is 0"),
    (dict(test_masks=0), "made.test_masks is 0"),
    (dict(masks=2, test_masks=3), r"made.test_masks is 3: must be at most made.masks \(2\)"),
    (dict(batch_size=-1), "made.batch_size is -1"),
])
def test_made_params_reject_bad_values_naming_the_key(changes, message):
    MADE.Params().validate()
    with pytest.raises(DulError, match=message):
        dataclasses.replace(MADE.Params(), **changes).validate()


def test_made_params_parse_from_yaml_values_and_build_for_a_shape():
    params = parse_dataclass(MADE.Params, "made", {"hidden": [32, 16], "masks": 2, "seed": 4})
    assert params.hidden == (32, 16) and params.masks == 2
    with pytest.raises(DulError, match="made.hiden: unknown key"):
        parse_dataclass(MADE.Params, "made", {"hiden": [32]})
    model = MADE.from_params(params, (1, 3, 4))
    assert model.hyperparameters == {"n_inputs": 12, "hidden": [32, 16], "masks": 2, "order_agnostic": False,
                                     "test_masks": 1, "mask_seed": 4}
    assert torch.equal(model.degrees_1, MADE.from_params(params, (12,)).degrees_1)


def test_made_protocols():
    model = MADE(5, [4])
    assert isinstance(model, Model) and isinstance(model, Density) and isinstance(model, Sampler)
    assert not isinstance(model, Encoder)
    assert model.estimator(1) == "exact" and model.estimator(100) == "exact"
