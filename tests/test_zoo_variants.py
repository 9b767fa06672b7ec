"""zoo.variants: one family under two settings, each its own row. A variant
(name -> family) is trained by its own stage from its own section with the
family's keys, writes its own files, and its row names it and its family."""

from __future__ import annotations

import json

import pytest
import yaml

from components.config import load_family_params, parse_section, read_params_file
from components.data import ingest
from components.errors import DulError
from components.models import registry
from pipelines import train, zoo
from tests.conftest import write_params


def test_a_variant_is_a_row_of_its_family():
    protocol = parse_section("zoo", {"families": ["rbm"], "variants": {"helmholtz-rws": "helmholtz",
                                                                        "helmholtz-wake-sleep": "helmholtz"}})
    assert protocol.names == ("rbm", "helmholtz-rws", "helmholtz-wake-sleep")
    assert protocol.family_of("helmholtz-wake-sleep") == "helmholtz" and protocol.family_of("rbm") == "rbm"


@pytest.mark.parametrize("variants, message", [
    ({"vae": "vae"}, "'vae' cannot name a variant"),  # a family's own name: its files would clash
    ({"zoo": "vae"}, "'zoo' cannot name a variant"),  # a section's name
    ({"Big VAE": "vae"}, "'Big VAE' cannot name a variant"),  # not a file or stage name
    ({"vae-2": "vea"}, "zoo.variants.vae-2 is 'vea'; did you mean 'vae'"),
    ({"vae-2": 3}, "zoo.variants.vae-2: expected str"),
    (["vae-2"], "zoo.variants: expected a mapping"),
])
def test_a_bad_variant_is_one_line(variants, message):
    with pytest.raises(DulError, match=message):
        parse_section("zoo", {"variants": variants})


def test_a_variants_section_takes_its_familys_keys(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"zoo": {"families": ["helmholtz"], "variants": {"ws": "helmholtz"}},
                                    "helmholtz": {"layers": [7]},
                                    "ws": {"layers": [5, 3], "algorithm": "wake-sleep"}}))
    assert load_family_params("ws", path).layers == (5, 3)
    assert load_family_params("ws", path).algorithm == "wake-sleep"
    assert load_family_params("helmholtz", path).layers == (7,)
    path.write_text(yaml.safe_dump({"zoo": {"variants": {"ws": "helmholtz"}}, "ws": {"latent": 2}}))
    with pytest.raises(DulError, match=r"ws\.latent: unknown key"):
        load_family_params("ws", path)
    path.write_text(yaml.safe_dump({"zoo": {"variants": {}}, "ws": {"layers": [5]}}))  # no longer listed
    with pytest.raises(DulError, match="unknown section 'ws'"):
        read_params_file(path)


def test_a_variant_trains_from_its_own_section_and_reports_its_own_row(workdir, in_process, one_thread):
    ingest("digits", workdir / "data/prepared")
    params = write_params(workdir, {"zoo": {"families": ["nade"], "variants": {"nade-wide": "nade"},
                                            "test_items": 20, "samples": 4},
                                    "nade": {"hidden": 4, "epochs": 1}, "nade-wide": {"hidden": 12, "epochs": 1}})
    assert train.main(["nade", "--params", str(params)]) == 0
    assert train.main(["nade-wide", "--params", str(params)]) == 0
    wide = registry.load(workdir / "models/zoo/nade-wide.pt")  # a nade checkpoint: loads by its family
    assert wide.family == "nade" and wide.hyperparameters["hidden"] == 12
    assert registry.load(workdir / "models/zoo/nade.pt").hyperparameters["hidden"] == 4
    metrics = json.loads((workdir / "reports/zoo/families/nade-wide/metrics.json").read_text())
    assert metrics["family"] == "nade-wide" and metrics["variant_of"] == "nade"
    assert (workdir / "reports/zoo/families/nade-wide/samples.png").stat().st_size > 0
    rows = {r["family"]: r for r in zoo.likelihood_rows(parse_section("zoo", {"families": ["nade"], "variants": {
        "nade-wide": "nade"}}).names)}
    assert set(rows) == {"nade", "nade-wide"} and "variant_of" not in rows["nade"]
    assert rows["nade-wide"]["variant_of"] == "nade" and rows["nade-wide"]["parameters"] > rows["nade"]["parameters"]


def test_an_unlisted_name_is_one_line(workdir, capsys):
    params = write_params(workdir, {"zoo": {"families": ["nade"], "variants": {"nade-wide": "nade"}}})
    assert train.main(["nade-tall", "--params", str(params)]) == 2
    assert "nade-tall is neither in zoo.families (nade) nor in zoo.variants (nade-wide)" in capsys.readouterr().err
