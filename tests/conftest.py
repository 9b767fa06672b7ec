"""Shared fixtures: one Ray instance for the whole session, and an isolated
working folder (params, MLflow store, Ray storage) per test."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance shared by every test that runs Ray Train jobs
    (ray.init costs 6-9 s here; the stages reuse a running instance)."""
    import ray

    from components.training.runtime import configure_local_ray

    configure_local_ray()
    ray.init(address="local", num_cpus=2, object_store_memory=1 << 30,
             log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working folder with its own MLflow store and Ray storage."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("DUL_RAY_STORAGE", str(tmp_path / "ray_results"))
    monkeypatch.setenv("DUL_RUN_GROUP", "test")
    return tmp_path


TINY = {
    "ingest": {"dataset": "digits"},
    "pretrain": {"hidden": [24, 6], "epochs": 2, "max_failures": 0},
    "finetune": {"epochs": 2, "max_failures": 0},
    "evaluate": {"n_images": 4},
    "index": {"k": 5},
    "zoo": {"families": ["vae", "nade"], "test_samples": 20, "samples": 16},
    "vae": {"latent": 2, "hidden": [8], "epochs": 2},
    "nade": {"hidden": 8, "epochs": 2},
}


def write_params(folder: Path, overrides: dict | None = None) -> Path:
    """The repository's params.yaml with tiny settings (plus ``overrides`` per section);
    only the zoo families the result lists keep their sections (dvc.yaml reads every
    key a stage declares, so the file stays whole)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in [*TINY.items(), *(overrides or {}).items()]:
        params.setdefault(section, {}).update(values)
    from components.models.registry import ZOO_FAMILIES

    for family in set(ZOO_FAMILIES) - set(params["zoo"]["families"]):
        params.pop(family, None)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def in_process(monkeypatch):
    """Ray Train replaced by one in-process worker (``loop.run_in_process``): the
    stages' loops run as they are, minus Ray. Yields every checkpointed state, in order."""
    import copy

    from components.training import loop, runtime

    saved = []

    class Recording(loop.LocalSession):
        def save(self, state, row):
            super().save(state, row)
            saved.append(copy.deepcopy(state))

    monkeypatch.setattr(runtime, "fit", lambda worker, config, **_: loop.run_in_process(
        worker, config, session=Recording()))
    return saved


@pytest.fixture
def one_thread():
    """Many small tensor ops: one torch thread is faster, and much faster on a busy machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
