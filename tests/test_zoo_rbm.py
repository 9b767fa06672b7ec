"""The zoo's RBM (components/models/rbm.py, family "rbm"): AIS's log Z against
enumeration, log_prob normalised over every state, the log Z cache, CD-1 and
PCD learning measured by the exact held-out likelihood, sampling against the
exact marginals, checkpoints, params and the protocols."""

from __future__ import annotations

import copy

import pytest
import torch

from components.config import parse_dataclass
from components.errors import DulError
from components.io import save_torch
from components.models import rbm as rbm_module
from components.models import registry
from components.models.base import Density, Encoder, Model, Sampler
from components.models.nn.ais import (
    beta_schedule,
    exact_log_partition,
    scaled_beta_schedule,
)
from components.models.rbm import RBM
from tests.test_ais import all_binary

AIS_TOLERANCE = 0.05  # nats; over five random RBMs like these the error was at most 0.01


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def random_rbm(D: int = 10, H: int = 6, scale: float = 1.0, seed: int = 0, **hyperparameters) -> RBM:
    """An RBM in float64 with W, b_v and b_h all drawn as scale * N(0, 1): far from uniform."""
    model = RBM(D, H, **hyperparameters).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (model.W, model.b_v, model.b_h):
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def prototypes_data(n: int, seed: int) -> torch.Tensor:
    """4 fixed prototype patterns of D = 12, each bit flipped with probability 0.05, (n, 12)."""
    prototypes = (torch.rand(4, 12, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    generator = torch.Generator().manual_seed(seed)
    rows = prototypes[torch.randint(4, (n,), generator=generator)]
    flips = (torch.rand(n, 12, generator=generator) < 0.05).float()
    return (rows + flips) % 2


def exact_log_prob(model: RBM, x: torch.Tensor, monkeypatch) -> torch.Tensor:
    """log_prob with the exact log Z in place of AIS's."""
    exact = exact_log_partition(model)
    with monkeypatch.context() as patch:
        patch.setattr(model, "log_partition", lambda: (exact, exact, exact))
        return model.log_prob(x)


def test_ais_log_z_agrees_with_enumeration_and_its_bars_hold_the_exact_value():
    model = random_rbm(ais_betas=2000)  # ais_chains: the default 100
    exact = exact_log_partition(model)
    estimate, lower, upper = model.log_partition()
    assert abs(estimate - exact) < AIS_TOLERANCE
    assert lower <= exact <= upper and upper - lower < 0.5
    uniform_base = (10 + 6) * torch.log(torch.tensor(2.0)).item()  # log Z of the start: AIS moved far from it
    assert abs(exact - uniform_base) > 1.0


def test_the_schedule_is_the_papers_scaled_in_proportion():
    assert torch.equal(scaled_beta_schedule(14500), beta_schedule())
    short = scaled_beta_schedule(2000)
    assert len(short) == 2001 and short[0] == 0 and short[-1] == 1 and (short.diff() >= 0).all()
    assert (short < 0.5).sum() == 69 and ((short >= 0.5) & (short < 0.9)).sum() == 552  # 2000 * 500 / 14500, ...
    with pytest.raises(DulError, match="at least 3 steps"):
        scaled_beta_schedule(2)


def test_log_prob_sums_to_one_over_every_state(monkeypatch):
    model, states = random_rbm(ais_betas=2000), all_binary(10)
    assert torch.logsumexp(exact_log_prob(model, states, monkeypatch), 0).item() == pytest.approx(0.0, abs=1e-10)
    with_ais = torch.logsumexp(model.log_prob(states), 0).item()  # off by exactly log Z's AIS error
    assert abs(with_ais) < AIS_TOLERANCE and with_ais == pytest.approx(exact_log_partition(model) -
                                                                       model.log_partition()[0], abs=1e-9)
    assert model.estimator(5000) == "ais"


def test_log_z_is_computed_once_until_a_step_changes_the_parameters(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(kwargs["betas"]))
        return real(*args, **kwargs)

    real = rbm_module.ais_log_partition
    monkeypatch.setattr(rbm_module, "ais_log_partition", counted)
    torch.manual_seed(0)
    model = RBM(12, 4, ais_chains=10, ais_betas=50)
    x = prototypes_data(20, seed=1)
    rng = torch.get_rng_state()
    first = model.log_prob(x)
    assert torch.equal(model.log_prob(x), first) and calls == [51]  # once, with ais_betas + 1 temperatures
    assert torch.equal(torch.get_rng_state(), rng)  # AIS draws from its own generator
    model.training_step(x, model.optimizers(RBM.Params()))
    after = model.log_prob(x)
    assert len(calls) == 2 and not torch.equal(after, first)
    model.log_prob(x)
    assert len(calls) == 2
    with torch.no_grad():
        model.b_h.data += 0.1  # an edit through .data bumps no version counter: the sum sees it
    model.log_prob(x)
    assert len(calls) == 3
    again = RBM.from_checkpoint(model.to_checkpoint())
    assert again.log_partition() == model.log_partition()  # the same parameters, the same log Z


def heldout_log_likelihood(model: RBM, x: torch.Tensor, monkeypatch) -> float:
    return exact_log_prob(model, x, monkeypatch).mean().item()


@pytest.mark.parametrize("persistent", [False, True])
def test_cd1_and_pcd_raise_the_exact_heldout_likelihood(persistent, monkeypatch):
    train, test = prototypes_data(500, seed=1), prototypes_data(500, seed=2)
    torch.manual_seed(0)
    model = RBM(12, 8, persistent=persistent)
    model.fit_inputs(train)
    optimizers = model.optimizers(RBM.Params())  # lr 0.05, momentum 0.5, weight cost 0.0002
    before = heldout_log_likelihood(model, test, monkeypatch)
    assert before == pytest.approx(-12 * torch.log(torch.tensor(2.0)).item(), abs=0.01)  # near uniform at start
    losses = []
    for step in range(600):
        i = (step * 50) % 500
        losses.append(model.training_step(train[i:i + 50], optimizers)["loss"].item())
    after = heldout_log_likelihood(model, test, monkeypatch)
    # the data's own entropy is about 3.77 nats (log 4 + 12 H(0.05)); over six seeds CD-1 reached
    # -4.2 to -4.6 and PCD -4.3 to -4.7
    assert after > before + 3.0 and after > -5.2
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])  # the reconstruction error fell
    assert len(model.chain) == (50 if persistent else 0)  # PCD's particles: one per batch row


