"""Partition functions checked against brute-force enumeration (scikit-learn's
test_rbm style), and AIS checked against the exact log Z of a small RBM."""

import itertools
import math

import pytest
import torch

from components.errors import DulError
from components.evaluation.ais import (
    _tempered_gibbs,
    ais_log_partition,
    beta_schedule,
    exact_log_partition,
    log_likelihood,
    pseudo_log_likelihood,
)
from components.models.rbm import BernoulliRBM

AIS_TOLERANCE = 0.05  # nats; over seeds the runs here land within about 0.002 of the exact value


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)  # (2^n, n)


def random_rbm(n_visible: int, n_hidden: int, weight_std: float = 1.0, seed: int = 0) -> BernoulliRBM:
    torch.manual_seed(seed)
    rbm = BernoulliRBM(n_visible, n_hidden, init_std=weight_std)
    with torch.no_grad():
        rbm.b_v.normal_(0.0, 0.5)
        rbm.b_h.normal_(0.0, 0.5)
    return rbm.double()


def joint_log_weights(rbm: BernoulliRBM) -> torch.Tensor:
    """-E(v, h) = v.b_v + h.b_h + v W h for every pair (v, h): (2^D, 2^H)."""
    v, h = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)
    W, b_v, b_h = rbm.W.detach(), rbm.b_v.detach(), rbm.b_h.detach()
    return (v @ b_v)[:, None] + (h @ b_h)[None, :] + v @ W @ h.T


def exact_samples(rbm: BernoulliRBM, n: int, seed: int = 0) -> torch.Tensor:
    """Independent draws from the RBM: h from its marginal by enumeration, then v ~ p(v | h). (n, D)"""
    generator = torch.Generator().manual_seed(seed)
    h = all_binary(rbm.n_hidden)  # (2^H, H)
    W, b_v, b_h = rbm.W.detach(), rbm.b_v.detach(), rbm.b_h.detach()
    log_p_h = h @ b_h + torch.nn.functional.softplus(h @ W.T + b_v).sum(dim=1)
    index = torch.multinomial(torch.softmax(log_p_h, dim=0), n, replacement=True, generator=generator)
    return torch.bernoulli(torch.sigmoid(h[index] @ W.T + b_v), generator=generator)


@pytest.mark.parametrize("n_visible, n_hidden", [(8, 6), (6, 8), (7, 7)])
def test_exact_log_partition_equals_enumeration_of_both_layers(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden)
    brute = torch.logsumexp(joint_log_weights(rbm).flatten(), dim=0).item()
    assert exact_log_partition(rbm) == pytest.approx(brute, abs=1e-10)
    assert exact_log_partition(rbm, batch=4) == pytest.approx(brute, abs=1e-10)  # many chunks


def test_exact_log_partition_refuses_too_many_states():
    with pytest.raises(DulError, match="31 visible x 40 hidden"):
        exact_log_partition(BernoulliRBM(31, 40))


def test_ais_agrees_with_exact_log_partition():
    rbm = random_rbm(20, 12, weight_std=0.5)
    exact = exact_log_partition(rbm)
    data = exact_samples(rbm, 2000)
    estimate, lower, upper = ais_log_partition(rbm, data, n_chains=200, betas=beta_schedule(100, 400, 1500))
    assert abs(estimate - exact) < AIS_TOLERANCE
    assert lower < exact < upper
    assert lower < estimate < upper


def test_tempered_gibbs_sweep_leaves_its_distribution_invariant():
    # AIS stays unbiased only if the sweep at beta keeps p_beta(v) ∝ exp(-F_beta(v)) invariant;
    # a wrong sweep biases log Z by a few thousandths on the RBM above, too little to see there.
    rbm, beta = random_rbm(4, 3, weight_std=2.0), 0.5
    W, b_v, b_h = rbm.W.detach(), rbm.b_v.detach(), rbm.b_h.detach()
    b_A = torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=torch.float64)
    v = all_binary(4)  # (16, 4)
    neg_F = (1 - beta) * v @ b_A + beta * v @ b_v + torch.nn.functional.softplus(beta * (v @ W + b_h)).sum(1)
    p = torch.softmax(neg_F, dim=0)  # (16,)
    generator = torch.Generator().manual_seed(0)
    start = v[torch.multinomial(p, 100_000, replacement=True, generator=generator)]  # (N, 4) ~ p_beta
    after = _tempered_gibbs(start @ W + b_h, W, b_v, b_A, beta, generator)
    index = (after * 2 ** torch.arange(3, -1, -1)).sum(1).long()  # row of all_binary(4)
    frequency = torch.bincount(index, minlength=16) / len(index)
    torch.testing.assert_close(frequency.double(), p, atol=0.006, rtol=0)  # standard errors <= 0.0016


def test_ais_refuses_a_schedule_that_does_not_reach_one():
    rbm = random_rbm(4, 3)
    with pytest.raises(DulError, match="from exactly 0 to exactly 1"):
        ais_log_partition(rbm, torch.zeros(5, 4), betas=torch.linspace(0, 0.9, 10))


def test_log_likelihood_equals_exact_log_probability():
    rbm = random_rbm(8, 6)
    log_weights = joint_log_weights(rbm)  # (2^D, 2^H)
    log_p_v = torch.logsumexp(log_weights, dim=1) - torch.logsumexp(log_weights.flatten(), dim=0)  # (2^D,)
    items = torch.tensor([0, 5, 17, 200, 255])
    expected = log_p_v[items].mean().item()
    got = log_likelihood(rbm, all_binary(8)[items], exact_log_partition(rbm))
    assert got == pytest.approx(expected, abs=1e-10)


def exact_pseudo_log_likelihood(rbm: BernoulliRBM, v: torch.Tensor) -> float:
    """Mean over items of sum_i log p(v_i | v_-i), by flipping every bit in turn."""
    total = torch.zeros(len(v), dtype=torch.float64)
    for i in range(v.shape[1]):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        total += torch.nn.functional.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v)).detach()
    return total.mean().item()


def test_pseudo_log_likelihood_is_unbiased_for_the_exact_one():
    rbm = random_rbm(10, 6)
    items = exact_samples(rbm, 40)
    exact = exact_pseudo_log_likelihood(rbm, items)
    # Each item repeated 2000 times: the one-bit estimates average over the bits.
    estimate = pseudo_log_likelihood(rbm, items.repeat(2000, 1))
    assert estimate == pytest.approx(exact, abs=0.07)  # the estimate's standard error is about 0.013
    assert pseudo_log_likelihood(rbm, items, seed=1) == pseudo_log_likelihood(rbm, items, seed=1)
    assert math.isfinite(pseudo_log_likelihood(rbm, items[:1]))


def test_ais_on_a_model_without_an_energy_is_one_line_naming_the_family():
    from components.models.vae import VAE

    model = VAE(n_inputs=6, latent=2, hidden=(4,), likelihood="bernoulli")
    with pytest.raises(DulError, match=r"^AIS estimates .*; vae has no W, b_v, b_h: measure it with its own"):
        ais_log_partition(model, n_chains=2, betas=torch.linspace(0, 1, 5))
