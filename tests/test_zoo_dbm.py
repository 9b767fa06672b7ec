"""The zoo's deep Boltzmann machine (components/models/dbm.py, family "dbm") against
enumeration on DBMs small enough to sum over every state: the analytic marginal
p*(h1), AIS's log Z, the mean-field fixed point and bound (its gap is the KL),
the joint stage's gradient, Gibbs sampling; then training by stages, bitwise
resumption, params, checkpoints and the protocols."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from components.config import parse_dataclass
from components.errors import DulError
from components.io import save_torch
from components.models import registry
from components.models.base import Density, Encoder, Model, Reconstructor, Sampler
from components.models.dbm import DBM
from components.models.nn.ais import exact_log_partition
from tests.test_ais import all_binary

NAMES = ("W1", "W2", "b_v", "b_h1", "b_h2")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py



def random_dbm(D: int = 5, H1: int = 4, H2: int = 3, scale: float = 1.0, seed: int = 0, **kwargs) -> DBM:
    """A float64 DBM with every parameter drawn as scale * N(0, 1): far from uniform."""
    model = DBM(D, [H1, H2], **kwargs).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in NAMES:
            parameter = getattr(model, name)
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def enumerate_states(model: DBM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every state (v, h1, h2), v slowest, and its -E written out here (not the model's energy),
    with gradients to the parameters: (S, D), (S, H1), (S, H2), (S,)."""
    (D, H1), H2 = model.W1.shape, model.W2.shape[1]
    states = all_binary(D + H1 + H2)
    v, h1, h2 = states.split([D, H1, H2], dim=1)
    W1, W2, b_v, b_h1, b_h2 = (getattr(model, name) for name in NAMES)
    neg_energy = torch.einsum("si,ij,sj->s", v, W1, h1) + torch.einsum("sj,jk,sk->s", h1, W2, h2) \
        + v @ b_v + h1 @ b_h1 + h2 @ b_h2
    return v, h1, h2, neg_energy


def exact_log_p(model: DBM) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(v) for every v (2^D,), log Z) by enumeration."""
    D = model.W1.shape[0]
    *_, neg_energy = enumerate_states(model)
    log_z = torch.logsumexp(neg_energy, 0)
    return torch.logsumexp(neg_energy.reshape(2**D, -1), 1) - log_z, log_z


def exact_nll(model: DBM, X: torch.Tensor) -> float:
    """Mean -log p(x) over rows of X: h1 summed by enumeration, h2 analytically, log Z exact."""
    with torch.no_grad():
        h1 = all_binary(model.W1.shape[1]).to(model.W1.dtype)  # (2^H1, H1)
        log_z = exact_log_partition(model.as_rbm())
        v = X.to(model.W1.dtype)
        joint = v @ model.W1 @ h1.T + (v @ model.b_v)[:, None] + (h1 @ model.b_h1 \
            + F.softplus(h1 @ model.W2 + model.b_h2).sum(1))[None]  # log p*(v, h1), (N, 2^H1)
        return float(log_z - torch.logsumexp(joint, 1).mean())


def prototypes_with_flips(n: int, D: int = 12, seed: int = 0) -> torch.Tensor:
    """(n, D) binary data: four random D-bit prototypes with 5% of bits flipped."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, D, generator=generator) < 0.5).float()
    x = prototypes[torch.randint(0, 4, (n,), generator=generator)]
    return (x + (torch.rand(x.shape, generator=generator) < 0.05).float()) % 2


def train(model: DBM, optimizer, X: torch.Tensor, epochs: range, batch_size: int = 20) -> None:
    """The loop's way: the global RNG seeded per epoch, start_epoch, then the epoch's batches."""
    for epoch in epochs:
        torch.manual_seed(1000 + epoch)
        model.start_epoch(epoch)
        order = torch.randperm(len(X))
        for batch in X[order].split(batch_size):
            model.training_step(batch, [optimizer])


def tiny_params(**values) -> DBM.Params:
    return parse_dataclass(DBM.Params, "dbm", {"lr": 0.05, "epochs": 12, "pretrain_epochs": 3, **values})


# ---- the maths, against enumeration ----

