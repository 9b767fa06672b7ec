"""Stages scorer and samples on digits: a classifier of the binarized digits, and every zoo
sampler scored in its features beside the ceiling (real data) and the floor (the mean image)."""

from __future__ import annotations

import json

import pytest

from components.config import parse_section
from components.data import ingest
from components.errors import DulError
from pipelines import samples, scorer, train
from tests.conftest import write_params


def test_the_sample_report_ranks_real_data_first_and_the_mean_image_below_it(workdir, in_process, one_thread,
                                                                              capsys):
    ingest("digits", workdir / "data/prepared")
    params = write_params(workdir, {"zoo": {"families": ["nade"], "variants": {"nade-wide": "nade"},
                                            "test_items": 20, "samples": 4},
                                    "nade": {"hidden": 8, "epochs": 3}, "nade-wide": {"hidden": 32, "epochs": 3},
                                    "scorer": {"epochs": 10}, "samples": {"n": 200, "kid_subsets": 4}})
    for name in ("nade", "nade-wide"):
        assert train.main([name, "--params", str(params)]) == 0
    assert scorer.main(["--params", str(params)]) == 0
    accuracy = json.loads((workdir / "reports/scorer/metrics.json").read_text())
    assert accuracy["test_accuracy"] > 0.75 and 1 <= accuracy["epoch_kept"] <= 10  # binarized 8x8 digits: ~0.85
    assert samples.main(["--params", str(params)]) == 0
    rows = {r["family"]: r for r in json.loads((workdir / "reports/zoo/samples.json").read_text())}
    assert set(rows) == {"real-data", "mean-image", "nade", "nade-wide"}
    assert all(r["samples"] == 200 and r["seed"] == 0 for r in rows.values())
    real, floor = rows["real-data"], rows["mean-image"]
    assert real["frechet"] < floor["frechet"] and real["kid"] < floor["kid"]
    assert real["recall"] > floor["recall"]  # precision alone is fooled by mean-like samples (see pipelines/samples)
    assert real["coverage"] > floor["coverage"] and 0 < real["density"] < 2
    assert real["kid_std"] > 0  # the KID subsets differ
    for name in ("nade", "nade-wide"):
        assert real["frechet"] < rows[name]["frechet"] and 0 <= rows[name]["precision"] <= 1
    table = (workdir / "reports/zoo/samples.md").read_text()
    assert "| real-data |" in table and "unreliable" in table and f"{accuracy['test_accuracy']:.4f}" in table
    assert "| density | coverage |" in table and "Sanity check (real-data the best row, mean-image the worst)" in table


def test_the_sanity_check_names_each_column_a_family_breaks():
    def row(family, frechet, precision):
        return {"family": family, "frechet": frechet, "kid": frechet / 10, "precision": precision, "recall": 0.5,
                "density": 1.0, "coverage": 0.5}

    rows = [row("real-data", 5.0, 0.9), row("mean-image", 300.0, 0.7), row("dcgan", 20.0, 0.6),
            row("gan", 2.0, 0.95)]
    failures = samples.sanity(rows)
    assert failures["precision"] == {"above real-data": ["gan"], "below mean-image": ["dcgan"]}
    assert failures["frechet"] == failures["kid"] == {"above real-data": ["gan"], "below mean-image": []}
    for column in ("recall", "density", "coverage"):  # ties pass
        assert failures[column] == {"above real-data": [], "below mean-image": []}
    table = samples.markdown_table([{**r, "kid_std": 0.0, "parzen_ll": 0.0, "parzen_stderr": 0.0} for r in rows],
                                   100, samples.SamplesParams(), None)
    assert "holds for recall, density, coverage." in table
    assert "Fréchet and KID: lower is better; precision, recall, density, coverage: higher." in table
    assert "Precision fails it: gan above real-data; dcgan below mean-image." in table
    assert not any(any(b.values()) for b in samples.sanity(rows[:2]).values())  # no family: nothing to break


def test_too_few_samples_is_one_line():
    with pytest.raises(DulError, match="samples.n is 5: draw at least 10"):
        parse_section("samples", {"n": 5})


def test_a_dataset_of_word_counts_has_no_sample_scorer_and_writes_nothing(workdir, monkeypatch, capsys):
    from components.data import sources
    from components.io import file_sha256
    from tests.test_corpora import _tiny_archive

    archive = _tiny_archive(workdir / "20news-bydate.tar.gz")
    monkeypatch.setitem(sources.FILE_PINS, "20newsgroups",
                        {"20news-bydate.tar.gz": sources.FilePin("http://x/", file_sha256(archive))})
    ingest("20newsgroups", workdir / "data/prepared", source=str(archive), validation_fraction=0.0, vocabulary_size=4)
    params = write_params(workdir, {"ingest": {"dataset": "20newsgroups"}})
    assert scorer.main(["--params", str(params)]) == 2
    assert "not grey images" in capsys.readouterr().err
    assert not (workdir / "models/scorer.pt").exists() and not (workdir / "reports/scorer").exists()
