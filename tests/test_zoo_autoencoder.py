"""The zoo's stacked autoencoder (components/models/stacked_autoencoder.py, family
"stacked_autoencoder") against the maths written out by hand on tiny stacks: the
cross-entropy and the KL sparsity penalty, the gradient the training step descends,
the greedy schedule (one layer trains, the others stay put), encode and reconstruct
through the tied layers; then params, checkpoints and the protocols."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from components.config import parse_dataclass
from components.errors import DulError
from components.io import save_torch
from components.models import registry
from components.models.base import Density, Encoder, Model, Reconstructor, Sampler
from components.models.stacked_autoencoder import StackedAutoencoder

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def random_stack(D: int = 6, hidden=(4, 3), seed: int = 0, scale: float = 1.0, **kwargs) -> StackedAutoencoder:
    """A float64 stack with every parameter drawn as scale * N(0, 1): biases far from zero too."""
    torch.manual_seed(seed)
    model = StackedAutoencoder(D, hidden, **{"epochs": 2 * len(hidden), **kwargs}).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model


def binary(n: int, D: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.4).double()


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


def hand_cross_entropy(v: torch.Tensor, W: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor) -> torch.Tensor:
    """-(1/B) sum_b sum_i [v log r + (1 - v) log(1 - r)], r = sigmoid(b_v + sigmoid(b_h + v W) W^T), element by element."""
    B, D = v.shape
    total = torch.zeros((), dtype=torch.float64)
    for b in range(B):
        h = [sigmoid(b_h[j] + sum(v[b, i] * W[i, j] for i in range(D))) for j in range(W.shape[1])]
        for i in range(D):
            r = sigmoid(b_v[i] + sum(h[j] * W[i, j] for j in range(W.shape[1])))
            total -= v[b, i] * torch.log(r) + (1 - v[b, i]) * torch.log(1 - r)
    return total / B


def test_one_plain_layer_loss_is_the_bernoulli_cross_entropy_of_the_tied_reconstruction():
    model = random_stack(5, (3,))
    v = binary(7, 5, seed=1)
    layer = model.layers[0]
    expected = hand_cross_entropy(v, layer.W.detach(), layer.b_v.detach(), layer.b_h.detach())
    figures = model.loss(v)
    assert expected > 1.0  # far from a perfect reconstruction: the comparison means something
    assert figures["loss"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert figures["cross_entropy"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_the_sparsity_penalty_adds_exactly_cost_times_the_sum_of_the_kls():
    cost, rho = 0.7, 0.1
    plain, sparse = random_stack(5, (4,), seed=2), random_stack(5, (4,), seed=2, sparsity_cost=cost,
                                                               sparsity_target=rho)
    v = binary(9, 5, seed=3)
    layer = sparse.layers[0]
    with torch.no_grad():
        rho_hat = sigmoid(layer.b_h + v @ layer.W).mean(dim=0)  # (4,), each unit's mean activation
    kl = sum(rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q)) for q in rho_hat)
    assert kl > 0.1
    difference = sparse.loss(v)["loss"] - plain.loss(v)["loss"]
    assert difference.item() == pytest.approx(cost * kl.item(), rel=1e-10)
    assert sparse.loss(v)["sparsity"].item() == pytest.approx(kl.item(), rel=1e-10)


@pytest.mark.parametrize("sparsity_cost", [0.0, 0.5])
def test_without_noise_the_training_step_descends_the_loss_of_the_layer_in_training(sparsity_cost):
    model = random_stack(6, (4, 3), seed=4, scale=0.5, sparsity_cost=sparsity_cost)
    x = binary(8, 6, seed=5)
    model.start_epoch(2)  # the second layer's epochs (2 layers, 4 epochs)
    assert int(model.layer) == 1
    model.zero_grad()
    model.loss(x)["loss"].backward()
    top = model.layers[1]
    expected = {name: p.grad.clone() for name, p in top.named_parameters()}
    assert all(p.grad is None for p in model.layers[0].parameters())  # the layer below: a fixed input

    class Record(torch.optim.Optimizer):  # "steps" by keeping the gradients it is handed
        def __init__(self, params):
            super().__init__(params, {})

        def step(self, closure=None):
            self.seen = {id(p): p.grad.clone() for group in self.param_groups for p in group["params"]
                         if p.grad is not None}

    recorder = Record(model.parameters())
    figures = model.training_step(x, [recorder])
    assert set(recorder.seen) == {id(p) for p in top.parameters()}
    for name, p in top.named_parameters():
        assert torch.allclose(recorder.seen[id(p)], expected[name], rtol=1e-10, atol=1e-12), name
    assert figures["layer"].item() == 1.0
    assert figures["loss"].item() == pytest.approx(model.loss(x)["loss"].item(), rel=1e-12)


def test_the_layers_train_one_at_a_time_in_order_the_others_unchanged():
    model = StackedAutoencoder(6, [4, 3], noise=0.3, sparsity_cost=0.1, epochs=4).double()
    optimizers = model.optimizers(StackedAutoencoder.Params(lr=0.05))
    x = binary(20, 6, seed=6)
    assert [model.layer_at(e) for e in range(4)] == [0, 0, 1, 1]
    assert [StackedAutoencoder(6, [4, 3, 2], epochs=7).layer_at(e) for e in range(7)] == [0, 0, 0, 1, 1, 2, 2]

    def snapshot(index):
        return [p.detach().clone() for p in model.layers[index].parameters()]

    seen = []
    for epoch in range(4):
        model.start_epoch(epoch)
        before = [snapshot(0), snapshot(1)]
        figures = [model.training_step(batch, optimizers) for batch in x.split(5)]
        after = [snapshot(0), snapshot(1)]
        trained, frozen = model.layer_at(epoch), 1 - model.layer_at(epoch)
        assert all(torch.equal(a, b) for a, b in zip(before[frozen], after[frozen])), (epoch, frozen)
        assert all(not torch.equal(a, b) for a, b in zip(before[trained], after[trained])), (epoch, trained)
        assert all(f["layer"].item() == trained for f in figures)
        seen.append(trained)
    assert seen == [0, 0, 1, 1]


def test_encode_and_reconstruct_go_up_and_down_the_tied_layers():
    model = random_stack(6, (4, 3), seed=7)
    x = binary(5, 6, seed=8)
    (W1, b_v1, b_h1), (W2, b_v2, b_h2) = ([p.detach() for p in (layer.W, layer.b_v, layer.b_h)]
                                          for layer in model.layers)
    h1 = sigmoid(b_h1 + x @ W1)
    h2 = sigmoid(b_h2 + h1 @ W2)
    assert torch.allclose(model.encode(x), h2, rtol=1e-12, atol=0)
    assert torch.allclose(model.encode(x), model.layers[1].h_mean(model.layers[0].h_mean(x)), rtol=1e-12, atol=0)
    down = sigmoid(b_v1 + sigmoid(b_v2 + h2 @ W2.T) @ W1.T)
    assert torch.allclose(model.reconstruct(x), down, rtol=1e-12, atol=0)
    assert torch.allclose(model.reconstruct(x, depth=1), sigmoid(b_v1 + h1 @ W1.T), rtol=1e-12, atol=0)
    assert model.reconstruct(x).min() > 0 and model.reconstruct(x).max() < 1


def test_training_lowers_each_layers_loss_on_its_own_input():
    torch.manual_seed(0)
    prototypes = (torch.rand(3, 16) < 0.5).double()
    x = prototypes[torch.randint(3, (120,))]
    x = torch.where(torch.rand_like(x) < 0.05, 1 - x, x)  # three noisy prototypes
    model = StackedAutoencoder(16, [8, 4], noise=0.1, epochs=2).double()
    optimizers = model.optimizers(StackedAutoencoder.Params(lr=0.05))
    for epoch in range(2):
        model.start_epoch(epoch)
        first = model.loss(x)["loss"].item()
        for _ in range(30):
            for batch in x.split(20):
                model.training_step(batch, optimizers)
        assert model.loss(x)["loss"].item() < 0.7 * first, epoch


@pytest.mark.parametrize("values, key", [
    ({"hidden": []}, "stacked_autoencoder.hidden is \\[\\]"),
    ({"hidden": [8, 0]}, "stacked_autoencoder.hidden is \\[8, 0\\]"),
    ({"noise": 1.0}, "stacked_autoencoder.noise is 1.0"),
    ({"noise": -0.1}, "stacked_autoencoder.noise is -0.1"),
    ({"sparsity_cost": -1.0}, "stacked_autoencoder.sparsity_cost is -1.0"),
    ({"sparsity_target": 0.0}, "stacked_autoencoder.sparsity_target is 0.0"),
    ({"sparsity_target": 1.0}, "stacked_autoencoder.sparsity_target is 1.0"),
    ({"hidden": [8, 4, 2], "epochs": 2}, "stacked_autoencoder.epochs is 2"),
    ({"lr": 0.0}, "stacked_autoencoder.lr is 0.0"),
    ({"inputs": "counts"}, "stacked_autoencoder.inputs is 'counts'"),
])
def test_params_validation_names_the_key(values, key):
    parse_dataclass(StackedAutoencoder.Params, "stacked_autoencoder", {})
    with pytest.raises(DulError, match=f"^{key}") as error:
        parse_dataclass(StackedAutoencoder.Params, "stacked_autoencoder", values)
    assert "\n" not in str(error.value)


def test_checkpoint_round_trip_and_protocols(tmp_path):
    params = dataclasses.replace(StackedAutoencoder.Params(), hidden=(5, 3), noise=0.2, sparsity_cost=0.1, epochs=4)
    model = StackedAutoencoder.from_params(params, (1, 4, 4))
    optimizers = model.optimizers(params)
    x = binary(10, 16, seed=9).float()
    for epoch in range(4):
        model.start_epoch(epoch)
        model.training_step(x, optimizers)
    save_torch(tmp_path / "model.pt", model.to_checkpoint())
    loaded = registry.load(tmp_path / "model.pt")
    assert type(loaded) is StackedAutoencoder and loaded.hyperparameters == model.hyperparameters
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert int(loaded.layer) == 1 and torch.equal(loaded.encode(x), model.encode(x))
    assert isinstance(loaded, Model) and isinstance(loaded, Encoder) and isinstance(loaded, Reconstructor)
    assert not isinstance(loaded, Density) and not isinstance(loaded, Sampler)
    assert (loaded.n_inputs, loaded.code_size, loaded.code_units) == (16, 3, "binary")
    assert loaded.reconstruct(x).shape == (10, 16)
    assert loaded.validation_figures(x)["valid_recon_error"] > 0


def test_real_inputs_are_the_intensities_the_loop_hands_it(tmp_path):
    """inputs: real gives the family the stored intensities, not the zoo's binarized draw,
    and survives a checkpoint."""
    from components.config import parse_section
    from components.data import ingest
    from components.data.binarize import family_inputs, split_inputs
    from components.models import registry

    data = tmp_path / "prepared"
    ingest("digits", data)
    zoo = parse_section("zoo", {})
    real = StackedAutoencoder.from_params(dataclasses.replace(StackedAutoencoder.Params(), inputs="real"), (1, 8, 8))
    binary = StackedAutoencoder.from_params(StackedAutoencoder.Params(), (1, 8, 8))
    assert family_inputs(real) == "real" and family_inputs(binary) == "binary"
    X = split_inputs(data, "train", family_inputs(real), zoo)
    assert ((X > 0) & (X < 1)).any()  # grey levels: not binarized
    assert set(split_inputs(data, "train", family_inputs(binary), zoo).ravel().tolist()) == {0.0, 1.0}
    assert family_inputs(registry.load(real.to_checkpoint())) == "real"
