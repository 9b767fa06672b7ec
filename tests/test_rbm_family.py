"""The RBM family (Gaussian, replicated softmax, constrained Poisson), PCD and
the sparsity target, checked against autograd, enumeration and Monte Carlo."""

import itertools
import math

import pytest
import torch

from components.errors import DulError
from components.models.rbm import BernoulliRBM
from components.models.rbm_gaussian import GaussianBernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM
from components.models.rbm_poisson import ConstrainedPoissonRBM
from components.models.rbm_softmax import ReplicatedSoftmaxRBM
from components.models.rbms import RBM_BY_UNITS, make_rbm
from components.models.rbm import check_visible
from components.models.regularizers import add_sparsity_gradient

NEW = [GaussianBernoulliRBM, ReplicatedSoftmaxRBM, ConstrainedPoissonRBM]


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons in double precision, for this module's tests only; one
    thread, since these tensors are tiny (threads only add synchronisation)."""
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))  # (2^n, n)


def small(cls, n_visible=6, n_hidden=4, seed=0, scale=0.5):
    torch.manual_seed(seed)
    rbm = cls(n_visible, n_hidden, init_std=scale)
    with torch.no_grad():
        rbm.b_v.normal_()
        rbm.b_h.normal_(std=scale)
    return rbm.double()


def data_for(cls, n=8, n_visible=6, seed=1):
    """A batch of the right kind: standardised reals, or counts with one empty document."""
    generator = torch.Generator().manual_seed(seed)
    if cls is GaussianBernoulliRBM:
        return torch.randn(n, n_visible, generator=generator)
    if cls in (ReplicatedSoftmaxRBM, ConstrainedPoissonRBM):
        counts = torch.randint(0, 4, (n, n_visible), generator=generator).double()
        counts[2] = 0
        return counts
    return (torch.rand(n, n_visible, generator=generator) < 0.5).double()


def energy(rbm, v, h):
    """E(v, h) of each model for every pair of rows: a (V, H) grid."""
    coupling = -(h @ rbm.b_h)[None, :] - v @ rbm.W @ h.T
    if isinstance(rbm, GaussianBernoulliRBM):
        return 0.5 * (v - rbm.b_v).pow(2).sum(1)[:, None] + coupling
    if isinstance(rbm, ReplicatedSoftmaxRBM):  # hidden biases scaled by the length D
        return -(v @ rbm.b_v)[:, None] - v.sum(1)[:, None] * (h @ rbm.b_h)[None, :] - v @ rbm.W @ h.T
    if isinstance(rbm, ConstrainedPoissonRBM):
        return (-(v @ rbm.b_v) + torch.lgamma(v + 1).sum(1))[:, None] + coupling
    return -(v @ rbm.b_v)[:, None] + coupling


def grads(rbm):
    return [p.grad.clone() for p in rbm.parameters()]


def autograd_of_surrogate(rbm, v_pos, v_neg):
    for p in rbm.parameters():
        p.grad = None
    rbm(v_pos, v_neg).backward()  # d/dθ [mean F(v_pos) - mean F(v_neg)]
    return grads(rbm)


@pytest.mark.parametrize("cls", NEW)
def test_free_energy_equals_enumeration_over_hiddens(cls):
    rbm, v = small(cls), data_for(cls)
    brute = -torch.logsumexp(-energy(rbm, v, all_binary(4)), dim=1)  # F(v) = -log sum_h exp(-E)
    torch.testing.assert_close(rbm.free_energy(v), brute)


@pytest.mark.parametrize("cls", NEW + [BernoulliRBM])
@pytest.mark.parametrize("persistent", [False, True])
def test_cd_gradients_equal_autograd_of_the_surrogate(cls, persistent):
    rbm, v = small(cls, seed=3), data_for(cls)
    chain = data_for(cls, seed=5) if persistent else None
    torch.manual_seed(7)
    v_neg = rbm.cd_gradients(v, k=2, chain=chain)
    explicit = grads(rbm)
    for mine, reference in zip(explicit, autograd_of_surrogate(rbm, v, v_neg)):
        torch.testing.assert_close(mine, reference)
    torch.testing.assert_close(rbm.last_h_pos, rbm.h_mean(v).detach())


def test_pcd_with_fewer_particles_than_the_batch_still_equals_autograd():
    rbm, v, chain = small(BernoulliRBM), data_for(BernoulliRBM, n=8), data_for(BernoulliRBM, n=3, seed=2)
    v_neg = rbm.cd_gradients(v, chain=chain)
    for mine, reference in zip(grads(rbm), autograd_of_surrogate(rbm, v, v_neg)):
        torch.testing.assert_close(mine, reference)


@pytest.mark.parametrize("cls", NEW)
def test_layer_step_is_cd(cls):
    rbm, v = small(cls), data_for(cls)
    torch.manual_seed(3)
    first = rbm.layer_step(v, k=1), grads(rbm)
    torch.manual_seed(3)
    second = rbm.cd_gradients(v, k=1), grads(rbm)
    torch.testing.assert_close(first, second)


def monte_carlo_agrees(samples, mean, n):
    """Within 5 standard errors of the exact mean, for every unit."""
    spread = samples.std(dim=0)
    return ((samples.mean(dim=0) - mean).abs() < 5 * spread / math.sqrt(n) + 1e-9).all()


@pytest.mark.parametrize("cls", NEW)
def test_sampled_units_match_their_conditional_means(cls):
    rbm, v, n = small(cls), data_for(cls, n=3), 20000
    with torch.no_grad():
        samples = rbm.sample_h(v.repeat(n, 1))[1].view(n, 3, 4)  # n draws for each of 3 rows
        assert monte_carlo_agrees(samples, rbm.h_mean(v), n)
        h, context = (torch.rand(3, 4) < 0.5).double(), rbm.context(v)  # context: None, or lengths (3, 1)
        v_mean = rbm.v_mean(h, context)
        repeated = None if context is None else context.repeat(n, 1)
        samples = rbm.sample_v(h.repeat(n, 1), repeated)[1].view(n, 3, 6)
        assert monte_carlo_agrees(samples, v_mean, n)
    if cls is GaussianBernoulliRBM:  # unit-variance Gaussian visibles
        torch.testing.assert_close(samples.std(dim=0), torch.ones(3, 6), atol=0.03, rtol=0)
    if cls is ConstrainedPoissonRBM:  # Poisson: variance equals mean
        torch.testing.assert_close(samples.var(dim=0), v_mean, atol=0.1, rtol=0.1)


def test_replicated_softmax_keeps_document_lengths():
    rbm, v = small(ReplicatedSoftmaxRBM), data_for(ReplicatedSoftmaxRBM)
    lengths = v.sum(1)
    h = rbm.sample_h(v)[1]
    torch.testing.assert_close(rbm.v_mean(h, rbm.context(v)).sum(1), lengths)
    samples = rbm.sample_v(h, rbm.context(v))[1]
    assert torch.equal(samples, samples.round()) and (samples >= 0).all()
    assert torch.equal(samples.sum(1), lengths)
    assert torch.equal(rbm.gibbs(v, k=3).sum(1).round(), lengths)
    # The hidden biases scale with D: an empty document's hidden input is 0.
    torch.testing.assert_close(rbm.hidden_input(v)[2], torch.zeros(4))


def test_poisson_rates_sum_to_the_document_length_and_hiddens_are_not_scaled():
    rbm, v = small(ConstrainedPoissonRBM), data_for(ConstrainedPoissonRBM)
    torch.manual_seed(0)
    recon = rbm.cd_gradients(v)
    torch.testing.assert_close(recon.sum(1), v.sum(1))
    torch.testing.assert_close(rbm.hidden_input(v), rbm.b_h + v @ rbm.W)


def test_constrained_poisson_given_its_length_is_the_multinomial_of_the_energy():
    # Poisson(N softmax(x)) conditioned on sum v = N is Multinomial(N, softmax(x)),
    # the conditional of exp(-E(v, h)) over documents of length N: the free energy's basis.
    rbm = small(ConstrainedPoissonRBM, n_visible=3, n_hidden=2)
    N = 4
    documents = torch.tensor([c for c in itertools.product(range(N + 1), repeat=3) if sum(c) == N]).double()
    h = torch.tensor([[1.0, 0.0]])
    rates = rbm.v_mean(h, torch.tensor([[float(N)]])).detach()  # (1, 3)
    poisson = torch.distributions.Poisson(rates).log_prob(documents).sum(1)
    from_energy = -energy(rbm, documents, h)[:, 0].detach()
    torch.testing.assert_close(poisson.log_softmax(0), from_energy.log_softmax(0))


@pytest.mark.parametrize("cls", [ReplicatedSoftmaxRBM, ConstrainedPoissonRBM])
@pytest.mark.parametrize("bad, found", [(-1.0, "found -1 at row 3, column 1"), (0.5, "found 0.5 at row 3"),
                                        (float("nan"), "found nan at row 3")])
def test_counts_that_are_not_non_negative_integers_are_an_error(cls, bad, found):
    v = data_for(cls)
    cls.check_data(v)  # valid counts, an empty document among them
    v[3, 1] = bad
    with pytest.raises(DulError, match=f"{cls.label}: word counts must be non-negative integers; {found}"):
        small(cls).check_data(v)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_gaussian_visibles_must_be_finite(bad):
    v = data_for(GaussianBernoulliRBM)
    GaussianBernoulliRBM.check_data(v * 100)  # any finite value
    v[1, 2] = bad
    with pytest.raises(DulError, match=f"must be finite; found {bad} at row 1, column 2.*standardise"):
        GaussianBernoulliRBM.check_data(v, layer="pretrain layer 1")


def test_bernoulli_visibles_outside_the_unit_interval_are_an_error():
    with pytest.raises(DulError, match=r"pretrain layer 1: visible data must be finite and in \[0, 1\]"):
        check_visible(torch.tensor([[0.0, 2.0]]), layer="pretrain layer 1")
    with pytest.raises(DulError, match=r"BernoulliRBM: .*max 2"):
        small(BernoulliLinearRBM).check_data(torch.tensor([[0.0, 2.0]]))


def test_count_models_need_document_lengths_to_go_down():
    rbm = small(ReplicatedSoftmaxRBM)
    with pytest.raises(DulError, match="need the document lengths; pass context=rbm.context"):
        rbm.v_mean(torch.zeros(2, 4))


def exact_log_likelihood(rbm, data):
    log_z = torch.logsumexp(-rbm.free_energy(all_binary(rbm.n_visible)), dim=0)
    return (-rbm.free_energy(data) - log_z).mean()


def two_modes(n, generator):
    """Six pixels: 111000 or 000111, each pixel flipped with probability 0.05."""
    modes = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0.0, 0, 0, 1, 1, 1]])
    v = modes[torch.randint(0, 2, (n,), generator=generator)]
    return (v - (torch.rand(v.shape, generator=generator) < 0.05).double()).abs()


def test_pcd_chain_persists_and_training_raises_the_exact_likelihood():
    rbm, generator = small(BernoulliRBM, n_visible=6, n_hidden=4, seed=4, scale=0.1), torch.Generator().manual_seed(0)
    data = two_modes(400, generator)
    chain = (torch.rand(50, 6, generator=generator) < 0.5).double()  # 50 particles for batches of 20
    before = exact_log_likelihood(rbm, data).item()
    optimizer = torch.optim.SGD(rbm.parameters(), lr=0.03)
    torch.manual_seed(0)
    for _ in range(1000):
        previous = chain.clone()
        returned = rbm.cd_gradients(data[torch.randint(0, 400, (20,), generator=generator)], chain=chain)
        optimizer.step()
        assert torch.equal(returned, chain) and ((chain == 0) | (chain == 1)).all()  # sampled states, in place
    assert not torch.equal(previous, chain)
    after = exact_log_likelihood(rbm, data).item()
    # From about -6 log 2 = -4.2 towards the data's entropy, log 2 + 6 H(0.05) = 1.88 nats.
    assert after > before + 1.5 and after > -2.5, (before, after)


def test_sparsity_gradient_is_the_guide_s_penalty():
    rbm, v = small(BernoulliRBM), data_for(BernoulliRBM)
    rbm.cd_gradients(v)
    b_h_grad, W_grad = rbm.b_h.grad.clone(), rbm.W.grad.clone()
    q_old = torch.full((4,), 0.3)
    q = add_sparsity_gradient(rbm, rbm.last_h_pos, q_old, target=0.05, cost=2.0, decay=0.9, v_pos=v)
    expected_q = 0.9 * q_old + 0.1 * rbm.h_mean(v).detach().mean(0)
    torch.testing.assert_close(q, expected_q)
    torch.testing.assert_close(rbm.b_h.grad, b_h_grad + 2.0 * (expected_q - 0.05))
    torch.testing.assert_close(rbm.W.grad, W_grad + torch.outer(v.mean(0), 2.0 * (expected_q - 0.05)))
    with pytest.raises(DulError, match="0 < target < 1"):
        add_sparsity_gradient(rbm, rbm.last_h_pos, None, target=1.5, cost=1.0)


def mean_activation_after_training(sparsity: bool) -> float:
    rbm, generator = small(BernoulliRBM, n_visible=6, n_hidden=20, seed=5, scale=0.1), torch.Generator().manual_seed(1)
    data = two_modes(400, generator)
    optimizer = torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5)
    q = None
    torch.manual_seed(1)
    for _ in range(500):
        v = data[torch.randint(0, 400, (20,), generator=generator)]
        rbm.cd_gradients(v)
        if sparsity:
            q = add_sparsity_gradient(rbm, rbm.last_h_pos, q, target=0.05, cost=5.0, v_pos=v)
        optimizer.step()
    return rbm.h_mean(data).mean().item()


def test_sparsity_target_pulls_the_mean_hidden_activation_to_the_target():
    free, sparse = mean_activation_after_training(False), mean_activation_after_training(True)
    assert free > 0.3 and abs(sparse - 0.05) < 0.03, (free, sparse)  # about 0.47 and 0.058


def test_bfloat16_products_give_nearly_the_float32_gradient_for_counts():
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    rbm, v = ReplicatedSoftmaxRBM(300, 50), torch.poisson(torch.full((40, 300), 0.3))
    gradients = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(1)  # the same samples
        rbm.cd_gradients(v, dtype=dtype)
        gradients[dtype] = torch.cat([p.grad.flatten() for p in rbm.parameters()])
    assert torch.nn.functional.cosine_similarity(gradients[torch.float32], gradients[torch.bfloat16], dim=0) > 0.99


@pytest.mark.parametrize("visible, hidden, cls", [("bernoulli", "binary", BernoulliRBM),
                                                  ("bernoulli", "linear", BernoulliLinearRBM),
                                                  ("gaussian", "binary", GaussianBernoulliRBM),
                                                  ("softmax", "binary", ReplicatedSoftmaxRBM),
                                                  ("poisson", "binary", ConstrainedPoissonRBM)])
def test_make_rbm_returns_the_class_for_the_unit_types(visible, hidden, cls):
    rbm = make_rbm(visible, hidden, 7, 3, init_std=0.01)
    assert type(rbm) is cls and (rbm.visible_type, rbm.hidden_type) == (visible, hidden)
    assert rbm.W.shape == (7, 3) and rbm.W.std() < 0.05


@pytest.mark.parametrize("visible, hidden", [("gaussian", "linear"), ("binary", "binary"), ("poisson", "relu")])
def test_make_rbm_names_the_unsupported_pair_and_the_supported_ones(visible, hidden):
    with pytest.raises(DulError, match=f"no RBM has {visible} visible and {hidden} hidden units; "
                                       "supported visible/hidden pairs: bernoulli/binary, bernoulli/linear, "
                                       "gaussian/binary, softmax/binary, poisson/binary"):
        make_rbm(visible, hidden, 4, 2)


def test_the_unit_table_names_the_new_models():
    assert (RBM_BY_UNITS[("gaussian", "binary")], RBM_BY_UNITS[("softmax", "binary")],
            RBM_BY_UNITS[("poisson", "binary")]) == tuple(NEW)
