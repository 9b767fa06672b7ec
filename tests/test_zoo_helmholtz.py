"""The Helmholtz machine (components/models/helmholtz.py): p(x, h) and q(h | x) layer by layer
against hand computation, the importance-sampled log p(x) and its bias against enumeration
of every h, ancestral samples against the enumerated p(x), the reweighted wake-sleep
gradients against the exact ones, the sleep phase's independence of the data, learning
under both algorithms, checkpoints, params and the protocols."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from components.config import parse_dataclass
from components.errors import DulError
from components.models import registry
from components.models.base import Density, Encoder, Model, Sampler
from components.models.helmholtz import HelmholtzMachine
from tests import test_zoo_made
from tests.test_ais import all_binary

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py



def randomised(model: HelmholtzMachine, scale: float = 1.5, seed: int = 0) -> HelmholtzMachine:
    """test_zoo_made's randomised (float64, every parameter scale * N(0, 1)), at a larger scale."""
    return test_zoo_made.randomised(model, scale, seed)


def prototypes_with_flips(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 16) binary data: four random 16-bit prototypes with 5% of bits flipped (entropy about 4.6 nats)."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 16, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    x = prototypes[torch.randint(0, 4, (n,), generator=generator)]
    flips = (torch.rand(x.shape, generator=generator) < 0.05).double()
    return (x + flips) % 2


# ---- brute force: the paper's definitions, written out ----

def bernoulli(p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """log prod_j p_j^h_j (1 - p_j)^(1 - h_j), broadcast over leading dimensions."""
    return (h * torch.log(p) + (1 - h) * torch.log(1 - p)).sum(-1)


def hand_log_joint(model, x, hs):
    """log p(h_L) + sum_l log p(h_{l-1} | h_l), h_0 = x, with sigmoid(W h + c) written out."""
    total = bernoulli(torch.sigmoid(model.prior), hs[-1])
    for layer, h, below in zip(model.generative, hs, [x, *hs[:-1]]):
        total = total + bernoulli(torch.sigmoid(h @ layer.weight.T + layer.bias), below)
    return total


def hand_log_q(model, x, hs):
    total = 0.0
    for layer, h, below in zip(model.recognition, hs, [x, *hs[:-1]]):
        total = total + bernoulli(torch.sigmoid(below @ layer.weight.T + layer.bias), h)
    return total


def every_h(model):
    """Every configuration of all latent layers, as [h_1, ..., h_L] with h_l (C, 1, H_l)."""
    sizes = model.hyperparameters["layers"]
    configurations = all_binary(sum(sizes))[:, None, :]
    return list(configurations.split(sizes, dim=-1))


def exact(model, x):
    """(log p(x) (B,), log p(x, h) (C, B), log q(h | x) (C, B)) over every h, differentiable."""
    hs = every_h(model)
    log_joint = hand_log_joint(model, x, hs)
    return torch.logsumexp(log_joint, 0), log_joint, hand_log_q(model, x, hs)


def generative_parameters(model):
    return [model.prior, *model.generative.parameters()]


# ---- the model's terms, layer by layer ----

def test_log_p_and_log_q_layer_by_layer_equal_products_of_unit_probabilities():
    model = randomised(HelmholtzMachine(4, [3, 2]))
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 4, generator=generator) < 0.5).double()
    hs = [(torch.rand(5, size, generator=generator) < 0.5).double() for size in (3, 2)]
    above, below = [hs[0], hs[1]], [x, hs[0]]

    def unit_product(weight, bias, inputs, outputs):  # log prod_j P(unit j takes its value), one item at a time
        rows = []
        for b in range(len(inputs)):
            total = 1.0
            for j in range(len(bias)):
                p = 1 / (1 + math.exp(-(float(weight[j] @ inputs[b]) + float(bias[j]))))
                total *= p if outputs[b, j] == 1 else 1 - p
            rows.append(math.log(total))
        return torch.tensor(rows, dtype=torch.float64)

    with torch.no_grad():
        p_terms, q_terms = model.generative_terms(x, hs), model.recognition_terms(x, hs)
        expected_p = [unit_product(layer.weight, layer.bias, above[i], below[i])
                      for i, layer in enumerate(model.generative)]
        expected_p.append(unit_product(torch.zeros(2, 1), model.prior, torch.zeros(5, 1), hs[1]))
        expected_q = [unit_product(layer.weight, layer.bias, below[i], above[i])
                      for i, layer in enumerate(model.recognition)]
        assert len(p_terms) == 3 and len(q_terms) == 2
        for got, want in zip(p_terms + q_terms, expected_p + expected_q):
            assert torch.allclose(got, want, atol=1e-12, rtol=0)
            assert want.std() > 0.1  # the items differ: a term that ignores its inputs would show
        assert torch.allclose(model.log_joint(x, hs), sum(expected_p), atol=1e-12, rtol=0)
        assert torch.allclose(model.log_q(x, hs), sum(expected_q), atol=1e-12, rtol=0)


