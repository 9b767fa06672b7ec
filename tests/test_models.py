"""The unrolled deep autoencoder: weights come from the stack, checkpoints load safely."""

import pytest
import torch

from components.errors import DulError
from components.models import MODELS, BernoulliLinearRBM, BernoulliRBM, DeepAutoencoder


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


def test_registry_names_the_models():
    assert MODELS["rbm"] is BernoulliRBM and MODELS["deep-autoencoder"] is DeepAutoencoder
