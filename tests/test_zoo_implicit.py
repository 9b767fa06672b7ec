"""Implicit models (GAN, DCGAN, GMMN): two optimizers through one training step, the MMD
against brute force, shapes, and one-line errors for images they cannot take."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from components.errors import DulError
from components.models.gan import GAN
from components.models.gmmn import GMMN, mmd2


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("architecture, shape", [("mlp", (8, 8)), ("dcgan", (8, 8)), ("dcgan", (28, 28))])
def test_a_gan_step_moves_each_network_by_its_own_optimizer_only(architecture, shape):
    torch.manual_seed(0)
    model = GAN(shape, architecture, latent=4, hidden=8)
    x = torch.rand(6, shape[0] * shape[1])
    d_opt, g_opt = model.optimizers(GAN.Params(architecture=architecture))
    d_before, g_before = snapshot(model.discriminator), snapshot(model.generator)
    figures = model.training_step(x, [d_opt, torch.optim.SGD(model.generator.parameters(), lr=0.0)])
    assert all(torch.isfinite(v) for v in figures.values()) and set(figures) >= {"d_loss", "g_loss"}
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))  # its rate was 0
    d_after = snapshot(model.discriminator)
    model.training_step(x, [torch.optim.SGD(model.discriminator.parameters(), lr=0.0), g_opt])
    assert all(torch.equal(a, b) for a, b in zip(d_after, model.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    drawn = model.sample(5, torch.Generator().manual_seed(1))
    assert drawn.shape == (5, shape[0] * shape[1]) and 0 <= drawn.min() and drawn.max() <= 1
    assert torch.equal(drawn, model.sample(5, torch.Generator().manual_seed(1))) and model.training


def test_dcgan_refuses_sides_not_divisible_by_four():
    with pytest.raises(DulError, match="divisible by 4.*use gan.architecture: mlp"):
        GAN((10, 10), "dcgan")
    with pytest.raises(DulError, match="gan models grey images"):
        GAN.from_params(GAN.Params(), (64,))


def test_mmd_is_the_kernel_sums_written_out():
    rng = np.random.default_rng(0)
    x, y, widths = torch.from_numpy(rng.random((4, 3))), torch.from_numpy(rng.random((5, 3))), (0.5, 2.0)

    def k(a, b):
        return sum(np.exp(-((a - b) ** 2).sum() / (2 * s * s)) for s in widths)

    def mean(a, b):
        return np.mean([k(p, q) for p, q in itertools.product(a, b)])

    expected = mean(x.numpy(), x.numpy()) + mean(y.numpy(), y.numpy()) - 2 * mean(x.numpy(), y.numpy())
    assert float(mmd2(x, y, widths)) == pytest.approx(expected, rel=1e-9)
    assert float(mmd2(x, x, widths)) == pytest.approx(0.0, abs=1e-12)


def test_a_gmmn_learns_to_move_its_samples_onto_the_data():
    """Data at one corner of the unit square: the MMD falls as the generator learns."""
    torch.manual_seed(0)
    model = GMMN(2, latent=2, hidden=(16,), bandwidths=(0.1, 0.5))
    data = 0.9 + 0.05 * torch.rand(64, 2)
    (optimizer,) = model.optimizers(GMMN.Params(lr=0.01))
    first = float(model.training_step(data, [optimizer])["mmd2"])
    for _ in range(200):
        last = float(model.training_step(data, [optimizer])["mmd2"])
    assert last < first / 10 and model.sample(7).shape == (7, 2)


def test_a_discriminator_gone_nan_names_the_network_the_family_and_the_epoch():
    from components.config import parse_dataclass, parse_section
    from components.training import family, loop

    params = parse_dataclass(GAN.Params, "gan", {"architecture": "mlp"})
    phase = family.family_phase({"family": "gan", "name": "dcgan", "data_dir": "unused", "shape": [1, 8, 8],
                                 "params": params, "zoo": parse_section("zoo", {})})
    with pytest.raises(DulError, match=r"train@dcgan: training diverged \(NaN/inf in train_d_loss\) in dcgan at "
                                       r"epoch 3; .*lower dcgan.lr"):
        loop.check_finite({"train_d_loss": float("nan"), "train_g_loss": 0.7}, [], "train@dcgan", phase, epoch=2)


def test_gmmn_ae_matches_moments_in_code_space_and_decodes_its_samples():
    """GMMN+AE: the autoencoder learns by its own optimizer, the generator's MMD is on codes."""
    torch.manual_seed(0)
    params = GMMN.Params(space="autoencoder", autoencoder=(16, 3), lr=0.01, latent=2, hidden=(16,))
    params.validate()
    model = GMMN.from_params(params, (1, 4, 4))
    assert model.bandwidths == list(params.code_bandwidths) and model.generator[-1].out_features == 3
    data = (torch.rand(64, 16) > 0.5).float()
    ae_opt, g_opt = model.optimizers(params)
    decoder_before = snapshot(model.decoder)
    first = model.training_step(data, [ae_opt, torch.optim.SGD(model.generator.parameters(), lr=0.0)])
    assert set(first) == {"loss", "mmd2", "reconstruction"}
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))
    for _ in range(150):
        last = model.training_step(data, [ae_opt, g_opt])
    assert float(last["reconstruction"]) < float(first["reconstruction"])
    drawn = model.sample(5, torch.Generator().manual_seed(1))
    assert drawn.shape == (5, 16) and 0 <= drawn.min() and drawn.max() <= 1
    restored = GMMN.from_checkpoint(model.to_checkpoint())
    assert torch.equal(restored.sample(5, torch.Generator().manual_seed(1)), drawn)
    with pytest.raises(DulError, match="gmmn.space is 'codes'"):
        GMMN.Params(space="codes").validate()
