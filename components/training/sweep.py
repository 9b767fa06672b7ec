"""Hyperparameter sweeps: pretrain -> finetune trials under Ray Tune.

Each trial is a Tune function trial that drives two Ray Train runs, the RBM
stack (``pretrain_stack``) then the fine-tuning, with the trial's sampled
params (``sweep.space``, parsed in ``sweep_space``) over ``params.yaml``.

Ray Train V2 and Tune: ``Tuner(trainer)`` is deprecated, so the trial
function launches the ``TorchTrainer`` itself and the finetune run carries
``ray.tune.integration.ray_train.TuneReportCallback`` (the documented Train
V2 -> Tune bridge): every epoch's ``ray.train.report`` from rank 0 reaches
Tune as a trial result, so ASHA (``time_attr="epoch"``) can stop a poor trial
after ``grace_period`` epochs. The alternative, a trial driving a per-epoch
loop of one-epoch ``fit()`` calls and ``ray.tune.report``, would pay a Train
run's start-up every epoch.

The trial function holds no CPU: it only waits on its Train runs, whose
workers take ``cpus_per_worker`` each from the trial's own params. Trials run
``max_concurrent`` at a time, fewer if their workers would not fit the
cluster's CPUs (a Train run waiting for CPUs gives up after 60 s).

MLflow: the driver writes everything (``tracking.sweeps.SweepRuns``, via a
Tune callback): a parent run ``sweep <name>``, a child run per trial with its
params and per-epoch curve, closed FINISHED, KILLED (tag
``stopped_early=true``) or FAILED.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from components.config import SECTIONS, SweepParams, as_dict, parse_section
from components.errors import DulError, did_you_mean
from components.io import atomic_path, content_key, save_torch
from components.training import runtime
from components.training.finetune import finetune_loop
from components.training.pretrain import pretrain_stack
from components.training.sweep_space import (
    SWEPT_STAGES,
    is_grid,
    largest,
    parse_space,
    split_key,
)

FINETUNE_METRICS = ("valid_squared_error", "train_squared_error", "train_loss")


# ---- the plan: everything decided before the first trial ---------------------


def metric_name(sweep: SweepParams) -> str:
    """``finetune.valid_squared_error`` -> ``valid_squared_error``, the key trials report."""
    stage, _, name = sweep.metric.partition(".")
    options = [f"finetune.{m}" for m in FINETUNE_METRICS]
    if stage != "finetune" or name not in FINETUNE_METRICS:
        raise DulError(f"sweep.metric is '{sweep.metric}': trials report the finetune metrics every "
                       f"epoch; {did_you_mean(sweep.metric, options)}")
    return name


def sweep_name(sweep: SweepParams, base: dict[str, dict], card: dict) -> str:
    """``sweep.name``, or a hash of the sweep, the swept stages' params and the data:
    the same sweep gets the same name, which is what ``--resume`` finds."""
    if sweep.name:
        if not re.fullmatch(r"[\w.-]+", sweep.name):
            raise DulError(f"sweep.name is '{sweep.name}': use letters, digits, '.', '-' and '_'")
        return sweep.name
    return content_key(as_dict(sweep), {s: base.get(s) or {} for s in SWEPT_STAGES}, card.get("splits"))[:10]


def search_algorithm(sweep: SweepParams):
    """Optuna (TPE), or Tune's random/grid generator, seeded."""
    grids = [key for key, spec in sweep.space.items() if is_grid(spec)]
    if sweep.search == "optuna":
        if grids:
            raise DulError(f"sweep.space.{grids[0]}: grid needs sweep.search random or grid (Optuna samples); "
                           "use choice for Optuna")
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=sweep.seed)
    if sweep.search == "grid":
        others = [key for key, spec in sweep.space.items() if not is_grid(spec)]
        if others:
            raise DulError(f"sweep.space.{others[0]}: sweep.search grid takes only grid entries; "
                           "use search: random to cross a grid with sampled params")
    return BasicVariantGenerator(random_state=sweep.seed)


def max_epochs(sweep: SweepParams, base: dict[str, dict]) -> int:
    """The most finetune epochs a trial can run (ASHA's max_t)."""
    return int(_largest_param(sweep, base, "finetune", "epochs"))


def scheduler(sweep: SweepParams, metric: str, max_t: int):
    if sweep.scheduler == "fifo":
        return FIFOScheduler()
    if sweep.grace_period > max_t:
        raise DulError(f"sweep.grace_period is {sweep.grace_period}: more than the {max_t} finetune epochs "
                       "a trial runs, so ASHA could never stop one")
    return ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=sweep.grace_period)  # metric: TuneConfig's


