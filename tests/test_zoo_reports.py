"""The zoo's reports from the families' metrics: an AIS-based density carries its
log Z and bars into its row and the table; the others' rows have no such keys."""

from __future__ import annotations

import json

import pytest
import torch

from components.config import parse_section
from components.data import ingest, read_card
from components.io import write_json
from components.models.rbm import RBM
from components.models.vae import VAE
from pipelines import train, zoo


def test_an_ais_density_reports_its_log_z_with_bars_and_others_do_not(workdir, one_thread):
    ingest("digits", workdir / "data/prepared")
    card = read_card(workdir / "data/prepared")
    protocol = parse_section("zoo", {"families": ["rbm", "vae"], "test_samples": 3, "test_items": 20, "samples": 4})
    torch.manual_seed(0)
    rbm = RBM(64, 5, ais_chains=4, ais_betas=50)
    vae = VAE(n_inputs=64, latent=2, hidden=(4,), likelihood="bernoulli")
    for family, model in (("rbm", rbm), ("vae", vae)):
        metrics = train._measure(model, family, (1, 8, 8), protocol, card) | {"train_seconds": 1.0}
        write_json(workdir / f"reports/zoo/families/{family}/metrics.json", metrics)
    estimate = rbm.log_partition()
    rows = {r["family"]: r for r in zoo.likelihood_rows(["rbm", "vae"])}
    assert (rows["rbm"]["log_z"], rows["rbm"]["log_z_lower"], rows["rbm"]["log_z_upper"]) == pytest.approx(estimate)
    assert rows["rbm"]["log_z_lower"] < rows["rbm"]["log_z"] < rows["rbm"]["log_z_upper"]
    assert not {"log_z", "log_z_lower", "log_z_upper"} & set(rows["vae"])
    table = zoo.markdown_table(list(rows.values()), protocol)
    assert f"rbm: log Z = {estimate[0]:.3f} by AIS" in table and "vae: log Z" not in table
    saved = json.loads((workdir / "reports/zoo/families/rbm/metrics.json").read_text())
    assert saved["estimator"] == "ais" and saved["n_test"] == 20
