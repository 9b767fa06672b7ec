"""PixelCNN's maths: which pixels each output sees (by gradients of a random net),
the exact likelihood against the chain rule, and sampling by it."""

from __future__ import annotations

import math

import pytest
import torch

from components.config import parse_dataclass
from components.errors import DulError
from components.models.pixelcnn import MaskedConv2d, PixelCNN

SHAPE = (6, 6)


def seen(model: PixelCNN, pixel: int, items: int = 8) -> set[int]:
    """The input pixels output ``pixel``'s logits depend on: non-zero gradients for any of
    ``items`` random inputs (several, so that a ReLU off by chance hides nothing)."""
    torch.manual_seed(1)
    x = torch.rand(items, 1, *SHAPE, dtype=torch.float64, requires_grad=True)
    r, c = divmod(pixel, SHAPE[1])
    model.logits(x)[:, :, r, c].sum().backward()
    return {int(i) for i in torch.nonzero(x.grad.abs().sum(0).flatten() > 0)}


def random_net(gated: bool, layers: int = 6, likelihood: str = "bernoulli") -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(SHAPE, gated=gated, channels=8, layers=layers, likelihood=likelihood).double()


@pytest.mark.parametrize("gated", [False, True])
def test_no_output_sees_its_own_pixel_or_a_later_one(gated):
    model = random_net(gated)
    for pixel in range(SHAPE[0] * SHAPE[1]):
        assert max(seen(model, pixel), default=-1) < pixel, pixel


def test_the_gated_stacks_see_every_earlier_pixel():
    model = random_net(gated=True)
    for pixel in range(SHAPE[0] * SHAPE[1]):
        assert seen(model, pixel) == set(range(pixel)), pixel


def test_the_plain_pixelcnn_has_a_blind_spot_however_deep():
    """Above and to the right of the output: stacked masked kernels never reach there."""
    model = random_net(gated=False, layers=8)
    pixel = 3 * SHAPE[1] + 1  # row 3, column 1
    missing = set(range(pixel)) - seen(model, pixel)
    assert missing and all(q % SHAPE[1] > 1 for q in missing)  # every one to the right of column 1
    assert 2 * SHAPE[1] + 5 in missing  # the row above, at its far right
    blind = [pixel for pixel in range(SHAPE[0] * SHAPE[1]) if set(range(pixel)) - seen(model, pixel)]
    assert len(blind) >= 6, blind  # not a quirk of one pixel


def test_masks_a_and_b():
    a, b = MaskedConv2d(1, 1, 3, "A").mask, MaskedConv2d(1, 1, 3, "B").mask
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("gated", [False, True])
def test_the_likelihood_is_the_chain_rule_of_its_conditionals(gated):
    """log p(x) from one pass equals the sum of log p(x_i | x_<i), each computed from an
    input where every pixel from i on is replaced by noise (they must not matter)."""
    model = random_net(gated)
    torch.manual_seed(2)
    x = (torch.rand(3, SHAPE[0] * SHAPE[1]) < 0.5).double()
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(x.shape[1]):
        scrambled = x.clone()
        scrambled[:, i:] = torch.rand(3, x.shape[1] - i).round()
        logit = model.logits(model.images(scrambled)).flatten(1)[:, i]
        total += x[:, i] * logit - torch.nn.functional.softplus(logit)
    assert torch.allclose(model.log_prob(x), total, atol=1e-9)


@pytest.mark.parametrize("gated", [False, True])
def test_each_pixel_has_the_same_logits_from_its_receptive_window_alone(gated):
    """What sampling relies on to run the net on a window instead of the image: on 12x12 images with a
    reach of 3 (plain) or 4 (gated), every pixel's logits from rows r - reach..r and columns c +- reach
    equal those from the whole image, and a window one smaller changes some."""
    torch.manual_seed(0)
    model = PixelCNN((12, 12), gated=gated, channels=8, layers=2, first_kernel=3, kernel=3).double()
    reach = model.receptive_radius()
    assert reach == (4 if gated else 3)
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    full = model.logits(x)

    def windowed(r: int, c: int, reach: int) -> torch.Tensor:
        top, left = max(0, r - reach), max(0, c - reach)
        return model.logits(x[:, :, top:r + 1, left:c + reach + 1])[:, :, r - top, c - left]

    for r in range(12):
        for c in range(12):
            assert torch.allclose(windowed(r, c, reach), full[:, :, r, c], atol=1e-12), (r, c)
    assert not torch.allclose(windowed(11, 6, reach - 1), full[:, :, 11, 6], atol=1e-6)


def test_a_two_pixel_model_samples_its_own_distribution():
    """On 1x2 images the exact p(x) of all 4 values; 4000 samples' frequencies match it."""
    torch.manual_seed(0)
    model = PixelCNN((1, 2), gated=True, channels=4, layers=1).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)
    values = torch.tensor([[0.0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)
    p = model.log_prob(values).exp()
    assert float(p.sum()) == pytest.approx(1.0)
    drawn = model.sample(4000, torch.Generator().manual_seed(3))
    freq = torch.stack([(drawn == v).all(1).double().mean() for v in values])
    assert torch.allclose(freq, p, atol=4 * math.sqrt(0.25 / 4000))


def test_the_categorical_likelihood_is_normalised_over_256_levels():
    model = random_net(gated=True, layers=1, likelihood="categorical")
    x = torch.full((2, SHAPE[0] * SHAPE[1]), 128 / 255, dtype=torch.float64)
    logits = model.logits(model.images(x))
    assert logits.shape == (2, 256, *SHAPE) and model.inputs == "real"
    expected = torch.log_softmax(logits, 1)[:, 128].flatten(1).sum(1)
    assert torch.allclose(model.log_prob(x), expected)
    drawn = model.sample(2, torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 36) and torch.allclose(drawn * 255, torch.round(drawn * 255), atol=1e-9)


def test_bad_settings_are_one_line():
    with pytest.raises(DulError, match="use an odd size"):
        parse_dataclass(PixelCNN.Params, "pixelcnn", {"kernel": 4})
    with pytest.raises(DulError, match="pixelcnn models grey images"):
        PixelCNN.from_params(PixelCNN.Params(), (64,))
    with pytest.raises(DulError, match="did you mean 'categorical'"):
        parse_dataclass(PixelCNN.Params, "pixelcnn", {"likelihood": "categorial"})


def test_items_of_another_shape_are_one_line():
    model = random_net(gated=True, layers=1)
    for items in (torch.rand(2, 1, 8, 8), torch.rand(2, 64), torch.randint(0, 256, (2, 36))[0]):
        with pytest.raises(DulError, match="models 6x6 grey images \\(36 pixels\\); got items of shape") as caught:
            model.log_prob(items.double())
        assert "\n" not in str(caught.value)
