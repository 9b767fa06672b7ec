"""The tied-weight (denoising) autoencoder layer: gradients, noise, training, unrolling."""

import pytest
import torch

from components.errors import DulError
from components.models.autoencoder import DeepAutoencoder
from components.models.nn.autoencoder_layer import AutoencoderLayer

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def prototypes_with_flips(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 16) binary data: four random 16-bit prototypes with 5% of bits flipped."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, 16, generator=generator) < 0.5).float()
    x = prototypes[torch.randint(0, 4, (n,), generator=generator)]
    flips = (torch.rand(x.shape, generator=generator) < 0.05).float()
    return (x + flips) % 2


def random_layer(noise=0.0, hidden_type="binary", n_visible=7, n_hidden=5, seed=0) -> AutoencoderLayer:
    torch.manual_seed(seed)
    layer = AutoencoderLayer(n_visible, n_hidden, init_std=0.5, noise=noise, hidden_type=hidden_type).double()
    with torch.no_grad():
        layer.b_v.normal_()
        layer.b_h.normal_()
    return layer


@pytest.mark.parametrize("hidden_type", ["binary", "linear"])
def test_layer_step_gradients_equal_loss_backward_without_noise(hidden_type):
    layer = random_layer(hidden_type=hidden_type)
    v = torch.rand(11, 7, dtype=torch.float64)
    layer.loss(v)["loss"].backward()
    expected = {name: p.grad.clone() for name, p in layer.named_parameters()}
    for p in layer.parameters():  # stale gradients must not leak into layer_step's
        p.grad.fill_(123.0)
    reconstruction = layer.layer_step(v)
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=name)
    assert not reconstruction.requires_grad and reconstruction.shape == (11, 7)
    torch.testing.assert_close(reconstruction, layer.decode(layer.encode(v)).detach())


def test_layer_step_in_bfloat16_keeps_float32_gradients_close_to_exact():
    torch.manual_seed(0)
    layer = AutoencoderLayer(20, 10, init_std=0.5)
    v = torch.rand(32, 20)
    exact_reconstruction = layer.layer_step(v)
    exact = {name: p.grad.clone() for name, p in layer.named_parameters()}
    reconstruction = layer.layer_step(v, k=3, dtype=torch.bfloat16, chain=v)  # k, chain: no meaning here
    assert reconstruction.dtype == torch.float32
    torch.testing.assert_close(reconstruction, exact_reconstruction, atol=0.02, rtol=0)
    for name, p in layer.named_parameters():
        assert p.grad.dtype == torch.float32
        scale = exact[name].abs().max().item()
        assert (p.grad - exact[name]).abs().max().item() < 0.05 * scale, name


def test_layer_step_trains_on_the_corrupted_input_and_returns_the_clean_reconstruction():
    layer = random_layer(noise=0.5)
    v = torch.rand(9, 7, dtype=torch.float64)
    torch.manual_seed(3)
    reconstruction = layer.layer_step(v)
    torch.manual_seed(3)  # the same mask again: the loss on (corrupted in, clean target)
    corrupted = layer.corrupt(v)
    expected = torch.autograd.grad(
        torch.nn.functional.binary_cross_entropy_with_logits(
            layer.v_logits(layer.h_mean(corrupted)), v, reduction="sum") / len(v), layer.W)[0]
    torch.testing.assert_close(layer.W.grad, expected)
    clean_grad = torch.autograd.grad(layer.loss(v)["loss"], layer.W)[0]
    assert (layer.W.grad - clean_grad).abs().max() > 1e-3  # the noise changed the gradient
    torch.testing.assert_close(reconstruction, layer.v_mean(layer.h_mean(v)).detach())


@pytest.mark.parametrize("noise", [0.1, 0.25, 0.5])
def test_masking_noise_zeroes_that_fraction_of_each_example(noise):
    layer = AutoencoderLayer(200, 3, noise=noise)
    v = torch.ones(500, 200)
    corrupted = layer.corrupt(v, generator=torch.Generator().manual_seed(0))
    zeroed = (corrupted == 0).float().mean(dim=1)  # (B,)
    torch.testing.assert_close(zeroed, torch.full((500,), noise))
    assert (corrupted[corrupted != 0] == 1).all()  # the rest is untouched
    columns = (corrupted == 0).float().mean(dim=0)  # every input is a candidate, not a fixed subset
    assert columns.min() > 0 and columns.max() < 1
    assert abs(columns.mean().item() - noise) < 1e-6


def test_masking_noise_differs_between_examples_and_is_off_at_zero():
    layer = AutoencoderLayer(30, 3, noise=0.3)
    corrupted = layer.corrupt(torch.ones(2, 30))
    assert not torch.equal(corrupted[0], corrupted[1])
    v = torch.rand(4, 30)
    assert torch.equal(AutoencoderLayer(30, 3, noise=0.0).corrupt(v), v)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_a_few_hundred_sgd_steps_reduce_the_reconstruction_error(noise):
    # The pretrain recipe (SGD, lr 0.1, momentum 0.9) on four noisy prototypes.
    X = prototypes_with_flips(200)
    torch.manual_seed(1)
    layer = AutoencoderLayer(16, 8, noise=noise)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    before = layer.loss(X)["recon_error"].item()
    generator = torch.Generator().manual_seed(2)
    for _ in range(300):
        layer.layer_step(X[torch.randint(0, len(X), (20,), generator=generator)])
        optimizer.step()
    after = layer.loss(X)
    assert before > 3.5  # about a quarter of the 16 bits wrong at the start
    assert after["recon_error"].item() < before / 4
    assert after["loss"].item() < 3.0  # cross-entropy, from about 16 ln 2 = 11.1 at the start


