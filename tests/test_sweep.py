"""`dul sweep`: the search space from plain data, and one tiny Ray Tune sweep end to end
(ASHA, a trial that crashes, MLflow parent and child runs, best.yaml, --resume)."""

import math
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Uniform

from components.config import load_params, parse_section
from components.data import ingest
from components.errors import DulError
from components.training import sweep as sweeps
from components.training.sweep_space import parse_space
from tests.conftest import REPO, write_params

BASE = {"pretrain": {"hidden": [16, 4], "epochs": 2}, "finetune": {"epochs": 2}}


def sweep_params(**values):
    return parse_section("sweep", {"space": {"finetune.lr": {"loguniform": [1.0e-4, 1.0e-2]}}, **values})


def test_each_distribution_becomes_its_tune_object():
    space = parse_space({
        "finetune.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "pretrain.init_std": {"uniform": [0.01, 0.1]},
        "pretrain.cd_k": {"randint": [1, 4]},
        "pretrain.epochs": {"choice": [1, 2]},
        "finetune.batch_size": {"grid": [50, 100]},
    }, BASE)
    lr, std = space["finetune"]["lr"], space["pretrain"]["init_std"]
    assert isinstance(lr, Float) and isinstance(lr.get_sampler(), LogUniform) and (lr.lower, lr.upper) == (1e-4, 1e-2)
    assert isinstance(std, Float) and isinstance(std.get_sampler(), Uniform) and (std.lower, std.upper) == (0.01, 0.1)
    cd_k = space["pretrain"]["cd_k"]
    assert isinstance(cd_k, Integer) and (cd_k.lower, cd_k.upper) == (1, 4)
    assert isinstance(space["pretrain"]["epochs"], Categorical) and space["pretrain"]["epochs"].categories == [1, 2]
    assert space["finetune"]["batch_size"] == tune.grid_search([50, 100])


@pytest.mark.parametrize("space, message", [
    ({"finetune.lrr": {"loguniform": [1e-4, 1e-2]}}, r"sweep\.space\.finetune\.lrr: unknown param; did you mean 'finetune\.lr'\?"),
    ({"ingest.seed": {"choice": [0, 1]}}, r"sweep\.space\.ingest\.seed: only pretrain and finetune"),
    ({"lr": {"choice": [0.1]}}, r"sweep\.space\.lr: name a param as stage\.key"),
    ({"finetune.lr": {"logunifrm": [1e-4, 1e-2]}}, r"sweep\.space\.finetune\.lr: unknown distribution 'logunifrm'; did you mean 'loguniform'\?"),
    ({"finetune.lr": [1e-4, 1e-2]}, r"sweep\.space\.finetune\.lr: expected one of \{uniform"),
    ({"finetune.lr": {"uniform": [1e-2]}}, r"sweep\.space\.finetune\.lr: uniform takes two numbers"),
    ({"finetune.lr": {"uniform": [1e-2, 1e-4]}}, r"sweep\.space\.finetune\.lr: uniform needs low < high"),
    ({"finetune.lr": {"loguniform": [0, 1e-2]}}, r"sweep\.space\.finetune\.lr: loguniform needs low > 0"),
    ({"finetune.lr": {"uniform": [-1.0, 1.0]}}, r"sweep\.space\.finetune\.lr: uniform value -1\.0 is not a valid finetune\.lr: .*must be positive"),
    ({"pretrain.epochs": {"uniform": [1, 3]}}, r"sweep\.space\.pretrain\.epochs: .*expected int"),
    ({"pretrain.cd_k": {"randint": [1.0, 3.5]}}, r"sweep\.space\.pretrain\.cd_k: randint takes two integers"),
    ({"finetune.optimizer": {"choice": ["adam", "adamw"]}}, r"sweep\.space\.finetune\.optimizer: choice value 'adamw'.*did you mean 'adam'"),
    ({"pretrain.hidden": {"grid": [[16, 4], [16, 0]]}}, r"sweep\.space\.pretrain\.hidden: grid value \[16, 0\].*every layer needs"),
    ({}, r"sweep\.space: give at least one param"),
])
def test_bad_space_is_an_error_naming_the_key(space, message):
    with pytest.raises(DulError, match=message):
        parse_space(space, BASE)


