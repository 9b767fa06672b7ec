"""Ray for dul: one place that starts, connects to and quiets Ray, and runs
a Ray Train job whose result is a plain state dict: a ``TorchTrainer`` (torch
process group, DDP) for several workers or a GPU, a plain data-parallel
trainer for one CPU worker, which needs no process group (1-2 s less per stage).

A local Ray instance by default; ``RAY_ADDRESS`` connects to an existing
cluster. Ray's own log lines stay out of the console unless ``DUL_VERBOSE=1``.
Runs are named by a content key (config and data), under one storage path, so
relaunching the same work resumes from its last checkpoint (Ray Train V2
resumes a run relaunched with the same name and storage path).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer
from ray.train.v2.api.data_parallel_trainer import (
    DataParallelTrainer,  # TorchTrainer's base, no torch backend
)

from components.config import RayParams
from components.errors import DulError
from components.training.progress import progress_bar

STATE_FILE = "state.pt"


def verbose() -> bool:
    return os.environ.get("DUL_VERBOSE", "") not in ("", "0", "false")


def storage_path() -> str:
    """Where Ray Train keeps checkpoints: ``DUL_RAY_STORAGE`` (shared storage on a
    cluster, e.g. s3://bucket/ray) or ``ray_results/`` in the working directory."""
    path = os.environ.get("DUL_RAY_STORAGE", "ray_results")
    return path if "://" in path else os.path.abspath(path)


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[None]:
    """Use the running Ray, connect to ``RAY_ADDRESS``, or start a local instance.

    Only an instance started here is shut down on exit.
    """
    if ray.is_initialized():
        yield
        return
    configure_local_ray()
    options = {"log_to_driver": verbose(), "logging_level": logging.INFO if verbose() else logging.ERROR}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        options["address"] = address
    else:
        cpus = max(os.cpu_count() or 1, num_cpus or 1)
        options.update(address="local", num_cpus=cpus, object_store_memory=_object_store_bytes())
    try:
        ray.init(**options)
    except ConnectionError as err:
        raise DulError(f"cannot connect to the Ray cluster at RAY_ADDRESS={address}: {err}") from None
    try:
        yield
    finally:
        ray.shutdown()


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


def fit(
    loop: Callable[[dict], None],
    config: dict,
    *,
    name: str,
    params: RayParams,
    total_steps: int,
    desc: str,
    callbacks: tuple = (),
) -> dict:
    """Run ``loop`` as a Ray Train job and return the state in its last checkpoint.

    ``loop`` reports a checkpoint holding ``STATE_FILE`` every epoch (see
    ``save_checkpoint``); ``total_steps`` sizes the progress bar. ``callbacks``
    are Ray Train ``UserCallback``s, e.g. the sweep's ``TuneReportCallback``.
    """
    scaling = ScalingConfig(
        num_workers=params.num_workers,
        use_gpu=params.use_gpu,
        resources_per_worker={"CPU": params.cpus_per_worker, **({"GPU": 1} if params.use_gpu else {})},
    )
    with ray_session(num_cpus=params.num_workers * params.cpus_per_worker):
        _single_node_settings()
        with progress_bar(total_steps, desc) as channel:
            trainer_class = TorchTrainer if params.num_workers > 1 or params.use_gpu else DataParallelTrainer
            trainer = trainer_class(
                loop,
                train_loop_config={**config, "progress": channel, "cpus_per_worker": params.cpus_per_worker},
                scaling_config=scaling,
                run_config=RunConfig(
                    name=name,
                    storage_path=storage_path(),
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                    failure_config=FailureConfig(max_failures=params.max_failures),
                    callbacks=list(callbacks),
                ),
            )
            try:
                result = trainer.fit()
            except Exception as err:  # Ray wraps worker errors; surface ours as themselves
                raise _unwrap(err) from None
    if result.checkpoint is None:
        raise DulError(f"Ray Train run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def _unwrap(err: Exception) -> Exception:
    match = re.search(r"DulError: (.+)", str(err))
    if match:
        return DulError(match.group(1).strip())
    return DulError(f"Ray Train job failed: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}"
                    " (set DUL_VERBOSE=1 to see the workers' logs)")


# ---- worker side -------------------------------------------------------------


def seed_for(*parts: int) -> int:
    """A seed per (layer, epoch, rank, ...): a resumed run draws what an uninterrupted one would."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + part) % (2**31 - 1)
    return seed


def worker_setup(config: dict) -> tuple[int, int, torch.device]:
    """Threads, rank, world size and device for a training worker."""
    torch.set_num_threads(int(config["cpus_per_worker"]))
    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device()


def load_checkpoint() -> dict | None:
    """The state saved by the last checkpoint of this run (after a restart or a relaunch)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def save_checkpoint(state: dict, metrics: dict, rank: int) -> None:
    """Every rank reports; rank 0 attaches the checkpoint holding ``state``."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            torch.save(state, Path(folder) / STATE_FILE)
            checkpoint = Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)


def all_reduce_mean(values: dict[str, float], world_size: int, device: torch.device) -> dict[str, float]:
    """Average per-worker figures across the worker group (identity for one worker)."""
    if world_size == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return {k: float(v) / world_size for k, v in zip(keys, tensor)}
