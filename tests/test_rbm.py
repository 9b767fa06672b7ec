"""RBM maths checked against brute-force enumeration (scikit-learn's test_rbm style)."""

import itertools
import math

import pytest
import torch

from components.errors import DulError
from components.models.rbm import BernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM
from components.models.rbm import check_visible



@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons in double precision, for this module's tests only."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))  # (2^n, n)


def energy(rbm: BernoulliRBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) = - v.b_v - h.b_h - v W h, for every pair of rows: (V, H) grid."""
    return -(v @ rbm.b_v)[:, None] - (h @ rbm.b_h)[None, :] - v @ rbm.W @ h.T


def small_rbm(cls=BernoulliRBM, n_visible=5, n_hidden=4, seed=0):
    torch.manual_seed(seed)
    rbm = cls(n_visible, n_hidden, init_std=1.0)
    with torch.no_grad():
        rbm.b_v.normal_()
        rbm.b_h.normal_()
    return rbm.double()


def test_free_energy_equals_enumeration():
    rbm = small_rbm()
    v, h = all_binary(5), all_binary(4)
    brute = -torch.logsumexp(-energy(rbm, v, h), dim=1)  # F(v) = -log sum_h exp(-E)
    torch.testing.assert_close(rbm.free_energy(v), brute)


def test_linear_free_energy_equals_numerical_integral():
    # One Gaussian hidden unit: F(v) = -log of the integral over h of exp(-E(v, h)), up to a constant.
    rbm = small_rbm(BernoulliLinearRBM, n_visible=4, n_hidden=1)
    v = all_binary(4)
    h = torch.linspace(-40, 40, 400001)
    b_v, b_h, W = rbm.b_v.detach(), rbm.b_h.detach(), rbm.W.detach()
    E = -(v @ b_v)[:, None] + 0.5 * (h[None, :] - b_h) ** 2 - (v @ W) * h[None, :]
    integral = torch.logsumexp(-E, dim=1) + math.log(h[1] - h[0])
    constant = 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(rbm.free_energy(v).detach(), -integral + constant, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", [BernoulliRBM, BernoulliLinearRBM])
def test_sampled_hiddens_match_conditional_mean(cls):
    rbm = small_rbm(cls)
    v = all_binary(5)[[3, 17, 30]]
    n = 20000
    mean, _ = rbm.sample_h(v)
    samples = torch.stack([rbm.sample_h(v)[1] for _ in range(n)])  # (n, 3, H)
    spread = samples.std(dim=0)
    # Within 5 standard errors of the exact conditional mean, for every unit.
    assert ((samples.mean(dim=0) - mean).abs() < 5 * spread / math.sqrt(n) + 1e-9).all()
    if cls is BernoulliLinearRBM:  # unit-variance Gaussian noise
        torch.testing.assert_close(spread, torch.ones_like(spread), atol=0.03, rtol=0)


def exact_log_likelihood(rbm: BernoulliRBM, data: torch.Tensor) -> torch.Tensor:
    log_z = torch.logsumexp(-rbm.free_energy(all_binary(rbm.n_visible)), dim=0)
    return (-rbm.free_energy(data) - log_z).mean()


def test_cd_gradient_points_along_the_likelihood_gradient():
    rbm = small_rbm(n_visible=6, n_hidden=3, seed=1)
    with torch.no_grad():
        rbm.W.mul_(0.3)
    data = all_binary(6)[[0, 7, 21, 42, 63]].repeat(4000, 1)
    exact = torch.autograd.grad(exact_log_likelihood(rbm, data), list(rbm.parameters()))
    v_neg = rbm.negative_phase(data, k=1)
    cd = torch.autograd.grad(-rbm(data, v_neg), list(rbm.parameters()))  # ascent direction
    flat_exact, flat_cd = torch.cat([g.flatten() for g in exact]), torch.cat([g.flatten() for g in cd])
    assert torch.nn.functional.cosine_similarity(flat_exact, flat_cd, dim=0) > 0.9


def test_cd_steps_increase_the_exact_likelihood():
    rbm = small_rbm(n_visible=6, n_hidden=3, seed=2)
    data = all_binary(6)[[0, 7, 56, 63]].repeat(50, 1)
    before = exact_log_likelihood(rbm, data).item()
    optimizer = torch.optim.SGD(rbm.parameters(), lr=0.05)
    for _ in range(50):
        optimizer.zero_grad()
        rbm(data, rbm.negative_phase(data)).backward()
        optimizer.step()
    assert exact_log_likelihood(rbm, data).item() > before + 0.5


def test_gibbs_returns_probabilities_of_the_right_shape():
    rbm = small_rbm()
    v = rbm.gibbs(all_binary(5), k=3)
    assert v.shape == (32, 5) and (v >= 0).all() and (v <= 1).all()


@pytest.mark.parametrize("bad", [torch.tensor([[0.5, 1.5]]), torch.tensor([[-0.1, 0.2]]),
                                 torch.tensor([[float("nan"), 0.0]])])
def test_visible_data_outside_unit_interval_is_an_error(bad):
    with pytest.raises(DulError, match=r"in \[0, 1\]"):
        check_visible(bad)


def test_zero_units_is_an_error():
    with pytest.raises(DulError, match="at least one unit"):
        BernoulliRBM(4, 0)


@pytest.mark.parametrize("cls", [BernoulliRBM, BernoulliLinearRBM])
def test_explicit_cd_gradients_equal_backprop_through_the_free_energy(cls):
    rbm = small_rbm(cls, n_visible=6, n_hidden=4, seed=3)
    v = all_binary(6)[::3]
    torch.manual_seed(7)
    v_neg = rbm.cd_gradients(v, k=2)
    explicit = [p.grad.clone() for p in rbm.parameters()]
    for p in rbm.parameters():
        p.grad = None
    rbm(v, v_neg).backward()  # d/dθ [mean F(v) - mean F(v_neg)]
    for mine, autograd in zip(explicit, [p.grad for p in rbm.parameters()]):
        torch.testing.assert_close(mine, autograd)


def test_bfloat16_products_give_nearly_the_float32_gradient(float64):
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    rbm, v = BernoulliRBM(784, 200), torch.rand(100, 784)
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(1)  # the same samples
        rbm.cd_gradients(v, dtype=dtype)
        grads[dtype] = torch.cat([p.grad.flatten() for p in rbm.parameters()])
    cosine = torch.nn.functional.cosine_similarity(grads[torch.float32], grads[torch.bfloat16], dim=0)
    assert cosine > 0.99
