"""Ray for dul: one place that starts, connects to and quiets Ray, and runs the
training loop (components/training/loop.py) as a Ray Train job whose result is
a plain state dict: a ``TorchTrainer`` (torch process group) for several
workers or a GPU, a plain data-parallel trainer for one CPU worker, which
needs no process group (1-2 s less per stage).

A local Ray instance by default; ``RAY_ADDRESS`` connects to an existing
cluster. Ray's own log lines stay out of the console unless ``DUL_VERBOSE=1``.

Recovery. A run is named by a content key of its inputs: params, data and
the code the training loop imports (``codehash.code_key``), so relaunching
the same work with the same code resumes it (Ray Train V2 resumes a run
relaunched with the same name and storage path), and a run of other code is
never handed back. A worker restarted after a crash, or a relaunch after the
whole process tree was killed, resumes from the newest complete checkpoint in
the run's storage, also one whose report the controller never saw.
Deterministic errors (``DulError``: bad data, divergence) are not retried.

Before anything starts, the request is checked against what can serve it:
a local Ray gets exactly this machine's CPUs, and workers that cannot fit, a
GPU that is not there, or a ``RAY_ADDRESS`` nobody answers on are one-line
errors within seconds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api import data_parallel_trainer as ray_trainer_module
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer  # TorchTrainer's base, no torch backend

from components.codehash import code_key
from components.config import RayParams
from components.errors import DulError
from components.training.ray_worker import STATE_FILE, RaySession  # noqa: F401 (RaySession: the worker side)
from components.training.inputs import share_inputs
from components.training.progress import progress_bar

CONNECT_TIMEOUT_S = 5.0


def verbose() -> bool:
    return os.environ.get("DUL_VERBOSE", "") not in ("", "0", "false")


def storage_path() -> str:
    """Where Ray Train keeps checkpoints: ``DUL_RAY_STORAGE`` (shared storage on a
    cluster, e.g. s3://bucket/ray) or ``ray_results/`` in the working directory."""
    path = os.environ.get("DUL_RAY_STORAGE", "ray_results")
    return path if "://" in path else os.path.abspath(path)


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[None]:
    """Use the running Ray, connect to ``RAY_ADDRESS``, or start a local instance
    with this machine's CPUs. Only an instance started here is shut down on exit.
    ``num_cpus`` is ignored (the machine's CPUs are what a local Ray has)."""
    if ray.is_initialized():
        yield
        return
    configure_local_ray()
    options = {"log_to_driver": verbose(), "logging_level": logging.INFO if verbose() else logging.ERROR}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        options["address"] = address
    else:
        options.update(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=_object_store_bytes())
    try:
        with _quiet_stderr():
            ray.init(**options)
    except Exception as err:  # noqa: BLE001 (Ray raises many types for a cluster it cannot join)
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
        raise DulError(f"could not start or join {where}: {_first_line(err)} (on a loaded machine, retry; "
                       "set DUL_VERBOSE=1 to see Ray's logs)") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_reachable(address: str) -> None:
    """A ``host:port`` RAY_ADDRESS must accept a TCP connection within seconds
    (``ray.init`` itself retries an absent cluster for minutes)."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]\s]+?)\]?:(\d+)", address.strip())
    if address.strip() == "auto" or not match:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise DulError(f"no Ray cluster answers at RAY_ADDRESS={address} ({reason}): start it "
                       "(ray start --head), fix the address, or unset RAY_ADDRESS for a local Ray") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's start-up warnings go to stderr unless DUL_VERBOSE is set."""
    if verbose():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def configure_local_ray() -> None:
    """Ray Train settings taken from this process's environment: a local Ray
    instance inherits them, and on a cluster Ray Train passes them on from
    the driver to its controller and workers (its ENV_VARS_TO_PROPAGATE).

    Ray Train's controller polls workers every 2 s by default and each
    ``ray.train.report`` waits for a poll: 2 s per epoch, most of the time of
    a small job. 0.2 s keeps reporting cheap (measured: 1.8 s -> 0.1 s per report).
    """
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def _single_node_settings() -> None:
    """On a one-node Ray, no preemption watcher: Ray Train starts that actor with
    every run to move work off a node being drained, which one node cannot do,
    and on 2 cores its start-up delays the workers' (measured: ~2 s of the
    ~11 s a stage spends in Ray; benchmarks/ray_overhead.py). Set
    RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1 to keep it."""
    if sum(1 for node in ray.nodes() if node.get("Alive")) == 1:
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def _object_store_bytes() -> int:
    # Ray's default takes 30% of RAM; the stages pass paths, not arrays, so 1 GiB is plenty.
    return int(os.environ.get("DUL_OBJECT_STORE_BYTES", 1 << 30))


def _this_machine() -> dict[str, float]:
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(params: RayParams, section: str, local: bool, have: dict | None = None) -> None:
    """The workers must fit what Ray has (``have``, default the running Ray's): at once
    on a local Ray; on a cluster (which may be autoscaling) within
    ``DUL_RESOURCE_WAIT_S`` seconds (default 300)."""
    need = {"CPU": params.num_workers * params.cpus_per_worker, "GPU": params.num_workers if params.use_gpu else 0}
    deadline = time.monotonic() + (0 if local else float(os.environ.get("DUL_RESOURCE_WAIT_S", 300)))
    fixed = have
    while True:
        have = fixed or ray.cluster_resources()
        short = {k: (v, have.get(k, 0)) for k, v in need.items() if v > have.get(k, 0)}
        if not short or time.monotonic() >= deadline:
            break
        time.sleep(2)
    for kind, (wanted, available) in short.items():
        where = "this machine has" if local else "the Ray cluster has"
        settings = f"{section}.num_workers ({params.num_workers})" + \
            (f" x {section}.cpus_per_worker ({params.cpus_per_worker})" if kind == "CPU" else f" with {section}.use_gpu")
        fix = f"set {section}.use_gpu: false" if kind == "GPU" else f"lower {section}.num_workers or cpus_per_worker"
        raise DulError(f"{settings} needs {wanted:g} {kind}s, but {where} {available:g}; {fix}"
                       + ("" if local else ", or add nodes to the cluster"))


def fit(loop_function: Callable[[dict], None], config: dict, *, name: str, params: RayParams, total_steps: int,
        desc: str, callbacks: tuple = (), section: str | None = None) -> dict:
    """Run ``loop_function`` (a worker function that runs ``loop.train`` with a
    ``RaySession``) as a Ray Train job; return the state in its last checkpoint.

    ``name`` is the run's key of params and data; the code's hash is added to
    it here. ``total_steps`` sizes the progress bar. ``callbacks`` are Ray
    Train ``UserCallback``s, e.g. the sweep's ``TuneReportCallback``.
    """
    name = f"{name}-{code_key(loop_function.__module__)}"
    section = section or desc
    scaling = ScalingConfig(
        num_workers=params.num_workers,
        use_gpu=params.use_gpu,
        resources_per_worker={"CPU": params.cpus_per_worker, **({"GPU": 1} if params.use_gpu else {})},
    )
    if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):  # a local Ray: refuse before starting it
        check_resources(params, section, local=True, have=_this_machine())
    with ray_session():
        check_resources(params, section, local=not os.environ.get("RAY_ADDRESS"))
        _single_node_settings()
        with progress_bar(total_steps, desc) as channel:
            config = share_inputs(config, name, storage_path())
            trainer_class = TorchTrainer if params.num_workers > 1 or params.use_gpu else DataParallelTrainer
            trainer = trainer_class(
                loop_function,
                train_loop_config={**config, "progress": channel, "cpus_per_worker": params.cpus_per_worker},
                scaling_config=scaling,
                run_config=RunConfig(
                    name=name,
                    storage_path=storage_path(),
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                    failure_config=FailureConfig(max_failures=params.max_failures, controller_failure_limit=2),
                    callbacks=list(callbacks),
                ),
            )
            try:
                with deterministic_errors_not_retried():
                    result = trainer.fit()
            except Exception as err:  # Ray wraps worker errors; surface ours as themselves
                raise _unwrap(err) from None
    if result.checkpoint is None:
        raise DulError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True, map_location="cpu")


