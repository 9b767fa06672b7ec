"""MLflow tracking for the pipeline's stages: the only module that imports mlflow.

Every stage is one MLflow run in one experiment (``DUL_EXPERIMENT``, default
``dul``). The stages of one pipeline run are children of one parent run,
found by its run-group tag: ``DUL_RUN_GROUP`` if set, else the DVC
experiment name, else the git commit plus a hash of ``params.yaml``. Runs are
tagged with their lineage: git commit and dirtiness, the DVC stage and
experiment, and the md5 of each file the stage read and wrote (the hashes
``dvc.lock`` records for files).

The store is ``MLFLOW_TRACKING_URI`` when set (e.g. a tracking server),
otherwise ``sqlite:///<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Iterator

# Fail fast rather than retry for minutes when a tracking server is down.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import logging  # noqa: E402

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException  # noqa: E402

from components.errors import DulError  # noqa: E402
from components.io import file_md5  # noqa: E402

PARENT_ROLE = "pipeline"

if os.environ.get("DUL_VERBOSE", "") in ("", "0", "false"):
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # e.g. "Creating initial MLflow database tables"
    # and no "View run ... at: http://..." per closed run, nor progress bars, with a tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri(root: str | Path = ".") -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri(root)


def local_uri(root: str | Path = ".") -> str:
    """The default store: ``<root>/mlflow.db``, whose experiment keeps its artifacts in ``<root>/mlartifacts``."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def experiment_name() -> str:
    return os.environ.get("DUL_EXPERIMENT", "dul")


def _recorded(method):
    """A StageRun method whose MLflow failure fails the stage with one line (DulError), never silently."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except DulError:
            raise
        except Exception as err:  # noqa: BLE001 (MLflow raises many types for a failing store)
            raise DulError(f"MLflow could not record the stage's {method.__name__.split('_')[-1]} in run "
                           f"{self.run_id} at {tracking_uri(self.root)}: {failure_reason(err)}; the stage failed: "
                           "check the tracking store (MLFLOW_TRACKING_URI) and rerun it") from None
    return wrapper


class StageRun:
    """Handle on the MLflow run of one stage. A failure to record is an error:
    results that MLflow did not get would look like a finished run without them."""

    def __init__(self, client: MlflowClient, run_id: str, root: Path):
        self.client, self.run_id, self.root = client, run_id, root

    @_recorded
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        for key, value in _flatten(metrics).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.client.log_metric(self.run_id, key, float(value), step=step or 0)

    @_recorded
    def log_history(self, rows: list[dict], prefix: str = "") -> None:
        """Curves: each row's numbers as metrics at step = the row's position (1-based)."""
        for step, row in enumerate(rows, start=1):
            self.log_metrics({f"{prefix}{k}": v for k, v in row.items()}, step=step)

    @_recorded
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    @_recorded
    def tag_files(self, kind: str, paths: list[str | Path]) -> None:
        """Tag ``dvc.<kind>.<path>`` with the md5 dvc.lock records for each file or folder."""
        for path in paths:
            self.client.set_tag(self.run_id, f"dvc.{kind}.{Path(path).as_posix()}", content_md5(path))


@contextlib.contextmanager
def stage_run(stage: str, params: dict, *, deps: list[str | Path] = (), root: str | Path = ".") -> Iterator[StageRun]:
    """Open the stage's MLflow run (a child of its pipeline run); close it
    FINISHED, or FAILED if the stage raises."""
    root = Path(root).resolve()
    client = _client(root)
    experiment_id = _experiment(client, root)
    commit, dirty = git_state(root)
    group = run_group(root, commit)
    parent = _parent_run(client, experiment_id, group)
    tags = {**lineage_tags(commit, dirty), "dul.stage": stage, "dul.run_group": group, "mlflow.parentRunId": parent}
    run = client.create_run(experiment_id, run_name=stage, tags=tags)
    handle = StageRun(client, run.info.run_id, root)
    for key, value in _flatten(params).items():
        client.log_param(run.info.run_id, key, value)
    handle.tag_files("deps", list(deps))
    try:
        yield handle
    except BaseException:
        with contextlib.suppress(Exception):  # the store may be what failed: report the stage's own error
            client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")


def _client(root: Path) -> MlflowClient:
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    return connect(uri, root)


def connect(uri: str, root: str | Path = ".", also: str = "") -> MlflowClient:
    """A client of the store at ``uri``; a store MLflow cannot open is one DulError line."""
    try:
        return MlflowClient(uri)
    except Exception as err:  # noqa: BLE001 (an unknown scheme, a file that is not a database, ...)
        raise store_error(uri, Path(root), err, also) from None


def _experiment(client: MlflowClient, root: Path) -> str:
    name = experiment_name()
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # Not `"MLFLOW_TRACKING_URI" in os.environ`: mlflow.set_tracking_uri sets that variable too.
        location = (root / "mlartifacts").as_uri() if tracking_uri(root) == local_uri(root) else None
        return client.create_experiment(name, artifact_location=location)
    except Exception as err:  # MLflow raises many types for an unreachable or broken store
        raise store_error(tracking_uri(root), root, err) from None


# What sqlite says of a file that is not, or no longer, a database.
BROKEN_DATABASE = ("file is not a database", "database disk image is malformed", "unsupported file format")


def store_error(uri: str, root: Path, err: BaseException, also: str = "") -> DulError:
    """The one line for a store that cannot be used: what it is, why, and the fix (``also``: another fix)."""
    reason, also = failure_reason(err), f", {also}" if also else ""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if uri.startswith(("http://", "https://")):
        return DulError(f"MLflow tracking server {uri} is unreachable or failing ({reason}): start it, or set "
                        f"MLFLOW_TRACKING_URI to a running one (unset it for the local store {local_uri(root)}){also}")
    if isinstance(err, UnsupportedModelRegistryStoreURIException):
        return DulError(f"MLFLOW_TRACKING_URI={uri}: MLflow has no store for the scheme '{scheme}'; set it to a "
                        "server (http://HOST:5000) or database (sqlite:///PATH, postgresql://...) URI, or unset "
                        f"it for the local store {local_uri(root)}{also}")
    store_file = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    broken = next((marker for marker in BROKEN_DATABASE if marker in reason), None)
    if store_file and broken:
        return DulError(f"{store_file} is not a usable MLflow database ({broken}): move it aside (mv {store_file} "
                        f"{store_file}.broken) and rerun for a fresh store, or set MLFLOW_TRACKING_URI to another "
                        f"store{also}")
    return DulError(f"MLflow tracking store {uri} is not usable: {reason}; check MLFLOW_TRACKING_URI{also}")


def failure_reason(err: BaseException) -> str:
    """A short reason for an MLflow failure: "connection refused", or the error's first line."""
    text = str(err).strip()
    for marker, reason in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                           ("Failed to resolve", "unknown host"), ("Name or service not known", "unknown host")):
        if marker in text:
            return reason
    return text.splitlines()[0][:200] if text else type(err).__name__