def test_p_star_h1_sums_v_and_h2_out_and_the_bipartite_rbm_has_the_dbms_z():
    model = random_dbm()
    v, h1, h2, neg_energy = enumerate_states(model)
    with torch.no_grad():
        H1 = h1.shape[1]
        index = (h1 * 2 ** torch.arange(H1 - 1, -1, -1, dtype=torch.float64)).sum(1).long()  # h1's row in all_binary
        brute = torch.stack([torch.logsumexp(neg_energy.detach()[index == i], 0) for i in range(2**H1)])
        assert torch.allclose(model.log_p_star_h1(all_binary(H1)), brute, atol=1e-10)
        assert exact_log_partition(model.as_rbm()) == pytest.approx(float(torch.logsumexp(neg_energy, 0)), abs=1e-10)
        assert torch.allclose(-model.energy(v, h1, h2), neg_energy, atol=1e-10)


def test_ais_log_z_agrees_with_enumeration_and_is_cached_per_parameters():
    model = random_dbm(ais_chains=100, ais_betas=2000)
    exact = exact_log_partition(model.as_rbm())
    estimate, lower, upper = model.log_partition()
    assert estimate == pytest.approx(exact, abs=0.05) and lower <= exact <= upper
    assert model.log_partition() is model.log_partition()  # no second AIS run for the same parameters
    with torch.no_grad():
        model.b_h2.add_(1.0)  # as an optimizer step does it: in place
    changed = exact_log_partition(model.as_rbm())
    assert changed > exact + 1 and model.log_partition()[0] == pytest.approx(changed, abs=0.05)


def test_mean_field_reaches_its_fixed_point_and_no_sweep_lowers_the_bound():
    model = random_dbm()
    v = all_binary(5)
    with torch.no_grad():
        mu1, mu2 = model.mean_field(v, 200)
        assert torch.allclose(mu1, torch.sigmoid(v @ model.W1 + mu2 @ model.W2.T + model.b_h1), atol=1e-10)
        assert torch.allclose(mu2, torch.sigmoid(mu1 @ model.W2 + model.b_h2), atol=1e-10)
        bounds = torch.stack([model.unnormalised_bound(v, *model.mean_field(v, k)) for k in range(8)])
        assert (bounds.diff(dim=0) >= -1e-12).all()


def test_the_bound_is_below_log_p_by_exactly_the_kl_to_the_posterior(monkeypatch):
    model = random_dbm(seed=1)
    exact, log_z = exact_log_p(model)
    monkeypatch.setattr(model, "log_partition", lambda: (float(log_z), 0.0, 0.0))
    _, h1, h2, neg_energy = (t.detach() for t in enumerate_states(model))
    bound = model.log_prob(all_binary(5))
    assert (bound <= exact.detach() + 1e-12).all()
    with torch.no_grad():
        mu1, mu2 = model.mean_field(all_binary(5), DBM.EVAL_MEAN_FIELD_STEPS)
        gaps = []
        for i in range(32):  # KL(q || p(h | v)) summed over every hidden state of v number i
            rows = slice(i * 2**7, (i + 1) * 2**7)
            log_q = (h1[rows] * mu1[i].log() + (1 - h1[rows]) * (1 - mu1[i]).log()).sum(1) \
                + (h2[rows] * mu2[i].log() + (1 - h2[rows]) * (1 - mu2[i]).log()).sum(1)
            log_posterior = neg_energy[rows] - torch.logsumexp(neg_energy[rows], 0)
            gaps.append((log_q.exp() * (log_q - log_posterior)).sum())
    assert torch.allclose(exact.detach() - bound, torch.stack(gaps), atol=1e-10)
    assert torch.stack(gaps).min() > 1e-6  # a real gap: mean field is not exact here