def test_search_and_scheduler_settings():
    grid = {"finetune.lr": {"grid": [1e-3, 1e-2]}}
    with pytest.raises(DulError, match=r"sweep\.space\.finetune\.lr: grid needs sweep\.search random or grid"):
        sweeps.search_algorithm(parse_section("sweep", {"space": grid, "search": "optuna"}))
    with pytest.raises(DulError, match=r"sweep\.space\.pretrain\.lr: sweep\.search grid takes only grid"):
        sweeps.search_algorithm(parse_section("sweep", {"search": "grid",
                                                        "space": {**grid, "pretrain.lr": {"uniform": [0.01, 0.1]}}}))
    assert isinstance(sweeps.search_algorithm(parse_section("sweep", {"space": grid, "search": "grid"})),
                      BasicVariantGenerator)
    with pytest.raises(DulError, match=r"sweep\.metric is 'finetune\.valid_error'.*did you mean 'finetune\.valid_squared_error'"):
        sweeps.metric_name(sweep_params(metric="finetune.valid_error"))
    with pytest.raises(DulError, match=r"sweep\.grace_period is 3: more than the 2 finetune epochs"):
        sweeps.scheduler(sweep_params(grace_period=3), "valid_squared_error", 2)
    with pytest.raises(DulError, match=r"sweep\.search is 'hyperopt'"):
        sweep_params(search="hyperopt")


def test_resources_and_asha_horizon_follow_the_space():
    epochs = sweep_params(space={"finetune.epochs": {"choice": [2, 6]}, "pretrain.cpus_per_worker": {"randint": [1, 3]}})
    assert sweeps.max_epochs(epochs, BASE) == 6
    assert sweeps.trial_cpus(epochs, {"finetune": {"cpus_per_worker": 1}}) == 2  # randint [1, 3) draws at most 2
    assert sweeps.concurrency(sweep_params(max_concurrent=4), {"pretrain": {"cpus_per_worker": 2}}, 5) == 2
    assert sweeps.concurrency(sweep_params(max_concurrent=2), {"pretrain": {"cpus_per_worker": 4}}, 2) == 1


def test_repository_sweep_section_parses_into_a_space():
    sweep = load_params("sweep", REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(parse_space(sweep.space, raw)) <= {"pretrain", "finetune"}
    assert sweeps.metric_name(sweep) == "valid_squared_error"
    sweeps.search_algorithm(sweep)


def test_best_trial_skips_failed_ones_and_best_yaml_holds_only_swept_keys(tmp_path):
    sweep = sweep_params(space={"finetune.lr": {"loguniform": [1e-4, 1e-2]}, "pretrain.epochs": {"choice": [1, 2]}})

    def result(trial_id, value, lr, error=None):
        config = {"finetune": {"lr": lr}, "pretrain": {"epochs": 2}, "dul": {}}
        return SimpleNamespace(error=error, config=config, metrics={"trial_id": trial_id, "valid_squared_error": value})

    results = [result("a", 9.0, 1e-3), result("b", 4.0, 2e-3, error=RuntimeError("crashed")),
               result("c", 7.5, 0.0031234567), result("d", math.nan, 1e-2)]
    best = sweeps.best_trial(results, sweep)
    assert best == {"trial_id": "c", "value": 7.5, "params": {"finetune": {"lr": 0.00312346}, "pretrain": {"epochs": 2}}}
    sweeps.write_best(tmp_path / "sweeps/best.yaml", best, sweep, "s1")
    text = (tmp_path / "sweeps/best.yaml").read_text()
    assert yaml.safe_load(text) == best["params"]
    assert "dvc exp run -S finetune.lr=0.00312346 -S pretrain.epochs=2" in text
    assert sweeps.best_trial(results[1:2], sweep) is None


class RecordedRuns:
    """Stands in for tracking.sweeps.SweepRuns: what the Tune callback records."""

    def __init__(self):
        self.started, self.metrics, self.ended = {}, [], {}

    def trial_started(self, trial_id, params):
        self.started[trial_id] = params

    def trial_metrics(self, trial_id, metrics, step):
        self.metrics.append((trial_id, step, metrics))

    def trial_ended(self, trial_id, status, tags):
        self.ended[trial_id] = (status, tags)


def test_trial_callback_records_curves_early_stops_and_failures(tmp_path, capsys):
    runs, base = RecordedRuns(), {"dul": {"base": {"finetune": {"epochs": 2}}}}
    callback = sweeps.TrackTrials(runs, "valid_squared_error")

    def trial(trial_id, epoch, lr):
        return SimpleNamespace(trial_id=trial_id, config={**base, "finetune": {"lr": lr}},
                               last_result={"epoch": epoch, "valid_squared_error": 5.0})

    for t in (trial("full", 2, 1e-3), trial("stopped", 1, 1e-2)):
        callback.on_trial_start(0, [], t)
        callback.on_trial_result(0, [], t, {"epoch": 1, "valid_squared_error": 6.0, "train_loss": math.nan})
        callback.on_trial_result(0, [], t, {"epoch": 1, "valid_squared_error": 6.0})  # reported twice
        callback.on_trial_complete(0, [], t)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1\nray.exceptions.RayTaskError(DulError): ray::ImplicitFunc.train()\n"
                          "components.errors.DulError: pretrain: training diverged (NaN/inf) in layer 1\n")
    crashed = SimpleNamespace(trial_id="crashed", config=base, last_result={}, error_file=str(error_file))
    callback.on_trial_error(0, [], crashed)

    assert runs.started["full"]["finetune.lr"] == 1e-3 and runs.started["full"]["pretrain.hidden"] == [256, 128, 64, 10]
    assert runs.metrics[0] == ("full", 1, {"finetune_valid_squared_error": 6.0})  # NaN is not logged
    assert [m[:2] for m in runs.metrics] == [("full", 1), ("stopped", 1)]  # each epoch once
    assert runs.ended["full"] == ("FINISHED", {"stopped_early": "false", "dul.epochs_run": "2"})
    assert runs.ended["stopped"] == ("KILLED", {"stopped_early": "true", "dul.epochs_run": "1"})
    assert runs.ended["crashed"][0] == "FAILED"
    assert runs.ended["crashed"][1]["dul.error"] == "pretrain: training diverged (NaN/inf) in layer 1"
    assert "trial stopped: stopped early after 1/2 epochs" in capsys.readouterr().out


