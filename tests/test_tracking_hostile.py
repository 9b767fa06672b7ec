"""Tracking against hostile names and stores, on a real local sqlite store:
quotes in a run group, an unknown URI scheme, an mlflow.db that is not a database."""

import os

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.search_utils import SearchUtils

from components import tracking
from components.errors import DulError
from components.tracking import lineage
from components.tracking.sweeps import SweepRuns
from pipelines import ingest
from tests.conftest import write_params


def parents(workdir, group, monkeypatch, times=2) -> set[str]:
    monkeypatch.setenv("DUL_RUN_GROUP", group)
    found = set()
    for _ in range(times):
        with tracking.stage_run("ingest", {}) as run:
            found.add(run.client.get_run(run.run_id).data.tags["mlflow.parentRunId"])
    return found


@pytest.mark.parametrize("group", ["bob's run", 'say "hi"', "a\\b", "50% of `x`"])
def test_a_quoted_run_group_finds_its_parent_again(workdir, monkeypatch, group):
    [parent] = parents(workdir, group, monkeypatch)
    client = MlflowClient(tracking.tracking_uri(workdir))
    assert client.get_run(parent).data.tags["dul.run_group"] == group
    assert parents(workdir, "bob", monkeypatch, times=1) != {parent}  # another group, another parent


@pytest.mark.parametrize("group, problem", [("it's \"quoted\"", "holds both ' and \""),
                                            ("trailing\\", "ends in a backslash")])
def test_a_run_group_mlflow_cannot_search_for_is_one_line_naming_the_variable(workdir, monkeypatch, group, problem):
    with pytest.raises(DulError) as failure:
        parents(workdir, group, monkeypatch, times=1)
    message = str(failure.value)
    assert "\n" not in message and problem in message and "set DUL_RUN_GROUP to a name" in message
    client = MlflowClient(tracking.tracking_uri(workdir))
    assert client.search_runs([client.get_experiment_by_name("dul").experiment_id]) == []  # no run opened


@pytest.mark.parametrize("value", ["plain", "bob's run", 'say "hi"', "a\\b", "' or 1=1 --", "", "é \t x"])
def test_filter_value_reads_back_as_the_value(value):
    [clause] = SearchUtils.parse_search_filter(f"tags.`k` = {tracking.filter_value(value, 'x', 'X')}")
    assert clause["value"] == value


def test_a_sweep_name_with_a_quote_keeps_its_parent(workdir):
    first = SweepRuns("bob's sweep", {"lr": 0.1})
    assert SweepRuns("bob's sweep", {"lr": 0.1}).parent == first.parent
    assert first.trial_started("t1", {}) == SweepRuns("bob's sweep", {}).trial_started("t1", {})


def test_an_unknown_uri_scheme_is_one_line(workdir, monkeypatch, capsys):
    write_params(workdir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://x")
    assert ingest.main(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: MLFLOW_TRACKING_URI=foo://x: MLflow has no store")
    assert "scheme 'foo'" in err and "unset it for the local store" in err
    assert not (workdir / "data").exists()


def test_a_garbage_mlflow_db_is_one_line_and_left_alone(workdir, capsys):
    write_params(workdir)
    garbage = os.urandom(64 << 10)
    (workdir / "mlflow.db").write_bytes(garbage)
    assert ingest.main(["--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    store = workdir.resolve() / "mlflow.db"
    assert err.count("\n") == 1 and err.startswith(f"error: {store} is not a usable MLflow database")
    assert f"move it aside (mv {store} {store}.broken)" in err
    assert (workdir / "mlflow.db").read_bytes() == garbage and not (workdir / "data").exists()
    with pytest.raises(DulError, match="is not a usable MLflow database .*or pass --no-mlflow$"):
        lineage.Runs(workdir)
