"""The unrolled deep autoencoder: weights come from the stack, checkpoints load safely."""

import pytest
import torch

from components.errors import DulError
from components.models.autoencoder import DeepAutoencoder
from components.models.rbm import BernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM


def stack():
    torch.manual_seed(0)
    return [BernoulliRBM(12, 8), BernoulliRBM(8, 5), BernoulliLinearRBM(5, 3)]


def test_unrolled_encoder_equals_the_stack_of_hidden_means():
    rbms, x = stack(), torch.rand(7, 12)
    model = DeepAutoencoder.from_rbms(rbms)
    expected = rbms[2].h_mean(rbms[1].h_mean(rbms[0].h_mean(x)))
    torch.testing.assert_close(model.encode(x), expected)
    assert model.sizes == [12, 8, 5, 3] and model.code_units == "linear"


def test_unrolled_decoder_uses_the_transposed_weights():
    rbms, z = stack(), torch.randn(4, 3)
    model = DeepAutoencoder.from_rbms(rbms)
    expected = rbms[0].v_mean(rbms[1].v_mean(rbms[2].v_mean(z)))
    torch.testing.assert_close(model.decode(z), expected)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = DeepAutoencoder.from_rbms(stack())
    torch.save(model.to_checkpoint(), tmp_path / "ae.pt")
    loaded = DeepAutoencoder.from_checkpoint(torch.load(tmp_path / "ae.pt", weights_only=True))
    x = torch.rand(3, 12)
    torch.testing.assert_close(loaded(x), model(x))


def test_loss_holds_cross_entropy_and_squared_error():
    model, x = DeepAutoencoder([12, 6, 2]), torch.rand(5, 12)
    losses = model.loss(x)
    recon = model.decode(model.encode(x))
    torch.testing.assert_close(losses["squared_error"], (recon - x).pow(2).sum() / 5)
    expected = torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") / 5
    torch.testing.assert_close(losses["loss"], expected, rtol=1e-4, atol=1e-4)


def test_a_stack_that_does_not_chain_is_an_error():
    with pytest.raises(DulError, match="does not chain: 8 hidden units feed 6 visible"):
        DeepAutoencoder.from_rbms([BernoulliRBM(12, 8), BernoulliRBM(6, 3)])


def test_the_registry_builds_the_flagship_by_its_family_name():
    from components.models import registry

    assert registry.family_class("deep-autoencoder") is DeepAutoencoder
    checkpoint = DeepAutoencoder.from_rbms(stack()).to_checkpoint()
    assert checkpoint["family"] == "deep-autoencoder"
    loaded = registry.load(checkpoint)
    x = torch.rand(3, 12)
    torch.testing.assert_close(loaded(x), DeepAutoencoder.from_checkpoint(checkpoint)(x))


def _counts(n=6, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full((n, d), 2.0), generator=g)


@pytest.mark.parametrize("units", ["poisson", "softmax"])
def test_count_autoencoders_use_a_softmax_output_and_the_multinomial_loss(units):
    torch.manual_seed(0)
    model, x = DeepAutoencoder([12, 6, 3], "binary", units), _counts()
    losses = model.loss(x)
    log_p = torch.log_softmax(model(x), dim=1)
    torch.testing.assert_close(losses["loss"], -(x * log_p).sum() / len(x))
    torch.testing.assert_close(losses["loss_per_word"], -(x * log_p).sum() / x.sum())
    recon = model.reconstruct(x)
    torch.testing.assert_close(recon.sum(dim=1), x.sum(dim=1))  # N softmax(z): the lengths are kept
    torch.testing.assert_close(losses["squared_error"], (recon - x).pow(2).sum() / len(x))


def test_a_softmax_first_layer_scales_its_bias_by_the_document_length():
    torch.manual_seed(0)
    model, x = DeepAutoencoder([12, 3], "linear", "softmax"), _counts()
    layer = model.encoder[0]
    expected = x @ layer.weight.T + x.sum(dim=1, keepdim=True) * layer.bias
    torch.testing.assert_close(model.encode(x), expected)
    assert not torch.allclose(DeepAutoencoder([12, 3], "linear", "poisson").encode(x), expected)


def test_gaussian_inputs_get_linear_outputs_and_half_squared_error():
    model, x = DeepAutoencoder([12, 6, 2], "linear", "gaussian"), torch.randn(5, 12)
    losses = model.loss(x)
    torch.testing.assert_close(model.reconstruct(x), model(x))
    torch.testing.assert_close(losses["loss"], 0.5 * (model(x) - x).pow(2).sum() / 5)


def test_code_noise_moves_logistic_codes_and_is_off_by_default():
    torch.manual_seed(0)
    model, x = DeepAutoencoder([12, 6, 4], "binary"), torch.rand(5, 12)
    noise = 4.0 * torch.randn(5, 4)
    assert torch.equal(model.encode(x), model.encode(x))
    noisy = model.encode(x, noise)
    assert not torch.allclose(noisy, model.encode(x)) and ((noisy < 0.1) | (noisy > 0.9)).float().mean() > 0.5


def test_checkpoint_keeps_the_input_units(tmp_path):
    model = DeepAutoencoder([12, 6, 2], "binary", "poisson")
    torch.save(model.to_checkpoint(), tmp_path / "ae.pt")
    loaded = DeepAutoencoder.from_checkpoint(torch.load(tmp_path / "ae.pt", weights_only=True))
    assert loaded.input_units == "poisson"
    with pytest.raises(DulError, match="input_units must be one of bernoulli, gaussian, poisson, softmax"):
        DeepAutoencoder([12, 2], "binary", "counts")