# ---- one tiny sweep on Ray ------------------------------------------------------

CRASHING_LR = 1.0e6  # CD-1 with this rate overflows to NaN in the first layer's 2nd epoch


@pytest.mark.ray
def test_sweep_runs_trials_tracks_them_and_resumes(workdir, ray_instance, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'sweep-mlflow.db'}")
    ingest("digits", workdir / "data/prepared")
    write_params(workdir, {
        "pretrain": {"hidden": [16, 4], "epochs": 2, "cpus_per_worker": 1},
        "finetune": {"epochs": 2, "cpus_per_worker": 1},
        "sweep": {"name": "tiny", "search": "random", "num_samples": 1, "max_concurrent": 2,
                  "scheduler": "asha", "grace_period": 1, "seed": 0,
                  "space": {"pretrain.lr": {"grid": [0.05, 0.1, CRASHING_LR]},
                            "finetune.lr": {"loguniform": [1.0e-3, 1.0e-2]}}},
    })
    assert sweeps.run("params.yaml", "sweeps/best.yaml", resume=False) == 0
    out = capsys.readouterr().out
    assert re.search(r"FAILED: pretrain: training diverged \(NaN/inf in [\w, ]+\) in layer 1 at epoch 2", out)

    client = MlflowClient(f"sqlite:///{workdir / 'sweep-mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dul").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "sweep tiny"]
    trials = [r for r in runs if r.data.tags.get("dul.role") == "trial"]
    assert parent.info.status == "FINISHED" and len(trials) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    by_lr = {float(r.data.params["pretrain.lr"]): r for r in trials}
    crashed = by_lr.pop(CRASHING_LR)
    assert crashed.info.status == "FAILED" and "diverged" in crashed.data.tags["dul.error"]
    finals = {}
    for lr, run in by_lr.items():
        curve = client.get_metric_history(run.info.run_id, "finetune_valid_squared_error")
        stopped = run.data.tags["stopped_early"] == "true"
        assert [m.step for m in sorted(curve, key=lambda m: m.step)] == ([1] if stopped else [1, 2])
        assert run.info.status == ("KILLED" if stopped else "FINISHED")
        finals[lr] = (max(curve, key=lambda m: m.step).value, float(run.data.params["finetune.lr"]))

    best = yaml.safe_load((workdir / "sweeps/best.yaml").read_text())
    best_lr = min(finals, key=lambda lr: finals[lr][0])
    assert best["pretrain"] == {"lr": best_lr}
    assert best["finetune"]["lr"] == pytest.approx(finals[best_lr][1], rel=1e-5)
    assert parent.data.metrics["best_valid_squared_error"] == pytest.approx(finals[best_lr][0])

    # A finished sweep restores without running a trial again; a plain rerun refuses to overwrite it.
    trial_dirs = sorted(p.name for p in (workdir / "ray_results/sweep-tiny-runs").iterdir())
    assert sweeps.run("params.yaml", "sweeps/again.yaml", resume=True) == 0
    assert yaml.safe_load((workdir / "sweeps/again.yaml").read_text()) == best
    assert sorted(p.name for p in (workdir / "ray_results/sweep-tiny-runs").iterdir()) == trial_dirs
    assert len([r for r in client.search_runs([parent.info.experiment_id]) if r.data.tags.get("dul.role") == "trial"]) == 3
    with pytest.raises(DulError, match="sweep 'tiny' already ran .*pass --resume"):
        sweeps.run("params.yaml", "sweeps/best.yaml", resume=False)
    (workdir / "check").mkdir()
    load_params("finetune", write_params(workdir / "check", best))  # params-style: the stages accept it