def test_the_joint_gradient_with_exact_model_statistics_is_the_bounds_gradient():
    model = random_dbm(scale=0.7, seed=2)
    v = all_binary(5)[[3, 12, 25, 30]]

    def bound_from_scratch() -> torch.Tensor:  # mean over v of the bound, mean field by autograd
        mu1 = torch.sigmoid(2 * v @ model.W1 + model.b_h1)
        mu2 = torch.sigmoid(mu1 @ model.W2 + model.b_h2)
        for _ in range(300):
            mu1 = torch.sigmoid(v @ model.W1 + mu2 @ model.W2.T + model.b_h1)
            mu2 = torch.sigmoid(mu1 @ model.W2 + model.b_h2)
        entropy = sum(-(mu * mu.log() + (1 - mu) * (1 - mu).log()).sum(1) for mu in (mu1, mu2))
        neg_energy = ((v @ model.W1) * mu1).sum(1) + ((mu1 @ model.W2) * mu2).sum(1) + v @ model.b_v \
            + mu1 @ model.b_h1 + mu2 @ model.b_h2
        return (neg_energy + entropy).mean() - torch.logsumexp(enumerate_states(model)[3], 0)

    expected = torch.autograd.grad(-bound_from_scratch(), [getattr(model, name) for name in NAMES])
    states_v, states_h1, states_h2, neg_energy = enumerate_states(model)
    weights = torch.softmax(neg_energy.detach(), 0)  # p(v, h1, h2), exactly
    with torch.no_grad():
        posterior = model.mean_field(v, 300)
    model.joint_loss(v, posterior, (states_v, states_h1, states_h2), weights).backward()
    for name, gradient in zip(NAMES, expected):
        assert torch.allclose(getattr(model, name).grad, gradient, atol=1e-9), name


def test_gibbs_sampling_reaches_the_model_distribution():
    model = random_dbm(seed=3)
    exact_v, _ = exact_log_p(model)
    generator = torch.Generator().manual_seed(0)
    n = 20000
    with torch.no_grad():
        start = torch.zeros(n, 4, dtype=torch.float64)  # every chain from h1 = 0: far from typical
        v, h1, h2 = model.gibbs(start, 30, generator)
        states = torch.cat([v, h1, h2], dim=1)
        index = (states * 2 ** torch.arange(11, -1, -1, dtype=torch.float64)).sum(1).long()
        empirical = torch.bincount(index, minlength=2**12).double() / n
        exact = torch.softmax(enumerate_states(model)[3], 0)
        total_variation = 0.5 * (empirical - exact).abs().sum()
        v_index = index // 2**7
        v_variation = 0.5 * (torch.bincount(v_index, minlength=32).double() / n - exact_v.exp()).abs().sum()
    assert total_variation < 0.12 and v_variation < 0.03, (float(total_variation), float(v_variation))
    sticky = random_dbm(scale=2.0, seed=3)  # one sweep leaves its v means 0.09 off, three 0.025
    drawn = sticky.sample(4000, torch.Generator().manual_seed(1))  # p(v | h1) of fresh chains
    exact_means = exact_log_p(sticky)[0].exp() @ all_binary(5)
    assert torch.allclose(drawn.mean(0), exact_means, atol=0.015), (drawn.mean(0), exact_means)


# ---- training ----

def test_stages_follow_the_epochs_and_joining_averages_h1s_biases():
    model = random_dbm(pretrain_epochs=2)
    with torch.no_grad():
        model.b_top.copy_(torch.arange(4.0))
    stages = []
    for epoch in range(6):
        before = model.b_h1.detach().clone()
        model.start_epoch(epoch)
        stages.append(int(model.stage))
        if epoch == 4:
            assert torch.allclose(model.b_h1, (before + torch.arange(4.0)) / 2)
            assert model.chains_h1.sum() > 0 and ((model.chains_h1 == 0) | (model.chains_h1 == 1)).all()
        elif epoch == 5:
            assert torch.equal(model.b_h1, before)  # joined once
    assert stages == [0, 0, 1, 1, 2, 2]
    unpretrained = random_dbm(pretrain_epochs=0)
    unpretrained.start_epoch(0)
    assert int(unpretrained.stage) == 2  # no pretraining: joint from the first epoch


@pytest.mark.parametrize("stage, trained", [(0, {"W1", "b_v", "b_h1"}), (1, {"W2", "b_top", "b_h2"}),
                                            (2, {"W1", "W2", "b_v", "b_h1", "b_h2"})])