def test_p_sums_to_one_over_every_x_and_h_and_q_over_every_h():
    model = randomised(HelmholtzMachine(4, [3, 2]))
    x, hs = all_binary(4), every_h(model)
    with torch.no_grad():
        assert abs(model.log_joint(x, hs).logsumexp((0, 1)).item()) < 1e-12
        assert torch.allclose(model.log_q(x, hs).logsumexp(0), torch.zeros(16, dtype=torch.float64), atol=1e-12)


# ---- the importance-sampled log p(x) ----

@pytest.mark.parametrize("layers", [[3], [3, 2]])
def test_log_prob_agrees_with_enumeration_within_its_standard_error(layers):
    model, x = randomised(HelmholtzMachine(4, layers)), all_binary(4)
    samples = 20000
    with torch.no_grad():
        log_px, log_joint, log_q = exact(model, x)
        elbo = (log_q.exp() * (log_joint - log_q)).sum(0)  # E_q[log p(x, h) - log q(h | x)], exactly
        torch.manual_seed(0)
        _, log_p_draws, log_q_draws = model.importance(x, samples)
        w = (log_p_draws - log_q_draws - log_px).exp()  # p / q over p(x): mean 1
        standard_error = w.std(0) / math.sqrt(samples)  # of log (1/S sum w), by the delta method
        model.chunk_size = lambda batch: 7  # many chunks, a short last one: combined as one sum
        estimate = model.log_prob(x, samples)
    assert (log_px - elbo).max() > 0.3  # q is far from the posterior: the estimate has work to do
    assert ((estimate - log_px).abs() < 4 * standard_error).all(), (estimate - log_px, standard_error)


def test_the_one_sample_estimate_is_the_elbo_below_log_p_in_expectation():
    model, x = randomised(HelmholtzMachine(4, [3, 2])), all_binary(4)
    draws = 4000
    with torch.no_grad():
        log_px, log_joint, log_q = exact(model, x)
        elbo = (log_q.exp() * (log_joint - log_q)).sum(0)
        torch.manual_seed(1)
        estimates = model.log_prob(x.repeat(draws, 1), samples=1).reshape(draws, 16)
    mean, standard_error = estimates.mean(0), estimates.std(0) / math.sqrt(draws)
    assert ((mean - elbo).abs() < 4 * standard_error).all()
    assert (mean + 4 * standard_error < log_px).all()  # biased low, by KL(q || p(h | x)) > 0


def exact_posterior_q(model: HelmholtzMachine) -> HelmholtzMachine:
    """With one latent unit, log p(x, h=1) - log p(x, h=0) = b + sum_d x_d W_d + sum_d
    softplus(c_d) - softplus(c_d + W_d) is linear in x: q can be the exact posterior."""
    (W, c), (R, r) = (model.generative[0].weight, model.generative[0].bias), model.recognition[0].parameters()
    with torch.no_grad():
        R.copy_(W.T)
        r.copy_(model.prior + (F.softplus(c) - F.softplus(c + W[:, 0])).sum())
    return model


def test_with_q_the_exact_posterior_every_weight_is_p_of_x_and_rws_weights_are_uniform():
    model, x = exact_posterior_q(randomised(HelmholtzMachine(4, [1]))), all_binary(4)
    with torch.no_grad():
        log_px = exact(model, x)[0]
        assert torch.allclose(model.log_prob(x, samples=1), log_px, atol=1e-12, rtol=0)  # zero variance
        weights = model.rws_losses(x, 6)["weights"]
        assert weights.shape == (6, 16) and torch.allclose(weights, torch.full_like(weights, 1 / 6), atol=1e-12)
        with torch.no_grad():
            model.recognition[0].bias += 1.0  # q no longer the posterior
        weights = model.rws_losses(x, 6)["weights"]
    assert torch.allclose(weights.sum(0), torch.ones(16, dtype=torch.float64), atol=1e-12)
    assert (weights >= 0).all() and (weights - 1 / 6).abs().max() > 0.05


# ---- sampling ----

