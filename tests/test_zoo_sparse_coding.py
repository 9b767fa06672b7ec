"""Sparse coding and PSD (components/models/sparse_coding.py, psd.py) and their shared
FISTA (components/models/nn/lasso.py): the Lasso against scikit-learn and against an
enumeration of sign patterns, its KKT conditions, the dictionary step against direct
solves, learning a known dictionary, PSD's encoder, checkpoints, params and protocols."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from components.errors import DulError
from components.models import registry
from components.models.base import Density, Encoder, Model, Reconstructor, Sampler
from components.models.nn.lasso import fista, lasso_objective
from components.models.psd import PSD
from components.models.sparse_coding import SparseCoding

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def unit_atoms(N: int, K: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A random dictionary (N, K) with unit-norm columns."""
    D = torch.randn(N, K, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return D / D.norm(dim=0)


def sparse_data(D: torch.Tensor, n: int, seed: int, active: int = 2, noise: float = 0.01) -> torch.Tensor:
    """n items (n, N) = D a + noise, ``active`` atoms each with coefficients +-U(1, 2)."""
    generator = torch.Generator().manual_seed(seed)
    K = D.shape[1]
    support = torch.rand(n, K, generator=generator).argsort(dim=1)[:, :active]
    values = (1 + torch.rand(n, active, generator=generator, dtype=D.dtype)) * \
        torch.randn(n, active, generator=generator, dtype=D.dtype).sign()
    a = torch.zeros(n, K, dtype=D.dtype).scatter_(1, support, values)
    return a @ D.T + noise * torch.randn(n, D.shape[0], generator=generator, dtype=D.dtype)


def lasso_by_enumeration(x: torch.Tensor, D: torch.Tensor, lam: float) -> float:
    """min_a 0.5 ||x - D a||^2 + lam ||a||_1 for one x (N,), exactly: for every sign
    pattern s in {-1, 0, 1}^K, a_S = (D_S^T D_S)^-1 (D_S^T x - lam s_S) is the stationary
    point with that pattern; the optimum is the best one whose signs agree with s."""
    best = 0.5 * float(x @ x)  # a = 0
    for signs in itertools.product((-1.0, 0.0, 1.0), repeat=D.shape[1]):
        s = torch.tensor(signs, dtype=D.dtype)
        S = s != 0
        if not S.any():
            continue
        a_S = torch.linalg.solve(D[:, S].T @ D[:, S], D[:, S].T @ x - lam * s[S])
        if torch.equal(a_S.sign(), s[S]):
            a = torch.zeros_like(s)
            a[S] = a_S
            best = min(best, float(lasso_objective(x[None], D, a[None], lam)))
    return best


# ---- FISTA ----

def test_fista_matches_scikit_learns_lasso_in_objective():
    from sklearn.linear_model import Lasso

    N, K, lam = 10, 6, 0.3
    D = unit_atoms(N, K, seed=1)
    x = sparse_data(D, 8, seed=2, active=3, noise=0.3)
    ours = lasso_objective(x, D, fista(x, D, lam, 3000), lam)
    # scikit-learn's Lasso minimises (1 / (2 n)) ||y - X w||^2 + alpha ||w||_1 over n = N rows: alpha = lam / N
    lasso = Lasso(alpha=lam / N, fit_intercept=False, tol=1e-14, max_iter=100_000)
    theirs = torch.stack([torch.from_numpy(lasso.fit(D.numpy(), row.numpy()).coef_.copy()) for row in x])
    reference = lasso_objective(x, D, theirs, lam)
    assert (theirs != 0).sum(dim=1).min() < K and (theirs != 0).sum() > len(x)  # sparse, not all zero
    assert torch.allclose(ours, reference, rtol=1e-5, atol=0), (ours - reference)


def test_fista_matches_the_exact_lasso_by_enumeration_of_sign_patterns():
    N, K, lam = 6, 4, 0.4
    D = unit_atoms(N, K, seed=3)
    x = sparse_data(D, 6, seed=4, active=2, noise=0.2)
    ours = lasso_objective(x, D, fista(x, D, lam, 2000), lam)
    exact = torch.tensor([lasso_by_enumeration(row, D, lam) for row in x], dtype=D.dtype)
    assert (ours >= exact - 1e-12).all()  # nothing beats the exact optimum
    assert torch.allclose(ours, exact, rtol=1e-8, atol=0), (ours - exact)


def test_fista_is_beck_and_teboulles_iteration_step_by_step():
    """The paper's FISTA with constant step (its section 4), written out: x_k = p_L(y_k),
    t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2, y_{k+1} = x_k + ((t_k - 1) / t_{k+1}) (x_k - x_{k-1})."""
    N, K, lam, alpha = 8, 5, 0.3, 0.7
    D = unit_atoms(N, K, seed=29)
    x = sparse_data(D, 4, seed=30, active=2, noise=0.2)
    t = torch.randn(4, K, generator=torch.Generator().manual_seed(31), dtype=D.dtype)
    L = float(torch.linalg.eigvalsh(D.T @ D).max()) + alpha
    previous = y = t.clone()
    s = 1.0
    for k in range(1, 8):
        gradient = (y @ D.T - x) @ D + alpha * (y - t)  # D^T (D y - x) + alpha (y - t), row by row
        v = y - gradient / L
        current = v.sign() * (v.abs() - lam / L).clamp(min=0)
        s_next = (1 + math.sqrt(1 + 4 * s * s)) / 2
        y = current + ((s - 1) / s_next) * (current - previous)
        previous, s = current, s_next
        ours = fista(x, D, lam, k, alpha=alpha, target=t, start=t)
        assert torch.allclose(ours, current, atol=1e-12, rtol=0), k
    assert not torch.allclose(ours, fista(x, D, lam, 6, alpha=alpha, target=t, start=t), atol=1e-4)


def kkt_violation(x, D, a, lam, alpha=0.0, target=None):
    """The largest violation of 0 in grad f(a) + lam d||a||_1 (f the smooth part): for
    a_j != 0, |g_j + lam sign(a_j)|; for a_j = 0, max(|g_j| - lam, 0). Also the active fraction."""
    g = (a @ D.T - x) @ D + (alpha * (a - target) if alpha else 0)  # grad f, (B, K)
    active = a != 0
    violation = torch.where(active, (g + lam * a.sign()).abs(), (g.abs() - lam).clamp(min=0))
    return float(violation.max()), float(active.double().mean())


def test_fista_codes_satisfy_the_kkt_conditions_of_an_overcomplete_lasso():
    N, K, lam = 12, 24, 0.2
    D = unit_atoms(N, K, seed=5)
    x = sparse_data(D, 16, seed=6, active=3, noise=0.05)
    violation, active = kkt_violation(x, D, fista(x, D, lam, 5000), lam)
    assert 0.02 < active < 0.6  # both kinds of condition are checked
    assert violation < 1e-6
    assert kkt_violation(x, D, fista(x, D, lam, 5), lam)[0] > 1e-3  # a few steps are not there yet


def test_fista_with_the_prediction_term_satisfies_its_kkt_conditions_from_any_start():
    N, K, lam, alpha = 12, 16, 0.2, 0.5
    D = unit_atoms(N, K, seed=7)
    x = sparse_data(D, 10, seed=8, active=3)
    t = torch.randn(10, K, generator=torch.Generator().manual_seed(9), dtype=D.dtype)
    from_zero = fista(x, D, lam, 3000, alpha=alpha, target=t)
    from_target = fista(x, D, lam, 3000, alpha=alpha, target=t, start=t)
    assert kkt_violation(x, D, from_zero, lam, alpha, t)[0] < 1e-8
    assert torch.allclose(from_zero, from_target, atol=1e-8, rtol=0)  # strongly convex: one minimiser
    assert not torch.allclose(from_zero, fista(x, D, lam, 3000), atol=1e-3)  # the term changes the answer


# ---- the dictionary step ----

def test_each_atom_update_is_the_exact_minimiser_of_the_surrogate_on_the_circle():
    """N = 2: each d_j, the others fixed (those before it already updated), against a
    grid of 200,000 angles minimising 0.5 tr(D^T D A) - tr(D^T B)."""
    model = SparseCoding(2, 3, lam=0.1, lasso_iterations=10).double()
    generator = torch.Generator().manual_seed(10)
    a, x = torch.randn(20, 3, generator=generator, dtype=torch.float64), torch.randn(20, 2, generator=generator,
                                                                                        dtype=torch.float64)
    model.A.copy_(a.T @ a)
    model.B.copy_(x.T @ a)
    before = model.D.detach().clone()
    model.update_dictionary()
    after = model.D.detach()
    angles = torch.linspace(0, 2 * math.pi, 200_001, dtype=torch.float64)
    circle = torch.stack([angles.cos(), angles.sin()])  # (2, M)
    for j in range(3):
        others = torch.cat([after[:, :j], before[:, j + 1:]], dim=1)
        A_o = torch.cat([model.A[j, :j], model.A[j, j + 1:]])  # A_jo, the couplings to the others
        # the surrogate's terms in d_j: 0.5 A_jj ||d_j||^2 + d_j^T (D_o A_oj) - d_j^T b_j
        surrogate = 0.5 * model.A[j, j] + circle.T @ (others @ A_o - model.B[:, j])
        best = circle[:, surrogate.argmin()]
        assert torch.allclose(after[:, j], best, atol=1e-4), (j, after[:, j], best)
        assert not torch.allclose(after[:, j], before[:, j], atol=1e-2)  # it moved


def test_repeated_dictionary_steps_converge_to_the_least_squares_solve():
    """Noise-free data x = D_true a: the surrogate's unconstrained minimiser B A^-1 is
    D_true, whose atoms have unit norm, so block-coordinate descent must reach it."""
    D_true = unit_atoms(8, 5, seed=11)
    a = torch.randn(40, 5, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    model = SparseCoding(8, 5, lam=0.1, lasso_iterations=10).double()
    model.A.copy_(a.T @ a)
    model.B.copy_((a @ D_true.T).T @ a)
    direct = torch.linalg.solve(model.A, model.B.T).T  # B A^-1 (A symmetric)
    assert torch.allclose(direct, D_true, atol=1e-10)
    for _ in range(500):
        model.update_dictionary()
    assert torch.allclose(model.D.detach(), direct, atol=1e-6)


def test_statistics_follow_the_mini_batch_forgetting_schedule():
    """beta_t = (theta + 1 - eta) / (theta + 1), theta = (t + 1) eta before t = eta - 1, then
    eta^2 + t + 1 - eta: for eta = 4, beta = 1/5, 5/9, 9/13, 13/17, 14/18."""
    model = SparseCoding(3, 2, lam=0.1, lasso_iterations=10).double()
    generator = torch.Generator().manual_seed(13)
    expected_A = torch.zeros(2, 2, dtype=torch.float64)
    for beta in (1 / 5, 5 / 9, 9 / 13, 13 / 17, 14 / 18):
        x, a = (torch.randn(4, n, generator=generator, dtype=torch.float64) for n in (3, 2))
        model.accumulate(x, a)
        expected_A = beta * expected_A + a.T @ a / 4
    assert torch.allclose(model.A, expected_A, atol=1e-14) and int(model.steps) == 5


def test_an_unused_atom_becomes_the_worst_reconstructed_items_residual():
    model = SparseCoding(4, 3, lam=0.1, lasso_iterations=10).double()
    a = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.0, -1.0]], dtype=torch.float64)  # atom 1 unused
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    model.accumulate(x, a)
    residual = torch.tensor([[0.0, 3.0, 0.0, 4.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    model.update_dictionary(residual)
    assert torch.equal(model.D[:, 1].detach(), torch.tensor([0.0, 0.6, 0.0, 0.8], dtype=torch.float64))


# ---- learning ----

def test_sparse_coding_recovers_a_known_dictionary_and_lowers_its_objective():
    D_true = unit_atoms(16, 8, seed=15, dtype=torch.float32)
    train, held_out = sparse_data(D_true, 3000, seed=16), sparse_data(D_true, 500, seed=17)
    # Dictionary learning is not convex: from some random dictionaries (seed 0 here) it settles in a
    # local minimum with two atoms sharing one true atom; this start (seed 1) is one that does not.
    torch.manual_seed(1)
    model = SparseCoding(16, 8, lam=0.3, lasso_iterations=50)
    before = model.validation_figures(held_out)["valid_objective"]
    true_objective = float(lasso_objective(held_out, D_true, fista(held_out, D_true, 0.3, 500), 0.3).mean())
    for _ in range(3):
        for start in range(0, len(train), 50):
            figures = model.training_step(train[start:start + 50], [])
            assert torch.allclose(model.D.norm(dim=0), torch.ones(8), atol=1e-5)  # unit atoms after every step
    after = model.validation_figures(held_out)["valid_objective"]
    assert figures["loss"].dim() == 0 and 1.5 < figures["nonzero"] < 3
    assert before > true_objective + 0.5 and after < true_objective + 0.01, (before, after, true_objective)
    match = (model.D.T @ D_true).abs()  # |cos| of learned atom i and true atom j, (8, 8)
    assert match.max(dim=0).values.min() > 0.99  # every true atom found, up to sign
    assert sorted(match.argmax(dim=0).tolist()) == list(range(8))  # by different learned atoms


def test_sparse_coding_encode_and_reconstruct_are_the_lasso_with_the_learned_dictionary():
    model = SparseCoding(16, 8, lam=0.3, lasso_iterations=50)
    x = sparse_data(unit_atoms(16, 8, seed=18, dtype=torch.float32), 20, seed=19)
    codes = model.encode(x.reshape(20, 1, 4, 4))  # images are flattened
    assert torch.equal(codes, fista(x, model.D, 0.3, 50))
    assert torch.allclose(model.reconstruct(x), codes @ model.D.T)
    assert (codes == 0).any() and (codes != 0).any()


def test_psd_prediction_error_falls_and_atoms_stay_unit_norm():
    D_true = unit_atoms(16, 8, seed=20, dtype=torch.float32)
    train, held_out = sparse_data(D_true, 2000, seed=21), sparse_data(D_true, 300, seed=22)
    torch.manual_seed(0)
    model = PSD(16, 8, lam=0.6, alpha=1.0, lasso_iterations=30)
    optimizers = model.optimizers(PSD.Params(lr=0.01))
    before = model.validation_figures(held_out)
    for _ in range(2):
        for start in range(0, len(train), 50):
            model.training_step(train[start:start + 50], optimizers)
            assert torch.allclose(model.D.norm(dim=0), torch.ones(8), atol=1e-5)
    after = model.validation_figures(held_out)
    assert after["valid_prediction_error"] < 0.5 * before["valid_prediction_error"], (before, after)
    assert after["valid_energy"] < before["valid_energy"] - 0.5, (before, after)


def test_psd_inference_minimises_the_papers_energy_from_the_prediction():
    model = PSD(12, 16, lam=0.4, alpha=0.5, lasso_iterations=3000).double()
    x = sparse_data(unit_atoms(12, 16, seed=23), 10, seed=24)
    z, prediction = model.infer(x), model.encode(x)
    # L = ||x - D z||^2 + lam |z|_1 + alpha ||z - F||^2 is twice FISTA's energy with lam / 2
    assert kkt_violation(x, model.D.detach(), z, model.lam / 2, model.alpha, prediction)[0] < 1e-8
    with torch.no_grad():
        energy = model.energy(x, z)["energy"]
        assert (energy < model.energy(x, prediction)["energy"]).all()
        assert (energy <= model.energy(x, z + 1e-3 * torch.randn_like(z))["energy"]).all()


def test_psd_encode_is_one_pass_of_the_encoder():
    model = PSD(6, 4, lam=0.2, alpha=1.0, lasso_iterations=5).double()
    x = torch.rand(3, 6, dtype=torch.float64)
    expected = model.g * torch.tanh(x @ model.W.T + model.b)
    assert torch.equal(model.encode(x), expected.detach())
    assert torch.allclose(model.reconstruct(x), expected.detach() @ model.D.detach().T)


# ---- checkpoints, params, protocols ----

def trained(model, steps: int = 3):
    x = sparse_data(unit_atoms(model.n_inputs, 4, seed=25, dtype=torch.float32), 60, seed=26)
    optimizers = model.optimizers(type(model).Params(lr=0.01))
    for step in range(steps):
        model.training_step(x[step * 20:(step + 1) * 20], optimizers)
    return model


@pytest.mark.parametrize("make", [lambda: SparseCoding(10, 6, 0.2, 20), lambda: PSD(10, 6, 0.4, 1.0, 20)])
def test_checkpoint_round_trip_reproduces_encode_exactly(make, tmp_path):
    model = trained(make())
    x = sparse_data(unit_atoms(10, 4, seed=27, dtype=torch.float32), 30, seed=28)
    torch.save(model.to_checkpoint(), tmp_path / "model.pt")
    loaded = registry.load(tmp_path / "model.pt")
    assert type(loaded) is type(model) and loaded.hyperparameters == model.hyperparameters
    assert torch.equal(loaded.encode(x), model.encode(x)) and loaded.encode(x).abs().sum() > 0
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_sparse_coding_resumed_from_its_state_continues_bitwise():
    torch.manual_seed(1)
    whole, x = trained(SparseCoding(10, 6, 0.2, 20), steps=2), torch.rand(20, 10)
    torch.manual_seed(2)
    resumed = SparseCoding(10, 6, 0.2, 20)
    resumed.load_state_dict(whole.state_dict())  # A, B and the batch count come with it
    assert int(resumed.steps) == 2 and resumed.A.abs().sum() > 0
    whole.training_step(x, [])
    resumed.training_step(x, [])
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())


@pytest.mark.parametrize("cls, changes, message", [
    (SparseCoding, dict(atoms=0), "sparse_coding.atoms is 0: must be positive"),
    (SparseCoding, dict(lam=0.0), "sparse_coding.lam is 0.0: must be positive"),
    (SparseCoding, dict(lasso_iterations=0), "sparse_coding.lasso_iterations is 0"),
    (SparseCoding, dict(epochs=0), "sparse_coding.epochs is 0"),
    (PSD, dict(alpha=-1.0), "psd.alpha is -1.0: must be positive"),
    (PSD, dict(lam=0.0), "psd.lam is 0.0"),
    (PSD, dict(atoms=0), "psd.atoms is 0"),
    (PSD, dict(lasso_iterations=0), "psd.lasso_iterations is 0"),
    (PSD, dict(lr=0.0), "psd.lr is 0.0"),
])
def test_params_reject_bad_values_naming_the_key(cls, changes, message):
    cls.Params().validate()
    with pytest.raises(DulError, match=message):
        dataclasses.replace(cls.Params(), **changes).validate()


def test_both_build_for_a_shape_and_follow_the_protocols():
    coder = SparseCoding.from_params(SparseCoding.Params(atoms=9), (1, 4, 5))
    psd = PSD.from_params(PSD.Params(atoms=7), (20,))
    assert coder.D.shape == (20, 9) and psd.D.shape == (20, 7) and psd.W.shape == (7, 20)
    assert coder.optimizers(SparseCoding.Params()) == [] and len(psd.optimizers(PSD.Params())) == 1
    for model in (coder, psd):
        assert isinstance(model, Model) and isinstance(model, Encoder) and isinstance(model, Reconstructor)
        assert not isinstance(model, Density) and not isinstance(model, Sampler)
        assert model.code_units == "linear" and model.n_inputs == 20 and model.inputs == "real"
        assert torch.allclose(model.D.norm(dim=0), torch.ones(model.code_size))
    assert (coder.code_size, psd.code_size) == (9, 7)


def test_sparse_coding_on_several_workers_is_refused_in_one_line(tmp_path):
    """No optimizer averages the workers' dictionary steps: two workers would learn two dictionaries."""
    from components.config import parse_dataclass, parse_section
    from components.data import ingest, item_shape, read_card
    from components.training import family, loop

    data = tmp_path / "prepared"
    ingest("digits", data)
    params = parse_dataclass(SparseCoding.Params, "sparse_coding", {"atoms": 4, "epochs": 1, "lasso_iterations": 2})
    config = {"family": "sparse_coding", "data_dir": str(data), "shape": list(item_shape(read_card(data), data)),
              "params": params, "zoo": parse_section("zoo", {})}
    two = loop.LocalSession()
    two.world = 2
    with pytest.raises(DulError, match=r"^sparse_coding updates its model without an optimizer, so 2 workers would "
                                        r"each learn alone from their own shard; set zoo.num_workers: 1$"):
        loop.run_in_process(family.family_loop, config, session=two)
    assert loop.run_in_process(family.family_loop, config)["done"]  # one worker trains


@pytest.mark.parametrize("make, family", [(lambda: SparseCoding(10, 6, 0.2, 20), "sparse_coding"),
                                          (lambda: PSD(10, 6, 0.4, 1.0, 20), "psd")])
def test_a_dictionary_of_more_atoms_than_training_items_is_one_line(make, family):
    model = make()
    model.fit_inputs(torch.rand(6, 10))  # as many items as atoms: fine
    with pytest.raises(DulError, match=rf"^{family}.atoms is 6 but the training split has 5 items; .*atoms <= 5$"):
        model.fit_inputs(torch.rand(5, 10))


def test_the_starting_dictionary_is_drawn_from_the_nonblank_training_items():
    X = torch.zeros(8, 10)
    X[:5] = torch.rand(5, 10) + 0.1  # three blank items that must never become atoms
    torch.manual_seed(0)
    model = SparseCoding(10, 4, 0.2, 20)
    model.fit_inputs(X)
    atoms = model.D.T  # (K, N)
    items = X[:5] / X[:5].norm(dim=1, keepdim=True)
    matches = (atoms @ items.T).isclose(torch.tensor(1.0)).sum(dim=1)
    assert matches.tolist() == [1, 1, 1, 1] and len({int(i) for i in (atoms @ items.T).argmax(dim=1)}) == 4
    torch.manual_seed(0)
    again = SparseCoding(10, 4, 0.2, 20)
    again.fit_inputs(X)
    assert torch.equal(again.D, model.D)  # seeded: the same draw
    few = SparseCoding(10, 7, 0.2, 20)  # seven atoms, five non-blank items: two stay random, all unit norm
    few.fit_inputs(X)
    assert torch.allclose(few.D.norm(dim=0), torch.ones(7))
    assert (few.D.T @ items.T).isclose(torch.tensor(1.0)).any(dim=1).sum() == 5