def test_each_stage_trains_its_own_parameters(stage, trained):
    model = random_dbm(D=12, H1=6, H2=4, scale=0.1, pretrain_epochs=1, chains=10)
    model.start_epoch(stage)
    optimizer = model.optimizers(tiny_params())[0]
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(0)
    figures = model.training_step(prototypes_with_flips(20), [optimizer])
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == trained and float(figures["stage"]) == stage and figures["loss"] > 0


def test_training_by_stages_lowers_the_exact_nll():
    X = prototypes_with_flips(200)
    torch.manual_seed(0)
    model = DBM(12, [8, 4], pretrain_epochs=10)
    optimizer = model.optimizers(tiny_params(lr=0.03, epochs=60, pretrain_epochs=10))[0]
    model.fit_inputs(X)
    before = exact_nll(model, X)
    train(model, optimizer, X, range(20))
    pretrained = exact_nll(model, X)  # both RBMs trained, not yet joined
    train(model, optimizer, X, range(20, 60))
    after = exact_nll(model, X)  # seed 0: 8.32 nats, 7.36 pretrained, 5.21 joint (the data's entropy: 3.8)
    assert int(model.stage) == 2
    assert before == pytest.approx(12 * torch.log(torch.tensor(2.0)).item(), abs=0.01)
    assert pretrained < before - 0.5 and after < pretrained - 0.5 and after < before - 2.5, (before, pretrained, after)
    with torch.no_grad():
        exact_bound = model.unnormalised_bound(X, *model.mean_field(X, 50)).mean() \
            - exact_log_partition(model.as_rbm())
    assert -exact_bound.item() >= after  # the bound's NLL is above the exact one


def test_the_joint_stages_rate_falls_linearly_toward_zero_and_pretraining_keeps_it():
    params = tiny_params(lr=0.04, epochs=6, pretrain_epochs=1)
    model = registry.build("dbm", params, (12,)).double()
    assert model.lr_decay and model.epochs == 6  # the default, from the params
    optimizer = model.optimizers(params)[0]
    rates = []
    for epoch in range(6):
        model.start_epoch(epoch)
        torch.manual_seed(epoch)
        model.training_step(prototypes_with_flips(20).double(), [optimizer])
        rates.append(optimizer.param_groups[0]["lr"])
    # two pretraining epochs at lr, then J = 4 joint epochs at lr * (1, 3/4, 1/2, 1/4)
    assert rates == pytest.approx([0.04, 0.04, 0.04, 0.03, 0.02, 0.01])
    steady = registry.build("dbm", tiny_params(lr=0.04, epochs=6, pretrain_epochs=1, lr_decay=False), (12,))
    steady.start_epoch(5)
    assert steady.rate_factor(2) == 1.0


def test_pretraining_steps_are_cd1_with_the_doubled_inputs():
    v = prototypes_with_flips(20).double()
    for stage in (0, 1):
        model = random_dbm(D=12, H1=6, H2=4, scale=0.3, pretrain_epochs=1, seed=stage)
        model.start_epoch(stage)
        optimizer = model.optimizers(tiny_params(lr=1.0, momentum=0.0, weight_decay=0.0))[0]
        W1, W2, b_v, b_h1, b_h2, b_top = (getattr(model, n).detach().clone() for n in (*NAMES, "b_top"))
        torch.manual_seed(stage)
        model.training_step(v, [optimizer])
        torch.manual_seed(stage)  # the same draws, in the same order, by the paper's equations
        if stage == 0:  # p(h1 | v) = sigmoid(2 v W1 + b_h1), p(v | h1) = sigmoid(W1 h1 + b_v)
            visible, W, b_a, b_h = v, W1, b_v, b_h1
            h_pos = torch.sigmoid(2 * v @ W + b_h)
            a_neg = torch.sigmoid((torch.rand_like(h_pos) < h_pos).double() @ W.T + b_a)
            h_neg = torch.sigmoid(2 * a_neg @ W + b_h)
            names = ("W1", "b_v", "b_h1")
        else:  # data h1 ~ p(h1 | 2 v); p(h2 | h1) = sigmoid(h1 W2 + b_h2), p(h1 | h2) = sigmoid(2 W2 h2 + b_top)
            p1 = torch.sigmoid(2 * v @ W1 + b_h1)
            visible, W, b_a, b_h = (torch.rand_like(p1) < p1).double(), W2, b_top, b_h2
            h_pos = torch.sigmoid(visible @ W + b_h)
            a_neg = torch.sigmoid(2 * (torch.rand_like(h_pos) < h_pos).double() @ W.T + b_a)
            h_neg = torch.sigmoid(a_neg @ W + b_h)
            names = ("W2", "b_top", "b_h2")
        n = len(v)
        expected = (W + (visible.T @ h_pos - a_neg.T @ h_neg) / n, b_a + (visible - a_neg).mean(0),
                    b_h + (h_pos - h_neg).mean(0))
        for name, value in zip(names, expected):
            assert torch.allclose(getattr(model, name), value, atol=1e-12), (stage, name)