def test_samples_are_reproducible_means_and_follow_the_enumerated_p_of_x():
    model = randomised(HelmholtzMachine(4, [3, 2]))
    first = model.sample(64, torch.Generator().manual_seed(3))
    assert first.shape == (64, 4) and ((first > 0) & (first < 1)).all()  # probabilities, not bits
    assert torch.equal(first, model.sample(64, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, model.sample(64, torch.Generator().manual_seed(4)))
    means = model.sample(40000, torch.Generator().manual_seed(5))
    x = (torch.rand(means.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64) < means).double()
    index = (x @ torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).long()  # row of all_binary(4)
    frequency = torch.bincount(index, minlength=16).double() / len(x)
    with torch.no_grad():
        probability = exact(model, all_binary(4))[0].exp()
    assert probability.max() - probability.min() > 0.1  # far from uniform: a wrong sampler would show
    assert (frequency - probability).abs().sum() / 2 < 0.02  # total variation


# ---- reweighted wake-sleep ----

@pytest.mark.parametrize("layers", [[3], [2, 2]])
def test_rws_gradients_converge_to_the_exact_ones(layers):
    """sum_k w_k grad log p(x, h_k) -> grad log p(x), sum_k w_k grad log q(h_k | x) ->
    sum_h p(h | x) grad log q(h | x), as K grows: checked at K = 40000 against enumeration."""
    model = randomised(HelmholtzMachine(4, layers, sleep_q=False), scale=1.0, seed=2)
    x = all_binary(4)[[1, 6, 9, 15]]
    log_px, log_joint, log_q = exact(model, x)
    posterior = (log_joint - log_px).exp().detach()  # p(h | x), (C, B)
    exact_p = torch.autograd.grad(-log_px.mean(), generative_parameters(model))
    exact_q = torch.autograd.grad(-(posterior * log_q).sum(0).mean(), list(model.recognition.parameters()))
    torch.manual_seed(3)
    losses = model.rws_losses(x, 40000)
    rws_p = torch.autograd.grad(losses["p"], generative_parameters(model), retain_graph=True)
    rws_q = torch.autograd.grad(losses["q"], list(model.recognition.parameters()))
    _, log_p_draws, _ = model.importance(x, 40000)
    wake_p = torch.autograd.grad(-log_p_draws.mean(), generative_parameters(model))  # plain wake: unweighted
    error = max((a - b).abs().max().item() for a, b in zip(rws_p, exact_p))
    unweighted_error = max((a - b).abs().max().item() for a, b in zip(wake_p, exact_p))
    q_error = max((a - b).abs().max().item() for a, b in zip(rws_q, exact_q))
    assert error < 0.02 and q_error < 0.02, (error, q_error)
    assert unweighted_error > 0.1  # the weights matter here: an unweighted gradient would fail


def test_each_loss_reaches_only_its_own_network():
    for algorithm in ("rws", "wake-sleep"):
        model = HelmholtzMachine(6, [4, 3], algorithm=algorithm)
        x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
        losses = model.rws_losses(x, 3) if algorithm == "rws" else model.wake_sleep_losses(x)
        p_grads = torch.autograd.grad(losses["p"], list(model.parameters()), allow_unused=True, retain_graph=True)
        q_grads = torch.autograd.grad(losses["q"], list(model.parameters()), allow_unused=True)
        generative = {id(p) for p in generative_parameters(model)}
        for parameter, p_grad, q_grad in zip(model.parameters(), p_grads, q_grads):
            mine, other = (p_grad, q_grad) if id(parameter) in generative else (q_grad, p_grad)
            assert other is None and mine is not None and mine.abs().sum() > 0, algorithm


def test_the_sleep_phase_learns_from_dreams_not_from_the_data():
    """Same seed, two different batches: wake-sleep's q gradient is the same (the sleep phase
    draws (x~, h~) from p alone), its p gradient is not."""
    model = HelmholtzMachine(16, [5], algorithm="wake-sleep").double()
    optimizers = model.optimizers(HelmholtzMachine.Params(lr=0.0))  # steps that change nothing
    gradients = []
    for seed in (1, 2):
        torch.manual_seed(7)
        model.training_step(prototypes_with_flips(20, seed=seed), optimizers)
        gradients.append([p.grad.clone() for p in model.parameters()])
    generative = {id(p) for p in generative_parameters(model)}
    for parameter, first, second in zip(model.parameters(), *gradients):
        if id(parameter) in generative:
            assert not torch.allclose(first, second)
        else:
            assert torch.equal(first, second) and first.abs().sum() > 0


@pytest.mark.parametrize("algorithm", ["rws", "wake-sleep"])
def test_training_lowers_the_exact_nll(algorithm):
    torch.manual_seed(0)
    model = HelmholtzMachine(16, [6], algorithm=algorithm).double()
    train, held_out = prototypes_with_flips(400, seed=1), prototypes_with_flips(200, seed=2)
    optimizers = model.optimizers(HelmholtzMachine.Params(lr=0.03))
    with torch.no_grad():
        before = -exact(model, held_out)[0].mean().item()
    for step in range(300):
        figures = model.training_step(train[step % 8 * 50:(step % 8 + 1) * 50], optimizers)
    with torch.no_grad():
        after = -exact(model, held_out)[0].mean().item()
    assert set(figures) == {"loss", "p_loss", "q_loss"} and not figures["loss"].requires_grad
    assert before > 10  # about 16 log 2 = 11.1 nats untrained; the data's entropy is about 4.6
    assert after < 7, (before, after)


# ---- checkpoints, params, protocols ----

def test_checkpoint_round_trip_through_the_registry(tmp_path):
    model = HelmholtzMachine(12, [5, 3], algorithm="wake-sleep", k=4, sleep_q=False)
    model.training_step(prototypes_with_flips(30)[:, :12].float(), model.optimizers(HelmholtzMachine.Params()))
    torch.save(model.to_checkpoint(), tmp_path / "model.pt")
    loaded = registry.load(tmp_path / "model.pt")
    assert type(loaded) is HelmholtzMachine and loaded.hyperparameters == model.hyperparameters
    assert (loaded.algorithm, loaded.k, loaded.sleep_q) == ("wake-sleep", 4, False)
    x = prototypes_with_flips(10).float()[:, :12]
    torch.manual_seed(4)
    expected = model.log_prob(x, 20)
    torch.manual_seed(4)
    assert torch.equal(loaded.log_prob(x, 20), expected)
    checkpoint = model.to_checkpoint()
    checkpoint["state_dict"]["prior"] = torch.zeros(7)
    with pytest.raises(DulError, match="the helmholtz checkpoint does not match its params"):
        registry.load(checkpoint)


@pytest.mark.parametrize("changes, message", [
    ({"layers": ()}, r"helmholtz.layers is \[\]"),
    ({"layers": (8, 0)}, r"helmholtz.layers is \[8, 0\]: .* every size positive"),
    ({"algorithm": "wake_sleep"}, "helmholtz.algorithm is 'wake_sleep'; did you mean 'wake-sleep'"),
    ({"k": 0}, "helmholtz.k is 0: must be positive"),
    ({"lr": 0.0}, "helmholtz.lr is 0.0"),
    ({"epochs": 0}, "helmholtz.epochs is 0"),
])
def test_params_reject_bad_values_naming_the_key(changes, message):
    HelmholtzMachine.Params().validate()
    with pytest.raises(DulError, match=message):
        dataclasses.replace(HelmholtzMachine.Params(), **changes).validate()


def test_params_parse_from_a_section_with_the_papers_defaults():
    params = parse_dataclass(HelmholtzMachine.Params, "helmholtz", {"layers": [200, 200], "algorithm": "wake-sleep"})
    assert params.layers == (200, 200) and params.k == 5 and params.sleep_q is True
    with pytest.raises(DulError, match="helmholtz.sleep_q: expected bool"):
        parse_dataclass(HelmholtzMachine.Params, "helmholtz", {"sleep_q": "yes"})
    assert HelmholtzMachine.Params().algorithm == "rws" and HelmholtzMachine.Params().layers == (64,)


def test_builds_for_a_shape_and_follows_the_protocols():
    model = registry.build("helmholtz", HelmholtzMachine.Params(layers=(7, 3)), (1, 8, 8))
    assert model.n_inputs == 64 and model.code_size == 7 and model.code_units == "binary"
    assert isinstance(model, Model) and isinstance(model, Density) and isinstance(model, Sampler)
    assert isinstance(model, Encoder)
    codes = model.encode(torch.zeros(2, 1, 8, 8))
    assert codes.shape == (2, 7) and torch.allclose(codes, torch.sigmoid(model.recognition[0].bias).expand(2, 7))
    assert model.estimator(1) == "elbo" and model.estimator(5000) == "is-5000"
    assert HelmholtzMachine(784, [200, 200]).chunk_size(100) == 213  # 5000 samples of 100 MNIST images: 24 chunks
    with pytest.raises(DulError, match="samples >= 1"):
        model.log_prob(torch.zeros(2, 64), samples=0)
