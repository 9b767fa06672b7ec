"""The feature report: a linear probe on frozen features, its C chosen on the
validation split only; the features stage probes every encoding zoo family,
pixels, PCA at the same sizes and the flagship's models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from components.data import ingest
from components.errors import DulError
from components.evaluation.probe import linear_probe
from components.io import save_torch
from components.models import registry
from components.models.autoencoder import DeepAutoencoder
from components.models.rbm import BernoulliRBM
from components.models.stack import layer_state
from pipelines import features as stage
from tests.conftest import write_params


def blobs(n: int, seed: int, informative: bool = True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) if informative else rng.integers(0, 2, n)
    return X, y


def test_the_probe_separates_separable_labels_and_not_random_ones():
    separable = linear_probe(blobs(400, 0), blobs(200, 1), blobs(400, 2), (0.01, 1.0), 200)
    assert separable["probe_accuracy"] > 0.95 and separable["converged"]
    chance = linear_probe(blobs(400, 0, False), blobs(200, 1, False), blobs(400, 2, False), (0.01, 1.0), 200)
    assert chance["probe_accuracy"] < 0.62


def test_the_probe_keeps_the_c_best_on_validation_and_the_stronger_penalty_on_ties():
    result = linear_probe(blobs(300, 0), blobs(100, 1), blobs(100, 2), (10.0, 1e-4, 1.0), 200)
    by_c = {float(c): a for c, a in result["valid_by_c"].items()}
    assert set(by_c) == {1e-4, 1.0, 10.0}
    best = max(by_c.values())
    assert result["valid_accuracy"] == best and result["c"] == min(c for c, a in by_c.items() if a == best)
    assert by_c[1e-4] < best  # so the choice was made: the strongest penalty underfits here


def test_the_probe_refuses_broken_features_and_one_class():
    X, y = blobs(50, 0)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DulError, match="validation features hold NaN"):
        linear_probe((X, y), (bad, y), (X, y), (1.0,), 50)
    with pytest.raises(DulError, match="fewer than two classes"):
        linear_probe((X, np.zeros_like(y)), (X, y), (X, y), (1.0,), 50)


def test_the_stage_probes_pixels_pca_every_encoding_family_and_the_flagship(workdir, one_thread):
    ingest("digits", workdir / "data/prepared")
    params = write_params(workdir, {"zoo": {"families": ["vae", "nade", "rbm"]}, "rbm": {"hidden": 12},
                                    "features": {"probe_c": [0.1, 1.0], "max_iter": 100}})
    torch.manual_seed(0)
    for family in ("vae", "nade", "rbm"):
        from components.config import load_family_params

        model = registry.build(family, load_family_params(family, params), (1, 8, 8))
        save_torch(workdir / f"models/zoo/{family}.pt", model.to_checkpoint())
    rbms = [BernoulliRBM(64, 24, 0.1), BernoulliRBM(24, 6, 0.1)]
    save_torch(workdir / "models/stack.pt", {"config": {}, "layers": [layer_state(r) for r in rbms]})
    save_torch(workdir / "models/autoencoder.pt", DeepAutoencoder.from_rbms(rbms).to_checkpoint())

    assert stage.main(["--params", str(params)]) == 0
    rows = json.loads((workdir / "reports/zoo/features.json").read_text())
    sizes = {r["family"]: r["features"] for r in rows}
    # nade does not encode; PCA at every code size (vae 2, rbm 12, the flagship's 6)
    assert sizes == {"pixels": 64, "vae": 2, "rbm": 12, "dbn": 6, "deep-autoencoder": 6,
                     "pca-2": 2, "pca-6": 6, "pca-12": 12}
    accuracy = {r["family"]: r["probe_accuracy"] for r in rows}
    assert accuracy["pixels"] > 0.9 and accuracy["pca-12"] > accuracy["pca-2"]
    assert [r["probe_accuracy"] for r in rows] == sorted(accuracy.values(), reverse=True)
    assert all(r["c"] in (0.1, 1.0) and r["dataset"] == "digits" and r["train_items"] == 1294 for r in rows)
    table = (workdir / "reports/zoo/features.md").read_text()
    assert "| pixels | 64 |" in table and "| dbn | 6 |" in table
    assert (workdir / "reports/zoo/features.csv").read_text().startswith("family,probe_accuracy")


def test_the_stage_on_a_dataset_without_labels_is_one_line(workdir, capsys, monkeypatch):
    ingest("digits", workdir / "data/prepared")
    params = write_params(workdir, {"features": {"flagship": False}})
    real = stage.read_split
    monkeypatch.setattr(stage, "read_split", lambda d, s: (real(d, s)[0], -np.ones(len(real(d, s)[1]), np.int64)))
    assert stage.main(["--params", str(params)]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert not (workdir / "reports/zoo/features.json").exists()