def test_best_yaml_is_tracked_by_dvc_in_a_dvc_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best = tmp_path / "sweeps" / "best.yaml"
    best.parent.mkdir()
    best.write_text("finetune:\n  lr: 0.001\n")
    assert sweeps.track_with_dvc("sweeps/best.yaml").startswith("not a DVC repository")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    assert sweeps.track_with_dvc("sweeps/best.yaml") == "tracked by DVC: sweeps/best.yaml.dvc"
    assert "md5:" in (tmp_path / "sweeps" / "best.yaml.dvc").read_text()
    assert "/best.yaml" in (tmp_path / "sweeps" / ".gitignore").read_text()


SWEEP_RUN = """
import sys
from components.training import sweep
sys.exit(sweep.run("params.yaml", sys.argv[1], resume=sys.argv[2] == "resume"))
"""


def write_sweep_params(folder, name: str) -> None:
    write_params(folder, {
        "pretrain": {"hidden": [24, 6], "epochs": 6, "cpus_per_worker": 1, "max_failures": 2},
        "finetune": {"epochs": 8, "cpus_per_worker": 1, "max_failures": 2},
        "sweep": {"name": name, "search": "grid", "num_samples": 1, "max_concurrent": 1, "scheduler": "fifo",
                  "seed": 0, "space": {"finetune.lr": {"grid": [0.001, 0.003]}}},
    })


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_killed_mid_trial_resumes_to_the_same_result(tmp_path):
    """`dul sweep` killed (its whole process tree) while a trial trains; `dul sweep --resume`
    finishes it, and the result is the undisturbed sweep's, to the last bit."""
    from tests.test_recovery import kill_tree

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DUL_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    results = {}
    for name in ("reference", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        ingest("digits", folder / "data/prepared")
        write_sweep_params(folder, "s")
        if name == "killed":
            process = subprocess.Popen([sys.executable, "-c", SWEEP_RUN, "sweeps/best.yaml", "new"], cwd=folder,
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 600
            while not list(folder.glob("ray_results/**/finetune-*/checkpoint_*")) and time.monotonic() < deadline:
                time.sleep(0.2)
            kill_tree(process)
            assert not (folder / "sweeps/best.yaml").exists(), "the sweep finished before the kill"
        mode = "resume" if name == "killed" else "new"
        done = subprocess.run([sys.executable, "-c", SWEEP_RUN, "sweeps/best.yaml", mode], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("dul").experiment_id])
        (parent,) = [r for r in runs if r.info.run_name == "sweep s"]
        results[name] = (yaml.safe_load((folder / "sweeps/best.yaml").read_text()),
                         parent.data.metrics["best_valid_squared_error"])
    assert results["killed"] == results["reference"]  # the same trial won, with the same float
