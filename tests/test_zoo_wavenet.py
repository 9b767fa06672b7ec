"""WaveNet's maths: which inputs each output sees (by gradients of a random net), the
receptive field the dilation schedule promises, the exact likelihood against scoring a
stream block by block, learning a repeating pattern, sampling, and bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from components.config import parse_dataclass
from components.errors import DulError
from components.models import registry
from components.models.nn.causal import CausalConv1d
from components.models.wavenet import V, WaveNet

T = 48


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small tensors: one torch thread (two on a busy 2-core machine were 75x slower)."""


def random_net(blocks: int = 2, layers: int = 3, kernel: int = 2) -> WaveNet:
    torch.manual_seed(0)
    return WaveNet(channels=6, skip_channels=6, head=8, blocks=blocks, layers=layers, kernel=kernel).double()


def seen(model: WaveNet, t: int, items: int = 4) -> set[int]:
    """The input positions output ``t`` depends on: non-zero gradients for any of ``items``
    random real-valued inputs (several, so that no unit off by chance hides anything)."""
    torch.manual_seed(1)
    v = torch.rand(items, T, V, dtype=torch.float64, requires_grad=True)
    model.net(v)[:, t].sum().backward()
    return {int(i) for i in torch.nonzero(v.grad.abs().sum((0, 2)) > 0)}


@pytest.mark.parametrize("blocks, layers, kernel, field", [(2, 3, 2, 16), (1, 4, 2, 17), (1, 2, 3, 9)])
def test_output_t_sees_exactly_the_receptive_field_before_it(blocks, layers, kernel, field):
    """R = k + (k - 1) * blocks * (2^layers - 1): the schedule's promise, and no input after t."""
    model = random_net(blocks, layers, kernel)
    assert model.receptive_field == field == kernel + (kernel - 1) * blocks * (2 ** layers - 1)
    for t in (0, 5, field - 1, field, T - 1):
        assert seen(model, t) == set(range(max(0, t - field + 1), t + 1)), t


def test_p_of_x_t_depends_on_the_bytes_before_t_only():
    """Through the one-hot input shifted by one: changing x_s moves the logits at t > s only,
    and only for t <= s + R."""
    model = random_net()
    R = model.receptive_field
    torch.manual_seed(2)
    x = torch.randint(0, V, (1, T))
    base = model.logits(x)
    s = 10
    changed = x.clone()
    changed[0, s] = (x[0, s] + 1) % V
    moved = (model.logits(changed) - base).abs().amax(-1)[0] > 0
    assert moved.nonzero().flatten().tolist() == list(range(s + 1, s + R + 1))


def test_a_causal_convolution_is_conv1d_with_left_padding():
    torch.manual_seed(3)
    layer = CausalConv1d(3, 5, kernel=3, dilation=2).double()
    h = torch.randn(2, 20, 3, dtype=torch.float64)
    weight = layer.taps.weight.reshape(5, 3, 3).permute(0, 2, 1)  # (out, in, tap): tap j is the block j
    expected = torch.nn.functional.conv1d(torch.nn.functional.pad(h.transpose(1, 2), (4, 0)), weight,
                                          layer.taps.bias, dilation=2).transpose(1, 2)
    assert torch.allclose(layer(h), expected) and layer.receptive_field == 5


def test_the_stream_scored_in_blocks_is_the_one_pass_likelihood():
    model = random_net()
    torch.manual_seed(4)
    x = torch.randint(0, V, (1, 9000))
    one_pass = torch.log_softmax(model.logits(x), -1).gather(-1, x[..., None])[0, :, 0]
    by_blocks = model.stream_log_prob(x[0].to(torch.uint8))
    assert torch.allclose(by_blocks, one_pass.detach(), atol=1e-10)
    assert float(model.log_prob(x).detach()) == pytest.approx(float(one_pass.detach().sum()))
    some = model.stream_log_prob(x[0], torch.tensor([0, 2]))  # blocks 0 and 2 (the last, short)
    assert torch.allclose(some, torch.cat([one_pass[:4096], one_pass[8192:]]).detach(), atol=1e-10)


def test_a_tiny_net_learns_a_repeating_pattern_and_samples_it():
    torch.manual_seed(0)
    model = WaveNet(channels=16, skip_channels=16, head=0, blocks=1, layers=3, kernel=2)
    pattern = torch.tensor(list(b"abcabd"))  # the byte after "ab" needs 3 bytes of context: R = 9 has them
    stream = pattern.repeat(40)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(150):
        offsets = torch.randint(0, len(stream) - 32, (8,))
        figures = model.training_step(torch.stack([stream[o:o + 32] for o in offsets]), [optimizer])
    assert figures["bits_per_char"] == pytest.approx(float(figures["loss"]) / math.log(2))
    model.eval()
    bits = -float(model.stream_log_prob(stream[6:]).mean()) / math.log(2)  # its start (a phase) is not predictable
    assert bits < 0.1, bits  # from 8 bits a byte untrained
    drawn = model.sample(2, torch.Generator().manual_seed(0), length=24, prompt=b"abcabdabc")
    assert drawn.shape == (2, 24) and bytes(drawn[0].tolist()) == b"abdabcabdabcabdabcabdabc"
    assert torch.equal(drawn, model.sample(2, torch.Generator().manual_seed(0), length=24, prompt=b"abcabdabc"))


