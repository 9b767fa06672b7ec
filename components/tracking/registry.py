"""The model registry: the fine-tuned encoder and the retrieval index as MLflow models.

The finetune stage registers the encoder half of models/autoencoder.pt as
``dul-encoder``, the index stage its search folder (index/search) as
``dul-index`` (``DUL_MODEL_PREFIX`` replaces ``dul``). Each is an MLflow
pyfunc model logged into the stage's own run, so its version's run is the
stage run that lineage follows (``dul lineage models:/dul-encoder@champion``):

- ``dul-encoder``: input float32 (-1, D) vectors in the data's own units
  (pixel intensities in [0, 1], or word counts; an encoder with Gaussian
  inputs standardises them itself, with the training split's mean and std
  it carries), output float32 (-1, C)
  codes, the encoder's code layer (``DeepAutoencoder.encode``).
- ``dul-index``: input the same float32 (-1, D) queries; output one row per
  query with ``ids`` (the ids of its k nearest items by Hamming distance of
  the binarised codes, nearest first, as ``dul search`` finds them) and
  ``distances`` (their Hamming distances); param ``k`` (default the index
  stage's ``index.k``). Exact k-NN, no TF-IDF re-ranking.

The models are "models from code" (``model_code.py`` plus the ``components``
modules it imports, copied into the model), with explicit pip requirements
and a signature: loading runs no pickle and infers nothing.

Each version is tagged with the md5 of the data its stage read (``dul.data_md5``,
the run's ``dvc.deps.data/prepared`` tag, "unknown" without it) and the name of
its metric (``dul.metric``). Aliases: ``champion`` moves to the new version when
its stage metric beats the champion's (finetune: lower ``valid_squared_error``;
index: higher ``precision_at_<k>``) on the same data, or when there is no
champion yet. A champion trained on other data, or whose run lacks that metric
(another ``index.k``), stays; a metric that is NaN or infinite (a split with
no items) never makes a champion. ``latest`` is MLflow's
own alias for the highest version, so ``models:/dul-encoder@latest`` is
always the newest (MLflow reserves the name: it cannot be set). A failed
registration fails the stage (DulError), it is never skipped.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import io
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import Array

from components.errors import DulError
from components.tracking import StageRun, failure_reason

PREFIX_ENV = "DUL_MODEL_PREFIX"
CHAMPION = "champion"
MODEL_CODE = Path(__file__).with_name("model_code.py")
PACKAGE = Path(__file__).resolve().parents[1]  # components/
REQUIREMENTS = ("mlflow", "torch", "numpy", "scipy", "pandas")
DATA_TAG = "dvc.deps.data/prepared"  # StageRun.tag_files: the md5 of the data the stage read
VERSION_DATA, VERSION_METRIC = "dul.data_md5", "dul.metric"


@dataclass(frozen=True)
class Registered:
    """A registered version and where the champion alias points after it."""

    name: str
    version: str
    champion: str
    metric: str
    value: float
    seconds: float
    reason: str

    def describe(self) -> str:
        champion = f"champion v{self.champion}" if self.champion else "no champion"
        return f"registered {self.name} v{self.version} in {self.seconds:.1f} s ({champion}: {self.reason})"


def model_name(kind: str) -> str:
    """``dul-encoder`` or ``dul-index``, with ``DUL_MODEL_PREFIX`` in place of ``dul``."""
    prefix = os.environ.get(PREFIX_ENV) or "dul"
    if any(c in prefix for c in "/:") or prefix != prefix.strip():
        raise DulError(f"{PREFIX_ENV}={prefix!r} cannot start an MLflow model name (no '/', ':' or edge "
                       f"spaces): set it to a plain name such as 'dul'")
    return f"{prefix}-{kind}"


def register_encoder(run: StageRun, checkpoint: str | Path, *, n_inputs: int, code_size: int,
                     metric: str, value: float) -> Registered:
    """Register the encoder of a DeepAutoencoder checkpoint; lower ``metric`` is better."""
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_inputs))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, code_size), "codes")]))
    return _register(run, "encoder", {"encoder": str(checkpoint)}, signature, metric, value, higher_is_better=False)


def register_index(run: StageRun, folder: str | Path, *, n_inputs: int, k: int, metric: str,
                   value: float) -> Registered:
    """Register a search folder as a k-NN model of raw queries; higher ``metric`` is better."""
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_inputs))]),
                               outputs=Schema([ColSpec(Array("string"), "ids"), ColSpec(Array("long"), "distances")]),
                               params=ParamSchema([ParamSpec("k", "long", int(k))]))
    return _register(run, "index", {"index": str(folder)}, signature, metric, value, higher_is_better=True)


def _register(run: StageRun, kind: str, artifacts: dict, signature: ModelSignature, metric: str, value: float,
              *, higher_is_better: bool) -> Registered:
    name, start = model_name(kind), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp, _quiet(), _active_run(run.run_id):
            info = mlflow.pyfunc.log_model(
                name=kind, python_model=str(MODEL_CODE), artifacts=artifacts, code_paths=[_code_tree(Path(tmp))],
                signature=signature, pip_requirements=_requirements(), registered_model_name=name)
        version = str(info.registered_model_version)
        data = run.client.get_run(run.run_id).data.tags.get(DATA_TAG) or "unknown"
        run.client.set_model_version_tag(name, version, VERSION_DATA, data)
        run.client.set_model_version_tag(name, version, VERSION_METRIC, metric)
        champion, reason = _champion(run.client, name, version, (metric, value, data), higher_is_better)
        if champion == version:
            run.client.set_registered_model_alias(name, CHAMPION, version)
    except DulError:
        raise
    except Exception as err:  # noqa: BLE001 (MLflow raises many types for an unreachable or broken registry)
        raise DulError(f"could not register the {kind} as {name} in the MLflow model registry at "
                       f"{mlflow.get_tracking_uri()}: {failure_reason(err)}; check that MLFLOW_TRACKING_URI is a reachable "
                       "server or database store (they hold the registry), then rerun the stage") from None
    return Registered(name, version, champion, metric, value, time.perf_counter() - start, reason)


def _champion(client, name: str, version: str, score: tuple[str, float, str],
              higher_is_better: bool) -> tuple[str, str]:
    """The version ``champion`` should point at ("" for none), and why. ``score``:
    the new version's (metric, value, data md5)."""
    metric, value, data = score
    aliases = client.get_registered_model(name).aliases  # {alias: version}
    held = str(aliases.get(CHAMPION, ""))
    if not math.isfinite(value):
        return held, f"{metric} {value} is not a number to compare: never a champion"
    if not held:
        return version, "the first champion"
    if held == version:
        return version, "already"
    current = client.get_model_version(name, held)
    theirs, their_data = _their_score(client, current, metric)
    if their_data != data:
        return held, f"v{held} trained on other data (hash {their_data[:8]}, this one {data[:8]}): not compared"
    if theirs is None:
        return held, f"its run has no {metric} to compare with this one's {value:.4g}"
    better = value > theirs if higher_is_better else value < theirs
    sign = (">" if better else "<=") if higher_is_better else ("<" if better else ">=")
    return (version if better else held), f"{metric} {value:.4g} {sign} v{held}'s {theirs:.4g}"