def test_from_rbms_unrolls_an_autoencoder_stack():
    torch.manual_seed(0)
    layers = [AutoencoderLayer(10, 6, init_std=0.5), AutoencoderLayer(6, 3, init_std=0.5, hidden_type="linear")]
    with torch.no_grad():
        for layer in layers:
            layer.b_v.normal_(), layer.b_h.normal_()
    net = DeepAutoencoder.from_rbms(layers)
    assert net.sizes == [10, 6, 3] and net.code_units == "linear"
    x = torch.rand(5, 10)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x), layers[1].h_mean(layers[0].h_mean(x)))
        # the decoder is the transposed stack: each layer's v_mean, top down
        torch.testing.assert_close(net.decode(net.encode(x)), layers[0].v_mean(layers[1].v_mean(net.encode(x))))


def test_binary_code_layer_unrolls_to_binary_code_units():
    net = DeepAutoencoder.from_rbms([AutoencoderLayer(8, 4), AutoencoderLayer(4, 2)])
    assert net.code_units == "binary"


def test_linear_hidden_units_are_unbounded():
    layer = AutoencoderLayer(4, 2, hidden_type="linear")
    with torch.no_grad():
        layer.b_h.fill_(5.0)
    assert AutoencoderLayer.hidden_type == "binary" and layer.hidden_type == "linear"
    assert AutoencoderLayer.visible_type == "bernoulli"
    torch.testing.assert_close(layer.h_mean(torch.zeros(1, 4)), torch.full((1, 2), 5.0))


@pytest.mark.parametrize("kwargs, words", [
    ({"n_visible": 0, "n_hidden": 3}, "at least one unit"),
    ({"n_visible": 3, "n_hidden": 0}, "at least one unit"),
    ({"n_visible": 3, "n_hidden": 2, "noise": 1.0}, "[0, 1)"),
    ({"n_visible": 3, "n_hidden": 2, "noise": -0.1}, "[0, 1)"),
    ({"n_visible": 3, "n_hidden": 2, "hidden_type": "gaussian"}, "binary, linear"),
    ({"n_visible": 3, "n_hidden": 2, "init_std": 0.0}, "init_std"),
])
def test_bad_constructor_arguments_raise_dul_error(kwargs, words):
    with pytest.raises(DulError) as info:
        AutoencoderLayer(**kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("bad", [torch.tensor([[0.5, 1.5]]), torch.tensor([[-0.1, 0.5]]),
                                 torch.tensor([[float("nan"), 0.5]]), torch.tensor([[float("inf"), 0.5]])])
def test_data_outside_zero_one_raises_dul_error(bad):
    layer = AutoencoderLayer(2, 2)
    with pytest.raises(DulError, match=r"finite and in \[0, 1\].*scale the data"):
        layer.check_data(bad)
    layer.check_data(torch.tensor([[0.0, 1.0], [0.3, 0.7]]))  # valid data passes
    with pytest.raises(DulError, match="^pretrain layer 2: visible data"):
        AutoencoderLayer.check_data(bad, layer="pretrain layer 2")


def test_the_sparsity_penalty_adds_ngs_gradient_to_the_hidden_biases():
    """d/db_h of cost * sum_j KL(rho || rho^_j) = cost (-rho / rho^_j + (1 - rho) / (1 - rho^_j)) h (1 - h) / B,
    summed over the batch (Ng's CS294A notes, section 3); the other gradients change through the same delta."""
    v = (torch.rand(9, 7, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    plain, sparse = random_layer(), random_layer()
    sparse.sparsity_target, sparse.sparsity_cost = 0.1, 0.7
    plain.layer_step(v), sparse.layer_step(v)
    with torch.no_grad():
        h = plain.h_mean(v)  # (B, H)
        rho = h.mean(dim=0)
        delta = 0.7 * (-0.1 / rho + 0.9 / (1 - rho)) * h * (1 - h) / len(v)  # (B, H)
    torch.testing.assert_close(sparse.b_h.grad - plain.b_h.grad, delta.sum(dim=0))
    torch.testing.assert_close(sparse.W.grad - plain.W.grad, v.T @ delta)  # the encoder's share of tied W
    torch.testing.assert_close(sparse.b_v.grad, plain.b_v.grad)


def test_a_sparse_autoencoder_layer_learns_the_target_activation():
    X = prototypes_with_flips(200)
    means = {}
    for cost in (0.0, 3.0):
        torch.manual_seed(1)
        layer = AutoencoderLayer(16, 8, sparsity_target=0.05, sparsity_cost=cost)
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
        generator = torch.Generator().manual_seed(2)
        for _ in range(300):
            layer.layer_step(X[torch.randint(0, len(X), (20,), generator=generator)])
            optimizer.step()
        with torch.no_grad():
            means[cost] = layer.h_mean(X).mean().item()
    assert means[0.0] > 0.3 and means[3.0] < 0.15  # 0.47 without the penalty, 0.11 with it (target 0.05)


def test_pretrain_builds_sparse_autoencoder_layers_but_no_penalty_on_linear_codes():
    from components.training.pretrain import build_layer

    params = {"hidden": [6, 3], "layer_model": "autoencoder", "sparsity_cost": 0.5, "sparsity_target": 0.1}
    bottom, top = build_layer(0, 8, params), build_layer(1, 6, {**params, "code_units": "linear"})
    assert (bottom.sparsity_cost, bottom.sparsity_target) == (0.5, 0.1) and top.sparsity_cost == 0.0
    with pytest.raises(DulError, match="the sparsity penalty needs binary code units"):
        AutoencoderLayer(4, 2, hidden_type="linear", sparsity_cost=1.0)