def _parent_run(client: MlflowClient, experiment_id: str, group: str) -> str:
    query = tags_filter({"dul.run_group": group, "dul.role": PARENT_ROLE}, "run group", "DUL_RUN_GROUP")
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    tags = {"dul.run_group": group, "dul.role": PARENT_ROLE}
    return client.create_run(experiment_id, run_name=f"pipeline {group}", tags=tags).info.run_id


def tags_filter(tags: dict[str, str], what: str, setting: str) -> str:
    """An MLflow search filter: every tag equals its value (``filter_value``)."""
    return " and ".join(f"tags.`{key}` = {filter_value(value, what, setting)}" for key, value in tags.items())


def filter_value(value: str, what: str, setting: str) -> str:
    """``value`` as a string literal of MLflow's search filter grammar.

    MLflow (SearchUtils._strip_quotes) only cuts off the outer quotes: a doubled
    or backslashed quote stays in the value, so no quote can be escaped. A value
    is single-quoted, or double-quoted when it holds a single quote. One that
    holds both, or ends in a backslash (sqlparse reads it as escaping the
    closing quote), cannot be written, and is a DulError naming ``setting``."""
    if value.endswith("\\") or ("'" in value and '"' in value):
        problem = "ends in a backslash" if value.endswith("\\") else "holds both ' and \""
        raise DulError(f"{what} {value!r} cannot be looked up in MLflow: it {problem}; set {setting} to a name "
                       "with one kind of quote at most and no final backslash")
    quote = '"' if "'" in value else "'"
    return f"{quote}{value}{quote}"


def run_group(root: Path, commit: str) -> str:
    """The parent run's name. Not the dirty flag: DVC rewrites dvc.lock between
    stages, and one pipeline run must stay under one parent."""
    explicit = os.environ.get("DUL_RUN_GROUP") or os.environ.get("DVC_EXP_NAME")
    if explicit:
        return explicit
    params = root / "params.yaml"
    params_hash = file_md5(params)[:8] if params.exists() else "noparams"
    return f"{commit[:10]}-{params_hash}"


# What DVC itself writes during `dvc repro` does not make the code dirty.
DVC_WRITES = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore", ":(exclude)reports")


def git_state(root: Path) -> tuple[str, bool]:
    """(commit, dirty) of the repository at ``root``; ("unknown", True) outside git.
    Dirty means tracked files differ from the commit, DVC's own outputs aside."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *DVC_WRITES))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown", True


def lineage_tags(commit: str, dirty: bool) -> dict[str, str]:
    tags = {"git.commit": commit, "git.dirty": str(dirty).lower()}
    for env, tag in (("DVC_STAGE", "dvc.stage"), ("DVC_EXP_NAME", "dvc.exp_name"),
                     ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def content_md5(path: str | Path) -> str:
    """The md5 ``dvc.lock`` records: a file's md5, or for a folder DVC 3's ``.dir``
    hash (md5 of the sorted JSON list of its files' relpaths and md5s)."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    if not path.is_dir():
        return "missing"
    files = sorted((p.relative_to(path).parts, p) for p in path.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    entries = [{"md5": file_md5(p), "relpath": "/".join(parts)} for parts, p in files]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