def _their_score(client, current, metric: str) -> tuple[float | None, str]:
    """The champion's ``metric`` (None if its run lacks it, or reports another
    metric) and the md5 of its data (from its version tag, else its run's)."""
    try:
        run = client.get_run(current.run_id) if current.run_id else None
    except MlflowException:  # its run was deleted for good
        run = None
    tags = current.tags or {}
    data = tags.get(VERSION_DATA) or (run.data.tags.get(DATA_TAG) if run else None) or "unknown"
    theirs = run.data.metrics.get(metric) if run and tags.get(VERSION_METRIC, metric) == metric else None
    return theirs, data


@contextlib.contextmanager
def _active_run(run_id: str) -> Iterator[None]:
    """Make the stage's run (created with MlflowClient) the active one, which
    ``log_model`` links the model to. It stays RUNNING: the stage closes it."""
    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run(status="RUNNING")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without DUL_VERBOSE, no MLflow chatter: its advice on type hints and input
    examples (the signature is given), its progress bars and "Created version" lines."""
    if os.environ.get("DUL_VERBOSE", "") not in ("", "0", "false"):
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _requirements() -> list[str]:
    """Pins of what model_code imports, at the versions this stage ran with."""
    return [f"{package}=={importlib.metadata.version(package).split('+')[0]}" for package in REQUIREMENTS]


def _code_tree(folder: Path) -> str:
    """Copy the ``components`` modules model_code imports (transitively, with
    their packages' __init__.py), and every family module the model registry
    names (it imports them by name), to ``folder/components``; its path."""
    from components.models.registry import FAMILIES

    modules = _local_modules(MODEL_CODE)
    for family in FAMILIES.values():
        start = PACKAGE.parent / (family.partition(":")[0].replace(".", "/") + ".py")
        modules |= {start} | _local_modules(start)
    for path in modules:
        target = folder / path.relative_to(PACKAGE.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return str(folder / PACKAGE.name)


def _local_modules(start: Path) -> set[Path]:
    found: set[Path] = set()
    pending = [start]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                for path in _module_files(name):
                    if path not in found:
                        found.add(path)
                        pending.append(path)
    return found


def _module_files(name: str) -> list[Path]:
    """The files that importing ``name`` runs, if it is a components module: each package's __init__.py."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name:
        return []
    files = []
    for i in range(1, len(parts) + 1):
        base = PACKAGE.parent.joinpath(*parts[:i])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files