@contextlib.contextmanager
def deterministic_errors_not_retried() -> Iterator[None]:
    """Ray Train retries every worker failure up to ``max_failures``; a ``DulError``
    (bad data, divergence) would fail again the same way, so its run fails at once.
    Ray 2.60 builds its failure policy through this module attribute (DataParallelTrainer.fit)."""
    original = ray_trainer_module.create_failure_policy
    ray_trainer_module.create_failure_policy = lambda failure_config: DulFailurePolicy(failure_config)
    try:
        yield
    finally:
        ray_trainer_module.create_failure_policy = original


class DulFailurePolicy(DefaultFailurePolicy):
    """Ray Train's default policy, except that a worker group failure caused by a
    ``DulError`` in any worker is raised instead of retried."""

    def _is_retryable_error(self, training_failed_error) -> bool:
        failures = getattr(training_failed_error, "worker_failures", None) or {}
        if any(_is_dul_error(error) for error in failures.values()):
            return False
        return super()._is_retryable_error(training_failed_error)


def _is_dul_error(error: BaseException) -> bool:
    return isinstance(error, DulError) or isinstance(getattr(error, "cause", None), DulError) \
        or bool(re.search(r"\b(DulError|Diverged)\b", str(error)))


def _unwrap(err: Exception) -> Exception:
    for error in (getattr(err, "worker_failures", None) or {}).values():
        cause = error if isinstance(error, DulError) else getattr(error, "cause", None)
        if isinstance(cause, DulError):
            return DulError(str(cause).strip().splitlines()[0])
    match = re.search(r"(?:DulError|Diverged): (.+)", str(err))
    if match:
        return DulError(match.group(1).strip())
    return DulError(f"Ray Train job failed: {_first_line(err)} (set DUL_VERBOSE=1 to see the workers' logs)")


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__