def test_samples_are_reproducible_and_match_the_exact_marginals():
    model = random_rbm(D=10, H=6, scale=0.7, seed=3)
    drawn = model.sample(2000, torch.Generator().manual_seed(1))
    assert drawn.shape == (2000, 10) and drawn.min() >= 0 and drawn.max() <= 1
    again = model.sample(7, torch.Generator().manual_seed(1))
    assert torch.equal(again, model.sample(7, torch.Generator().manual_seed(1)))
    assert not torch.equal(again, model.sample(7, torch.Generator().manual_seed(2)))
    states = all_binary(10)
    W, b_v, b_h = model.W.detach(), model.b_v.detach(), model.b_h.detach()
    p = torch.softmax(states @ b_v + torch.nn.functional.softplus(states @ W + b_h).sum(1), 0)  # exact p(v)
    marginals = p @ states  # E[v_i], (10,)
    # 2000 chains: a standard error of at most 0.011 (measured 0.006); one sweep from the base rate is 0.08 off
    assert (drawn.mean(0) - marginals).abs().max() < 0.03


def test_a_checkpoint_file_round_trips_through_the_registry(tmp_path):
    torch.manual_seed(0)
    model = RBM(12, 5, persistent=True, ais_chains=10, ais_betas=60)
    data = prototypes_data(50, seed=4)
    model.fit_inputs(data)
    optimizers = model.optimizers(RBM.Params())
    for i in range(0, 50, 10):
        model.training_step(data[i:i + 10], optimizers)
    save_torch(tmp_path / "rbm.pt", model.to_checkpoint())
    loaded = registry.load(tmp_path / "rbm.pt")  # weights_only: nothing unpickled
    assert type(loaded) is RBM and loaded.hyperparameters == model.hyperparameters
    assert torch.equal(loaded.log_prob(data), model.log_prob(data))
    assert torch.equal(loaded.chain, model.chain) and torch.equal(loaded.base_rate, model.base_rate)
    # the PCD particles are in the checkpoint: the loaded model goes on training exactly as the original
    loaded_optimizers = loaded.optimizers(RBM.Params())
    loaded_optimizers[0].load_state_dict(copy.deepcopy(optimizers[0].state_dict()))  # momenta not shared
    for which, steps in ((model, optimizers), (loaded, loaded_optimizers)):
        torch.manual_seed(1)
        which.training_step(data[:10], steps)
    assert torch.equal(loaded.W, model.W) and torch.equal(loaded.chain, model.chain)


@pytest.mark.parametrize("values, message", [
    ({"hidden": 0}, "rbm.hidden is 0: must be positive"),
    ({"cd_k": 0}, "rbm.cd_k is 0: must be positive"),
    ({"ais_chains": 1}, "rbm.ais_chains is 1: must be at least 2"),
    ({"ais_betas": 2}, "rbm.ais_betas is 2: must be at least 3"),
    ({"momentum": 1.0}, r"rbm.momentum is 1.0: must be in \[0, 1\)"),
    ({"weight_decay": -0.1}, "rbm.weight_decay is -0.1: must be 0 or more"),
    ({"lr": 0}, "rbm.lr is 0"),
    ({"persistent": "yes"}, "rbm.persistent"),
])
def test_params_reject_bad_values_naming_the_key(values, message):
    with pytest.raises(DulError, match=message):
        parse_dataclass(RBM.Params, "rbm", values)


def test_params_build_the_model_they_describe():
    params = parse_dataclass(RBM.Params, "rbm", {"hidden": 7, "cd_k": 3, "persistent": True})
    assert params.lr == 0.05 and params.ais_betas == 14500 and params.ais_chains == 100
    model = registry.build("rbm", params, (1, 4, 4))
    assert model.W.shape == (16, 7) and (model.cd_k, model.persistent) == (3, True)
    groups = model.optimizers(params)[0].param_groups
    assert [g["weight_decay"] for g in groups] == [0.0002, 0.0] and groups[0]["params"] == [model.W]
    assert all(g["momentum"] == 0.5 and g["lr"] == 0.05 for g in groups)


def test_the_rbm_is_a_density_a_sampler_and_an_encoder_of_its_hidden_probabilities():
    model = RBM(6, 3)
    assert isinstance(model, Model) and isinstance(model, Density) and isinstance(model, Sampler)
    assert isinstance(model, Encoder) and (model.n_inputs, model.code_size) == (6, 3)
    with torch.no_grad():
        model.W.normal_(generator=torch.Generator().manual_seed(0))
        model.b_h.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([[1.0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 1]])
    expected = 1 / (1 + torch.exp(-(x @ model.W.detach() + model.b_h.detach())))
    torch.testing.assert_close(model.encode(x), expected)