def trial_cpus(sweep: SweepParams, base: dict[str, dict]) -> float:
    """CPUs a trial's larger Train run claims, at the largest values the space can draw."""
    return max(_largest_param(sweep, base, stage, "num_workers")
               * _largest_param(sweep, base, stage, "cpus_per_worker") for stage in SWEPT_STAGES)


def concurrency(sweep: SweepParams, base: dict[str, dict], cluster_cpus: float) -> int:
    return max(1, min(sweep.max_concurrent, int(cluster_cpus // trial_cpus(sweep, base))))


def _largest_param(sweep: SweepParams, base: dict[str, dict], stage: str, name: str):
    spec = sweep.space.get(f"{stage}.{name}")
    if spec is None:
        return getattr(parse_section(stage, base.get(stage) or {}), name)
    try:
        return largest(spec)
    except (ValueError, TypeError):
        raise DulError(f"sweep.space.{stage}.{name}: sweep it with choice, grid or randint") from None


# ---- a trial (runs in a Tune trial actor) -------------------------------------


def trial_params(config: dict) -> dict:
    """The stages' params of a trial: ``params.yaml`` overridden by the sampled values."""
    base = config["dul"]["base"]
    return {stage: parse_section(stage, {**(base.get(stage) or {}), **config.get(stage, {})})
            for stage in SWEPT_STAGES}


def run_trial(config: dict) -> None:
    """Tune trainable: pretrain then finetune, each a Ray Train run named after the trial,
    so a resumed sweep resumes them from their last checkpoints."""
    setup = config["dul"]
    os.environ["DUL_RAY_STORAGE"] = setup["train_storage"]  # the trial's cwd is its own folder
    _pin_cluster_address()
    params = trial_params(config)
    key = f"{setup['name']}-{tune.get_context().get_trial_id()}"
    stack = pretrain_stack(setup["data_dir"], params["pretrain"], key=key)
    stack_path = Path(os.path.abspath("stack.pt"))
    save_torch(stack_path, {k: stack[k] for k in ("layers", "standardise") if k in stack})
    finetune = params["finetune"]
    job = {"data_dir": setup["data_dir"], "stack_path": str(stack_path), "params": finetune}
    state = runtime.fit(finetune_loop, job, name=f"finetune-{key}", params=finetune,
                        total_steps=finetune.epochs, desc="finetune", callbacks=(TuneReportCallback(),))
    # The bridge can drop the last epoch's report when the run ends right after it (seen with
    # fast epochs); report it again: Tune and TrackTrials skip an epoch they already have.
    tune.report(state["history"][-1])


def _pin_cluster_address() -> None:
    """Name this cluster to the Train runs' helper actors.

    When ASHA stops a trial, Tune kills its actor, and with it the Train
    controller; Train's detached PlacementGroupCleaner then frees the run's
    CPUs, but it finds the cluster through the State API, which fails with
    "Found multiple active Ray instances" on a host that runs more than one
    local Ray (seen here). The placement group then leaks, and every later
    trial waits for CPUs forever. Ray Train passes the variables in
    ENV_VARS_TO_PROPAGATE to its controller, whose children inherit them.
    """
    from ray.train.v2._internal import constants

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    constants.ENV_VARS_TO_PROPAGATE.add("RAY_ADDRESS")


class TrackTrials(tune.Callback):
    """Tune callback in the driver: each trial's MLflow child run, and one line per trial."""

    def __init__(self, runs, metric: str):
        self.runs, self.metric, self.epochs = runs, metric, {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.runs.trial_started(trial.trial_id, flat_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", 0))
        if epoch <= self.epochs.get(trial.trial_id, 0):
            return  # the final epoch, reported twice (see run_trial)
        self.epochs[trial.trial_id] = epoch
        curve = {f"finetune_{k}": result[k] for k in FINETUNE_METRICS if _finite(result.get(k))}
        self.runs.trial_metrics(trial.trial_id, curve, step=epoch)

    def on_trial_complete(self, iteration, trials, trial, **info):
        done = int((trial.last_result or {}).get("epoch", 0))
        planned = trial_params(trial.config)["finetune"].epochs
        stopped = done < planned
        self.runs.trial_ended(trial.trial_id, "KILLED" if stopped else "FINISHED",
                              {"stopped_early": str(stopped).lower(), "dul.epochs_run": str(done)})
        value = (trial.last_result or {}).get(self.metric, float("nan"))
        state = f"stopped early after {done}/{planned} epochs" if stopped else f"finished {done} epochs"
        print(f"trial {trial.trial_id}: {state}, {self.metric} {value:.4f}  {_sampled(trial.config)}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = error_line(_error_text(trial))
        self.runs.trial_ended(trial.trial_id, "FAILED", {"stopped_early": "false", "dul.error": message[:500]})
        print(f"trial {trial.trial_id}: FAILED: {message}  {_sampled(trial.config)}", flush=True)


def flat_params(config: dict) -> dict:
    return {f"{stage}.{k}": v for stage, p in trial_params(config).items() for k, v in as_dict(p).items()}


def _error_text(trial) -> str:
    """The trial's error as Tune wrote it (its error file is written before this callback)."""
    try:
        return Path(trial.error_file).read_text()
    except (TypeError, OSError):
        return str(trial.get_pickled_error() or "unknown error")


def error_line(err) -> str:
    text = str(err or "unknown error")
    found = re.findall(r"DulError: (.+)", text)
    return found[-1].strip() if found else (text.strip().splitlines() or ["error"])[-1][:300]


def _sampled(config: dict) -> str:
    return " ".join(f"{s}.{k}={_plain(v)}" for s in SWEPT_STAGES for k, v in sorted(config.get(s, {}).items()))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plain(value):
    """numpy scalars (Optuna's draws) as Python numbers, for YAML and MLflow."""
    value = value.item() if hasattr(value, "item") else value
    return float(f"{value:.6g}") if isinstance(value, float) else value


# ---- the driver ----------------------------------------------------------------


def run_sweep(sweep: SweepParams, base: dict[str, dict], data_dir: str | Path, name: str, runs,
              resume: bool = False):
    """Run (or with ``resume`` restore and finish) the sweep; return Tune's ResultGrid."""
    metric = metric_name(sweep)
    space = parse_space(sweep.space, base)
    storage = runtime.storage_path()
    setup = {"name": name, "base": {s: base.get(s) or {} for s in SWEPT_STAGES},
             "data_dir": os.path.abspath(data_dir), "train_storage": f"{storage}/sweep-{name}-runs"}
    # Tune refuses an empty request, and a CPU share would keep the workers' last core waiting:
    # the trial (a waiting driver) claims a token 1 MiB of memory and no CPU.
    trainable = tune.with_resources(run_trial, {"CPU": 0, "memory": 1 << 20})
    _quiet_tune()
    with runtime.ray_session(num_cpus=int(math.ceil(trial_cpus(sweep, base)))):
        if resume:
            tuner = tune.Tuner.restore(sweep_path(name), trainable=trainable)
        else:
            tuner = tune.Tuner(trainable, param_space={**space, "dul": setup},
                               tune_config=_tune_config(sweep, base, metric),
                               run_config=tune.RunConfig(name=f"sweep-{name}", storage_path=storage,
                                                         failure_config=tune.FailureConfig(max_failures=0),
                                                         callbacks=[TrackTrials(runs, metric)],
                                                         verbose=1 if runtime.verbose() else 0))
        return tuner.fit()


def sweep_path(name: str) -> str:
    return f"{runtime.storage_path()}/sweep-{name}"


def check_storage(name: str, resume: bool) -> None:
    """--resume needs the sweep's saved state; a fresh run must not overwrite it."""
    path = sweep_path(name)
    if resume and not tune.Tuner.can_restore(path):
        raise DulError(f"no sweep '{name}' to resume at {path}; run `dul sweep` without --resume")
    if not resume and tune.Tuner.can_restore(path):
        raise DulError(f"sweep '{name}' already ran ({path}): pass --resume to finish it or read "
                       "its results, or change sweep.name")


def _quiet_tune() -> None:
    """Tune's status tables and trial tracebacks stay hidden unless DUL_VERBOSE=1:
    the sweep prints one line per trial, and MLflow has the rest."""
    if not runtime.verbose():
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        logging.getLogger("optuna").setLevel(logging.WARNING)  # "A new study created in memory"


def _tune_config(sweep: SweepParams, base: dict[str, dict], metric: str) -> tune.TuneConfig:
    concurrent = concurrency(sweep, base, ray.cluster_resources().get("CPU", 1))
    if concurrent < sweep.max_concurrent:
        print(f"sweep: {concurrent} trial(s) at once, not {sweep.max_concurrent}: a trial's Train run "
              f"takes {trial_cpus(sweep, base):g} CPUs", flush=True)
    return tune.TuneConfig(metric=metric, mode=sweep.mode, num_samples=sweep.num_samples,
                           max_concurrent_trials=concurrent, search_alg=search_algorithm(sweep),
                           scheduler=scheduler(sweep, metric, max_epochs(sweep, base)))


def best_trial(results, sweep: SweepParams) -> dict | None:
    """The best trial that did not fail, by its last reported metric:
    ``{"trial_id", "value", "params": {stage: {key: value}}}`` (only the swept keys)."""
    metric, sign = metric_name(sweep), (1 if sweep.mode == "min" else -1)
    candidates = [r for r in results if r.error is None and _finite((r.metrics or {}).get(metric))]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: sign * r.metrics[metric])
    params: dict[str, dict] = {}
    for key in sweep.space:
        stage, name = split_key(key)
        params.setdefault(stage, {})[name] = _plain(best.config[stage][name])
    return {"trial_id": best.metrics.get("trial_id"), "value": float(best.metrics[metric]), "params": params}


def write_best(path: str | Path, best: dict, sweep: SweepParams, name: str) -> None:
    """sweeps/best.yaml: the best trial's swept keys, nested by stage (params.yaml's layout), atomically."""
    header = (f"# dul sweep '{name}': best trial {best['trial_id']}, {sweep.metric} {best['value']:.6g} "
              f"({sweep.mode}).\n# Only the swept keys; apply with: {set_params_command(best['params'])}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(best["params"], sort_keys=True))


def track_with_dvc(path: str | Path) -> str:
    """``dvc add`` the result in a DVC repository, so the best params are a
    versioned artifact (``<path>.dvc``); what happened, as a line for the user.
    Never fatal: the file is written either way."""
    if not Path(".dvc").is_dir():
        return f"not a DVC repository here: `dvc add {path}` in one to version it"
    done = subprocess.run([sys.executable, "-m", "dvc", "add", "-q", str(path)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"`dvc add {path}` failed ({reason}); version it by hand"
    return f"tracked by DVC: {path}.dvc"


def set_params_command(params: dict[str, dict]) -> str:
    sets = " ".join(f"-S {stage}.{k}={v}" for stage, values in sorted(params.items()) for k, v in sorted(values.items()))
    return f"dvc exp run {sets}"


def run(params_path: str | Path, out: str | Path, resume: bool, data_dir: str | Path = "data/prepared") -> int:
    """``dul sweep``: read the params, run the sweep tracked in MLflow, write ``out``."""
    from components.config import read_params_file
    from components.data import read_card
    from components.tracking.sweeps import SweepRuns

    raw = read_params_file(params_path)
    sweep = parse_section("sweep", raw.get("sweep") or {})
    base = {s: raw.get(s) or {} for s in SECTIONS}
    if not (Path(data_dir) / "card.json").exists():
        raise DulError(f"{data_dir}: no prepared data; run `dvc repro ingest` (or `dul stage ingest`) first")
    metric_name(sweep), parse_space(sweep.space, base), search_algorithm(sweep)  # fail before Ray starts
    name = sweep_name(sweep, base, read_card(data_dir))
    check_storage(name, resume)
    runs = SweepRuns(name, {"sweep": as_dict(sweep), **{s: base[s] for s in SWEPT_STAGES}})
    try:
        results = run_sweep(sweep, base, data_dir, name, runs, resume)
    except BaseException:
        runs.finish("KILLED", {}, {})
        raise
    if results.num_terminated + results.num_errors < len(results):  # Ctrl-C: Tune saved its state
        runs.finish("KILLED", {}, {})
        raise DulError(f"sweep '{name}' interrupted; `dul sweep --resume` finishes it")
    best = best_trial(results, sweep)
    failed = sum(r.error is not None for r in results)
    if best is None:
        runs.finish("FAILED", {}, {"dul.trials_failed": str(failed)})
        raise DulError(f"sweep '{name}': no trial finished ({failed} failed); see the trial runs in MLflow")
    write_best(out, best, sweep, name)
    runs.finish("FINISHED", {f"best_{metric_name(sweep)}": best["value"]},
                {"dul.best_trial": str(best["trial_id"]), "dul.trials_failed": str(failed)})
    print(f"sweep {name}: {len(results)} trials, {failed} failed; best {best['trial_id']} "
          f"{sweep.metric} {best['value']:.4f} -> {out} ({track_with_dvc(out)})\n"
          f"  apply: {set_params_command(best['params'])}")
    return 0