@pytest.mark.parametrize("split", [1, 2, 3])
def test_a_resumed_run_continues_bitwise(split):
    X = prototypes_with_flips(60)

    def fresh(seed):
        torch.manual_seed(seed)
        model = DBM(12, [6, 4], pretrain_epochs=1, chains=10)
        model.fit_inputs(X)
        return model, model.optimizers(tiny_params())[0]

    whole, optimizer = fresh(0)
    train(whole, optimizer, X, range(5))
    first, optimizer = fresh(0)
    train(first, optimizer, X, range(split))
    saved = copy.deepcopy((first.state_dict(), optimizer.state_dict()))
    resumed, optimizer = fresh(7)  # other initial weights: all that matters comes from the state
    resumed.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    train(resumed, optimizer, X, range(split, 5))
    assert int(whole.stage) == 2
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


# ---- params, checkpoints, protocols ----

@pytest.mark.parametrize("values, key", [
    ({"hidden": [8]}, "hidden"), ({"hidden": [8, 0]}, "hidden"), ({"pretrain_epochs": -1}, "pretrain_epochs"),
    ({"pretrain_epochs": 26}, "pretrain_epochs"), ({"mean_field_steps": 0}, "mean_field_steps"),
    ({"chains": 0}, "chains"), ({"gibbs_steps": 0}, "gibbs_steps"), ({"ais_chains": 1}, "ais_chains"),
    ({"ais_betas": 2}, "ais_betas"), ({"momentum": 1.0}, "momentum"), ({"weight_decay": -1.0}, "weight_decay"),
    ({"lr": 0.0}, "lr")])
def test_params_validation_names_the_key(values, key):
    with pytest.raises(DulError, match=rf"dbm\.{key}"):
        parse_dataclass(DBM.Params, "dbm", values)
    parse_dataclass(DBM.Params, "dbm", {"pretrain_epochs": 25})  # 2 x 25 = the default 50 epochs: fits


def test_checkpoint_round_trip_and_protocols(tmp_path):
    X = prototypes_with_flips(60)
    torch.manual_seed(0)
    model = DBM(12, [6, 4], pretrain_epochs=1, chains=10, ais_chains=10, ais_betas=100)
    model.fit_inputs(X)
    train(model, model.optimizers(tiny_params())[0], X, range(3))
    save_torch(tmp_path / "dbm.pt", model.to_checkpoint())
    loaded = registry.load(tmp_path / "dbm.pt")
    assert type(loaded) is DBM and loaded.hyperparameters == model.hyperparameters
    assert all(torch.equal(t, loaded.state_dict()[k]) for k, t in model.state_dict().items())
    assert torch.equal(loaded.log_prob(X), model.log_prob(X)) and loaded.estimator(1) == "ais-bound"
    assert (loaded.log_prob(X) < 0).all()
    drawn = loaded.sample(5, torch.Generator().manual_seed(1))
    assert drawn.shape == (5, 12) and torch.equal(drawn, model.sample(5, torch.Generator().manual_seed(1)))
    assert not torch.equal(drawn, model.sample(5, torch.Generator().manual_seed(2)))
    assert torch.equal(loaded.chains_h1, model.chains_h1)  # sampling leaves the persistent chains alone
    for protocol in (Model, Density, Sampler, Encoder, Reconstructor):
        assert isinstance(loaded, protocol), protocol
    assert loaded.encode(X).shape == (60, 4) and loaded.code_units == "binary" and loaded.n_inputs == 12
    assert set(loaded.validation_figures(X)) == {"valid_recon_error"}
