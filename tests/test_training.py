"""Training as Ray Train jobs: CD lowers reconstruction error; a relaunch trains only
the layers its finished run lacks (kills and restarts: tests/test_recovery.py)."""

from pathlib import Path

import pytest
import torch

from components.config import parse_section
from components.data import ingest, read_split
from components.errors import DulError
from components.training.pretrain import pretrain_stack
from components.training.pretrain import build_layer, make_optimizer, train_epoch, train_stack_in_memory


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits") / "prepared"
    ingest("digits", folder)
    return folder


def test_cd_epochs_lower_the_reconstruction_error(digits):
    params = {"hidden": [32], "code_units": "binary", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
              "weight_decay": 0.0002, "momentum_initial": 0.5}
    X, _ = read_split(digits, "train")
    data = torch.from_numpy(X)
    torch.manual_seed(0)
    rbm = build_layer(0, 64, params)
    optimizer = make_optimizer(rbm, 0, params)
    errors = [train_epoch(rbm, optimizer, data, batch_size=100, n_batches=12, cd_k=1,
                          generator=torch.Generator().manual_seed(e))["recon_error"] for e in range(8)]
    assert errors[-1] < 0.7 * errors[0]


def params(**overrides):
    base = {"hidden": [16, 4], "epochs": 3, "max_failures": 0, "cpus_per_worker": 1}
    return parse_section("pretrain", {**base, **overrides})


@pytest.mark.ray
def test_in_memory_stack_trains_only_the_layers_above_the_given_ones(digits):
    params = {"hidden": [32, 16, 2], "code_units": "linear", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
              "weight_decay": 0.0002, "momentum_initial": 0.5, "momentum_final": 0.9, "momentum_switch_epoch": 1}
    data = torch.from_numpy(read_split(digits, "train")[0])
    seen = []
    full = train_stack_in_memory(data, params, 2, on_epoch=lambda layer, stats: seen.append(layer))
    assert [(rbm.n_visible, rbm.n_hidden, rbm.hidden_type) for rbm in full] == \
        [(64, 32, "binary"), (32, 16, "binary"), (16, 2, "linear")] and seen == [0, 0, 1, 1, 2, 2]
    bottom = [layer.W.clone() for layer in full[:2]]
    top = train_stack_in_memory(data, params, 2, below=full[:2])
    assert top[:2] == full[:2] and all(torch.equal(a.W, b) for a, b in zip(top[:2], bottom))  # reused, untouched
    torch.testing.assert_close(top[2].W, full[2].W)  # the same seeds: the top layer as in the full run


def test_relaunch_resumes_after_the_finished_layers(digits, workdir, ray_instance):
    one_layer = pretrain_stack(digits, params(hidden=[16]), key="resume")
    two_layers = pretrain_stack(digits, params(hidden=[16, 4]), key="resume")  # same run name
    assert [r["layer"] for r in two_layers["history"]] == [1, 1, 1, 2, 2, 2]
    assert two_layers["history"][:3] == one_layer["history"]  # layer 1 was not trained again
    torch.testing.assert_close(two_layers["layers"][0]["W"], one_layer["layers"][0]["W"])
    assert two_layers["layers"][1]["W"].shape == (16, 4)


@pytest.mark.ray
def test_worker_errors_reach_the_user_as_one_line(digits, workdir, ray_instance):
    with pytest.raises(DulError, match="pretrain.batch_size 5000 is larger than"):
        pretrain_stack(digits, params(batch_size=5000), key="too-big")


@pytest.mark.ray
def test_two_workers_train_data_parallel(digits, workdir, ray_instance):
    result = pretrain_stack(digits, params(hidden=[16], epochs=2, num_workers=2), key="two-workers")
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert result["layers"][0]["W"].shape == (64, 16) and torch.isfinite(result["layers"][0]["W"]).all()
    # Each worker's reconstruction error is averaged across the group: a plausible per-item figure.
    assert 0 < result["history"][-1]["recon_error"] < 16