def test_lr_decay_lowers_the_rate_linearly_and_a_resumed_optimizer_decays_alike():
    torch.manual_seed(0)
    model = WaveNet(channels=4, skip_channels=4, head=0, blocks=1, layers=2, epochs=4, lr_decay=True)
    (optimizer,) = model.optimizers(parse_dataclass(WaveNet.Params, "wavenet", {"lr": 0.01, "epochs": 4,
                                                                                  "lr_decay": True}))
    x = torch.randint(0, V, (2, 16))
    rates = []
    for epoch in range(4):
        model.start_epoch(epoch)
        model.training_step(x, [optimizer])
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    resumed = torch.optim.Adam(model.parameters(), lr=0.01)  # a rerun builds its optimizer afresh, then loads the state
    resumed.load_state_dict(optimizer.state_dict())
    model.start_epoch(3)
    model.training_step(x, [resumed])
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.0025)
    constant = WaveNet(channels=4, skip_channels=4, head=0, blocks=1, layers=2)
    (optimizer,) = constant.optimizers(WaveNet.Params(lr=0.01))
    constant.start_epoch(3)
    constant.training_step(x, [optimizer])
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert "lr_decay" not in constant.hyperparameters  # a checkpoint of before these options loads unchanged
    rebuilt = registry.load(model.to_checkpoint())
    assert rebuilt.lr_decay and rebuilt.epochs == 4
    with pytest.raises(DulError, match="needs the run's epochs"):
        WaveNet(lr_decay=True)


def test_bfloat16_products_train_near_float32_and_are_refused_where_emulated(monkeypatch):
    x = torch.randint(0, V, (4, 32))
    losses = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = WaveNet(channels=8, skip_channels=8, head=16, blocks=1, layers=3, matmul_dtype=dtype)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
        (optimizer,) = model.optimizers(WaveNet.Params(lr=0.01, matmul_dtype=dtype))
        figures = model.training_step(x, [optimizer])
        assert figures["loss"].dtype == torch.float32 and model.out[-1].weight.dtype == torch.float32
        losses[dtype] = float(figures["loss"])
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        if dtype == "bfloat16":
            with pytest.raises(DulError, match="wavenet.matmul_dtype: bfloat16 would be slow here: this CPU has "
                                               "neither AVX-512 BF16 nor AMX"):
                model.optimizers(WaveNet.Params(matmul_dtype=dtype))
        else:
            model.optimizers(WaveNet.Params())  # float32 needs no bf16 units
    assert losses["bfloat16"] == pytest.approx(losses["float32"], abs=0.02)  # ln 256 = 5.55 nats untrained
    assert losses["bfloat16"] != losses["float32"]  # the products did run in bfloat16
    with pytest.raises(DulError, match="wavenet.matmul_dtype is 'float16': use float32 or bfloat16"):
        parse_dataclass(WaveNet.Params, "wavenet", {"matmul_dtype": "float16"})


def test_bad_inputs_are_one_line():
    model = random_net()
    for images, needle in ((torch.rand(2, 1, 8, 8), "float64 tensor of shape \\[2, 1, 8, 8\\] \\(images\\?\\)"),
                           (torch.rand(2, 64), "float64 tensor of shape \\[2, 64\\]"),
                           (torch.full((2, 5), 256), "bytes 0-255; got values 256 to 256")):
        with pytest.raises(DulError, match=needle) as caught:
            model.log_prob(images.double() if images.dtype.is_floating_point else images)
        assert "\n" not in str(caught.value)
    with pytest.raises(DulError, match="wavenet models byte sequences; this dataset's items have the fixed shape "
                                       "\\[1, 28, 28\\]"):
        registry.build("wavenet", WaveNet.Params(), (1, 28, 28))
    with pytest.raises(DulError, match="pixelcnn models fixed-size items, but this dataset's items are byte"):
        registry.build("pixelcnn", registry.params_class("pixelcnn")(), (None,))
    with pytest.raises(DulError, match="wavenet.kernel is 1: use 2 or more taps"):
        parse_dataclass(WaveNet.Params, "wavenet", {"kernel": 1})
    with pytest.raises(DulError, match="wavenet.window is 0: must be positive"):
        parse_dataclass(WaveNet.Params, "wavenet", {"window": 0})


def test_stage_train_wavenet_on_characters_and_refusing_images(workdir, in_process, capsys):
    """train@wavenet on a tiny character ingest writes its checkpoint, bits per character of
    the test stream and a picture of sampled text; on images it stops in one line (exit 2)."""
    from components.data import ingest
    from pipelines import train
    from tests.conftest import write_params
    from tests.test_corpora import ingest_tiny_newsgroups

    ingest_tiny_newsgroups(workdir / "data", validation_fraction=0.34, representation="chars")
    tiny = {"channels": 4, "skip_channels": 4, "head": 0, "blocks": 1, "layers": 2, "window": 16, "steps": 2,
            "batch_size": 2, "epochs": 1}
    params = write_params(workdir, {"zoo": {"families": ["wavenet"]}, "wavenet": tiny})
    assert train.main(["wavenet", "--params", str(params)]) == 0
    metrics = json.loads((workdir / "reports/zoo/families/wavenet/metrics.json").read_text())
    assert metrics["estimator"] == "exact" and metrics["n_chars"] == 16 + 15 + 2  # 2 test posts, each with its END
    assert metrics["bits_per_char"] == pytest.approx(metrics["nats_per_char"] / math.log(2))
    assert "nll_nats" not in metrics  # not a row of the images' likelihood report
    assert registry.load(workdir / "models/zoo/wavenet.pt").family == "wavenet"
    assert all((workdir / "reports/zoo/families/wavenet" / f).stat().st_size for f in ("samples.png", "curve.csv"))
    ingest("digits", workdir / "data/prepared")
    capsys.readouterr()
    assert train.main(["wavenet", "--params", str(params)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: wavenet models byte sequences; this dataset's items have the fixed shape [1, 8, 8]")
    assert "\n" not in error
