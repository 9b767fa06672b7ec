"""Requests nothing can serve are one-line errors within seconds, not hangs: more
workers than CPUs, a GPU that is not there, a RAY_ADDRESS nobody answers on,
a Ray that does not start."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from components.data import ingest
from components.errors import DulError
from components.training import runtime
from tests.conftest import REPO


@pytest.fixture
def prepared(workdir):
    ingest("digits", workdir / "data/prepared")
    return workdir


def run_pretrain(folder, pretrain: dict, env: dict | None = None) -> tuple[int, str, float]:
    (folder / "params.yaml").write_text(yaml.safe_dump({"pretrain": {"hidden": [8], "epochs": 1, **pretrain}}))
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipelines.pretrain"], cwd=folder, env=environment,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, time.monotonic() - start


def assert_one_line(code: int, err: str, seconds: float, folder, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert seconds < 60, f"took {seconds:.0f} s"
    assert not (folder / "models/stack.pt").exists()


def test_more_workers_than_cpus_is_refused_before_ray_starts(prepared):
    code, err, seconds = run_pretrain(prepared, {"num_workers": 64})
    cpus = os.cpu_count()
    assert_one_line(code, err, seconds, prepared, f"pretrain.num_workers (64) x pretrain.cpus_per_worker (2) needs "
                                                  f"128 CPUs, but this machine has {cpus}")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_use_gpu_without_a_gpu_is_refused(prepared):
    code, err, seconds = run_pretrain(prepared, {"use_gpu": True, "cpus_per_worker": 1})
    assert_one_line(code, err, seconds, prepared, "pretrain.num_workers (1) with pretrain.use_gpu needs 1 GPUs, "
                                                  "but this machine has 0; set pretrain.use_gpu: false")


def test_a_ray_address_nobody_answers_on_is_refused(prepared):
    code, err, seconds = run_pretrain(prepared, {}, env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert_one_line(code, err, seconds, prepared, "no Ray cluster answers at RAY_ADDRESS=127.0.0.1:9")


def test_a_ray_that_does_not_start_is_one_line(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **_: (_ for _ in ()).throw(TimeoutError("Timed out waiting for GCS")))
    with pytest.raises(DulError, match=r"could not start or join a local Ray instance: Timed out waiting for GCS "
                                       r"\(on a loaded machine, retry"):
        with runtime.ray_session():
            pass
