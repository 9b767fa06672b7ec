"""Deep belief net sampling checked against exactly known distributions, and the samples figure."""

import itertools

import numpy as np
import pytest
import torch

from components.errors import DulError
from components.evaluation.samples import samples_figure
from components.models.nn.autoencoder_layer import AutoencoderLayer
from components.models.dbn import DeepBeliefNet
from components.models.rbm import BernoulliRBM
from components.models.rbm_gaussian import GaussianBernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))  # (2^n, n)


@torch.no_grad()
def train_cd1(rbm, data: torch.Tensor, steps: int, lr: float, seed: int = 0):
    """Plain CD-1 through h_mean / v_mean only (independent of the trainer's API)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        v = data[torch.randint(0, len(data), (20,), generator=generator)]  # (B, D)
        h_pos = rbm.h_mean(v)  # (B, H)
        v_neg = rbm.v_mean((torch.rand(h_pos.shape, generator=generator) < h_pos).float())
        h_neg = rbm.h_mean(v_neg)
        rbm.W += lr * (v.T @ h_pos - v_neg.T @ h_neg) / len(v)
        rbm.b_v += lr * (v - v_neg).mean(dim=0)
        rbm.b_h += lr * (h_pos - h_neg).mean(dim=0)
    return rbm


def copy_layer(n_hidden: int, width: int) -> BernoulliRBM:
    """A directed layer that copies each hidden unit onto ``width`` visible units (near-deterministically)."""
    layer = BernoulliRBM(n_hidden * width, n_hidden)
    with torch.no_grad():
        layer.W.copy_(20.0 * torch.eye(n_hidden).repeat_interleave(width, dim=0))  # (D, H)
        layer.b_v.fill_(-10.0)  # on iff its hidden unit is on: sigmoid(+-10)
    return layer


def random_top(cls, n_visible=3, n_hidden=2, seed=0, init_std=1.5):
    torch.manual_seed(seed)
    top = cls(n_visible, n_hidden, init_std=init_std)
    with torch.no_grad():
        top.b_v.normal_()
        top.b_h.normal_(std=0.5)
    return top


@pytest.mark.parametrize("top_class, init_std", [(BernoulliRBM, 1.5), (BernoulliLinearRBM, 0.5)])
def test_samples_follow_the_top_rbm_marginal_through_the_directed_layers(top_class, init_std):
    # top RBM 3-2 (the associative memory), a copy layer 3 -> 3 and a bottom layer 3 -> 6
    # (pairs of pixels): each bottom pattern has the top RBM's p(v) = exp(-F(v)) / Z.
    # Linear top units: the chain's h | v ~ N(b_h + v W, I) and F is rbm_linear's.
    top = random_top(top_class, init_std=init_std)
    dbn = DeepBeliefNet([copy_layer(3, 2), copy_layer(3, 1), top])
    configurations = all_binary(3)  # (8, 3)
    with torch.no_grad():
        exact = torch.softmax(-top.free_energy(configurations), dim=0)  # (8,)
    samples = dbn.sample(4000, gibbs_steps=30, generator=torch.Generator().manual_seed(0))  # (4000, 6)
    assert samples.shape == (4000, 6)
    patterns = (samples > 0.5).float()
    assert (patterns[:, 0::2] == patterns[:, 1::2]).all()  # the pairs the bottom layer draws
    assert ((samples - patterns).abs() < 1e-3).all()  # means at the bottom, near 0 or 1 here
    index = (patterns[:, 0::2] * torch.tensor([4.0, 2.0, 1.0])).sum(dim=1).long()
    frequencies = torch.bincount(index, minlength=8).float() / len(index)
    total_variation = 0.5 * (frequencies - exact).abs().sum().item()
    assert total_variation < 0.04, (frequencies, exact)
    start = torch.sigmoid(top.b_v).detach()  # zero Gibbs steps: the visible bias draw
    independent = (configurations * start + (1 - configurations) * (1 - start)).prod(dim=1)  # (8,)
    assert 0.5 * (independent - exact).abs().sum() > 0.2  # so the chain, not the start, made the match
    no_chain = (dbn.sample(4000, gibbs_steps=0, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    torch.testing.assert_close(no_chain[:, 0::2].mean(dim=0), start, atol=0.04, rtol=0)


def test_strong_top_bias_concentrates_samples_on_one_pattern():
    top = BernoulliRBM(3, 2, init_std=0.1)
    with torch.no_grad():
        top.b_v.copy_(torch.tensor([8.0, -8.0, 8.0]))  # top visible state [1, 0, 1]
    dbn = DeepBeliefNet([copy_layer(3, 2), top])
    samples = dbn.sample(500, gibbs_steps=20, generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    assert ((samples - expected).abs().max(dim=1).values < 0.01).float().mean() > 0.99


def test_gaussian_bottom_layer_gives_real_valued_means():
    top = BernoulliRBM(2, 2, init_std=0.1)
    with torch.no_grad():
        top.b_v.copy_(torch.tensor([8.0, -8.0]))  # top visible state [1, 0]
    bottom = GaussianBernoulliRBM(4, 2)
    with torch.no_grad():
        bottom.W.copy_(3.0 * torch.eye(2).repeat_interleave(2, dim=0))  # (4, 2)
        bottom.b_v.fill_(-1.5)
    samples = DeepBeliefNet([bottom, top]).sample(200, gibbs_steps=5, generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([1.5, 1.5, -1.5, -1.5])  # E[v | h] = b_v + W h with h = [1, 0]
    assert ((samples - expected).abs().max(dim=1).values < 1e-5).float().mean() > 0.99


def test_trained_dbn_samples_look_like_the_data():
    # two 6-pixel patterns with 5% flips; a 6-4-3 DBN trained greedily with CD-1
    generator = torch.Generator().manual_seed(0)
    patterns = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    data = patterns[torch.randint(0, 2, (300,), generator=generator)]
    data = (data + (torch.rand(data.shape, generator=generator) < 0.05).float()) % 2
    torch.manual_seed(0)
    bottom = train_cd1(BernoulliRBM(6, 4), data, steps=2000, lr=0.1)
    top = train_cd1(BernoulliRBM(4, 3), bottom.h_mean(data).detach(), steps=2000, lr=0.1, seed=1)
    dbn = DeepBeliefNet([bottom, top])
    samples = dbn.sample(400, gibbs_steps=100, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (400, 6)
    assert samples.min() >= 0 and samples.max() <= 1
    near = torch.cdist(samples, patterns).min(dim=1).values  # distance to the closer pattern
    assert (near < 0.75).float().mean() > 0.8
    share = torch.cdist(samples, patterns).argmin(dim=1).float().mean()  # of the second pattern
    assert 0.05 < share < 0.95  # both modes appear (their balance varies with CD's luck)
    again = dbn.sample(400, gibbs_steps=100, generator=torch.Generator().manual_seed(2))
    assert torch.equal(samples, again)  # the generator makes samples reproducible


def test_up_chains_h_mean():
    torch.manual_seed(0)
    layers = [BernoulliRBM(6, 4, init_std=1.0), BernoulliRBM(4, 3, init_std=1.0),
              BernoulliLinearRBM(3, 2, init_std=1.0)]
    dbn = DeepBeliefNet(layers)
    v = torch.rand(5, 6)
    with torch.no_grad():
        expected = layers[2].h_mean(layers[1].h_mean(layers[0].h_mean(v)))
    torch.testing.assert_close(dbn.up(v), expected)
    assert dbn.sizes == [6, 4, 3, 2]


def test_one_layer_dbn_samples_its_rbm():
    top = random_top(BernoulliRBM, n_visible=3, n_hidden=2, seed=3)
    samples = DeepBeliefNet([top]).sample(4000, gibbs_steps=30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = torch.softmax(-top.free_energy(all_binary(3)), dim=0)  # (8,)
    # E[v] under the model, against the average of the chain's last means E[v | h]
    torch.testing.assert_close(samples.mean(dim=0), exact @ all_binary(3), atol=0.03, rtol=0)


@pytest.mark.parametrize("layers, words", [
    ([], "at least one"),
    ([BernoulliRBM(6, 4), BernoulliRBM(3, 2)], "do not chain"),
    ([BernoulliLinearRBM(6, 4), BernoulliRBM(4, 2)], "only the top layer"),
    ([BernoulliRBM(6, 4), AutoencoderLayer(4, 2)], "not an RBM"),
    ([BernoulliRBM(6, 4), GaussianBernoulliRBM(4, 2)], "visible units"),
    ([GaussianBernoulliRBM(4, 2)], "visible units"),
])
def test_bad_stacks_raise_dul_error(layers, words):
    with pytest.raises(DulError, match=words):
        DeepBeliefNet(layers)


def test_bad_sample_arguments_raise_dul_error():
    dbn = DeepBeliefNet([BernoulliRBM(4, 2)])
    for n, steps in [(0, 10), (5, -1)]:
        with pytest.raises(DulError, match="n >= 1 and gibbs_steps >= 0"):
            dbn.sample(n, gibbs_steps=steps)


def test_samples_figure_writes_a_png_atomically(tmp_path):
    path = tmp_path / "figures" / "samples.png"
    samples_figure(torch.rand(7, 12), (3, 4), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["samples.png"]  # no temporary left behind
    with pytest.raises(DulError, match="shape"):
        samples_figure(np.zeros((7, 11)), (3, 4), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
