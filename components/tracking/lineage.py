"""Lineage: where an output, an MLflow run or a registered model came from.

The chain runs from the target back to the raw data through the stages that
produced each artifact. The pipeline and the hashes come from DVC's own
Python API (``dvc.repo.Repo(...).index.stages``, which reads dvc.yaml and the
hashes and param values dvc.lock recorded), so ``foreach`` stages, ``wdir``
and ``dvc add`` data sources read as DVC reads them. MLflow runs are matched
by the ``dvc.outs.<path>`` tag that ``stage_run`` writes: the md5 of an
output equals the one dvc.lock records for it.

A missing sqlite store, or one without the experiment, is "no MLflow info"
(noted, not an error); a store that cannot be reached is an error.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException

from components.errors import DulError, did_you_mean
from components.tracking import (
    connect,
    content_md5,
    experiment_name,
    git_state,
    store_error,
    tags_filter,
    tracking_uri,
)

NO_MLFLOW = "or pass --no-mlflow"
RUN_FIELDS = ("run_id", "run_name", "stage", "status", "start_time", "git_commit")


@dataclass
class Stage:
    """One DVC stage as dvc.lock recorded it: paths are relative to the repository root."""
    name: str
    cmd: str | None
    params: dict  # {params file: values}, as in dvc.lock
    deps: dict[str, str]  # path -> md5 recorded ("" when dvc.lock has none)
    outs: dict[str, str]


@dataclass
class Node:
    """One artifact of the chain and what produced it."""
    path: str
    md5: str
    stage: str
    cmd: str | None
    params: dict
    commit: str | None
    upstream: list[str] = field(default_factory=list)  # artifacts the stage read that a stage produced
    inputs: dict[str, str] = field(default_factory=dict)  # what else it read: code, raw data
    mlflow_runs: list[dict] = field(default_factory=list)
    card: dict | None = None
    verify: dict | None = None
    note: str | None = None


def load_stages(start: str | Path = ".") -> tuple[Path, dict[str, Stage]]:
    """The repository root and its stages, read through DVC."""
    from dvc.dependency import ParamsDependency
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(str(start)) as repo:
            root = Path(repo.root_dir)
            if not (root / "dvc.lock").is_file():
                raise DulError(f"no dvc.lock in {root}: nothing has run yet; run `dvc repro` first")
            stages = {}
            for stage in repo.index.stages:
                deps = [d for d in stage.deps if not isinstance(d, ParamsDependency)]
                cmd = " && ".join(stage.cmd) if isinstance(stage.cmd, list) else stage.cmd
                params = {p.def_path: p.hash_info.value or {} for p in stage.params}
                stages[stage.addressing] = Stage(stage.addressing, cmd, params,
                                                 _hashes(deps, root), _hashes(stage.outs, root))
            return root, stages
    except NotDvcRepoError:
        raise DulError(f"{Path(start).resolve()} is not in a DVC repository (no .dvc folder); "
                       "run `dvc init` and `dvc repro` first") from None
    except DvcException as err:
        raise DulError(f"DVC cannot read the pipeline: {str(err).splitlines()[0]}; fix that (`dvc status` "
                       "shows the same)") from None


def _hashes(items, root: Path) -> dict[str, str]:
    def rel(item) -> str:
        if item.fs.protocol != "local":
            return str(item.def_path)
        return Path(os.path.relpath(item.fs_path, root)).as_posix()
    return {rel(item): str(item.hash_info.value or "") for item in items}


def lock_commit(root: Path) -> dict:
    """The commit that last changed dvc.lock, whether dvc.lock differs from HEAD,
    and whether the code differs (tracking's notion of dirty)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    try:
        sha = git("log", "-1", "--format=%H", "--", "dvc.lock").stdout.strip() or None
        modified = git("diff", "--quiet", "HEAD", "--", "dvc.lock").returncode != 0
    except FileNotFoundError:
        sha, modified = None, True
    return {"dvc_lock_commit": sha, "dvc_lock_modified": modified, "dirty": git_state(root)[1]}


class Runs:
    """MLflow look-ups; inert (with a note) when the store is missing or empty."""

    def __init__(self, root: Path, enabled: bool = True):
        self.uri, self.client, self.experiment_id, self.note = tracking_uri(root), None, None, None
        store_file = self.uri.removeprefix("sqlite:///") if self.uri.startswith("sqlite:///") else None
        if not enabled:
            self.note = "MLflow not consulted (--no-mlflow)"
        elif store_file is not None and not Path(store_file).is_file():
            self.note = f"no MLflow store at {self.uri}: lineage without MLflow runs"
        else:
            self._connect(root)

    def _connect(self, root: Path) -> None:
        client = connect(self.uri, root, also=NO_MLFLOW)
        try:
            experiment = client.get_experiment_by_name(experiment_name())
        except Exception as err:  # MLflow raises many types for an unreachable or broken store
            raise store_error(self.uri, root, err, also=NO_MLFLOW) from None
        self.client = client
        if experiment is None:
            self.note = f"no experiment '{experiment_name()}' in {self.uri}: lineage without MLflow runs"
        else:
            self.experiment_id = experiment.experiment_id

    def for_output(self, path: str, md5: str) -> list[dict]:
        if self.experiment_id is None or not md5 or "`" in path:
            return []
        query = tags_filter({f"dvc.outs.{path}": md5}, "md5", "dvc.lock")
        found = self.client.search_runs([self.experiment_id], filter_string=query,
                                        order_by=["attributes.start_time DESC"], max_results=50)
        return [_run_info(run) for run in found]

    def run(self, run_id: str):
        if self.client is None:
            return None
        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def model_run_id(self, target: str) -> str:
        """The run id behind ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``)."""
        ref = target.removeprefix("models:/")
        name, alias = ref.split("@", 1) if "@" in ref else (ref, None)
        name, _, version = name.rpartition("/") if alias is None else (name, "", None)
        fix = "register one (mlflow.register_model) or pass an output path or run id"
        if not name or (alias is None and not version):
            raise DulError(f"'{target}' is not a model URI; write models:/NAME/VERSION or models:/NAME@ALIAS")
        if self.client is None:
            raise DulError(f"cannot resolve {target}: {self.note}; set MLFLOW_TRACKING_URI to the store "
                           "that holds the model registry, or pass an output path")
        try:
            found = (self.client.get_model_version_by_alias(name, alias) if alias
                     else self.client.get_model_version(name, version))
        except MlflowException:
            raise DulError(f"registered model {target} not found in {self.uri}; {fix}") from None
        if not found.run_id:
            raise DulError(f"registered model {target} has no source run, so no lineage; {fix}")
        return found.run_id


def _run_info(run) -> dict:
    tags = run.data.tags
    return dict(zip(RUN_FIELDS, (run.info.run_id, run.info.run_name, tags.get("dul.stage") or tags.get("dvc.stage"),
                                 run.info.status, run.info.start_time, tags.get("git.commit"))))


def resolve(target: str, root: Path, stages: dict[str, Stage], runs: Runs) -> tuple[list[str], str | None]:
    """The artifacts to start from, and a note about how ``target`` was read."""
    producers = {out: name for name, stage in stages.items() for out in stage.outs}
    if target.startswith("models:/"):
        run_id = runs.model_run_id(target)
        starts, note = _from_run(runs.run(run_id), run_id, stages)
        return starts, f"{target} is run {run_id}; " + note
    path = Path(os.path.relpath(os.path.abspath(target), root)).as_posix()  # as given from the current folder
    for candidate in (path, target.rstrip("/")):
        out = _covering(candidate, producers)
        if out:
            return [out], None if out == candidate else f"{candidate} is inside {out}"
    run = runs.run(target)
    if run is not None:
        return _from_run(run, target, stages)
    raise DulError(f"unknown target '{target}': not an output in dvc.lock, an MLflow run id in {runs.uri} "
                   f"or models:/NAME/VERSION; {did_you_mean(target, sorted(producers))}")


def _covering(path: str, producers: dict[str, str]) -> str | None:
    """The output that is ``path`` or the folder that holds it."""
    return next((out for out in producers if path == out or path.startswith(out + "/")), None)


def _from_run(run, run_id: str, stages: dict[str, Stage]) -> tuple[list[str], str]:
    if run is None:
        raise DulError(f"MLflow run {run_id} not found; check the run id and MLFLOW_TRACKING_URI")
    tags = run.data.tags
    stage = tags.get("dvc.stage") or tags.get("dul.stage")
    if stage not in stages:
        raise DulError(f"MLflow run {run_id} is not a run of a stage in dvc.yaml (stage tag: {stage}); "
                       "pass a stage's run id or an output path")
    wrote = {k.removeprefix("dvc.outs."): v for k, v in tags.items() if k.startswith("dvc.outs.")}
    starts = [out for out in stages[stage].outs if out in wrote] or list(stages[stage].outs)
    differ = [out for out in starts if out in wrote and wrote[out] != stages[stage].outs[out]]
    note = f"run {run_id} is stage {stage}"
    if differ:
        note += (f"; it wrote {', '.join(f'{o} md5 {wrote[o]}' for o in differ)}, but dvc.lock now records "
                 "other hashes: the chain below is dvc.lock's")
    return starts, note


def build(starts: list[str], root: Path, stages: dict[str, Stage], runs: Runs, commit: str | None) -> list[Node]:
    """The artifacts from ``starts`` back to the raw data, each once, targets first."""
    producers = {out: name for name, stage in stages.items() for out in stage.outs}
    nodes: dict[str, Node] = {}
    pending = list(starts)
    while pending:
        path = pending.pop(0)
        if path in nodes:
            continue
        stage = stages[producers[path]]
        node = Node(path, stage.outs[path], stage.name, stage.cmd, stage.params, commit)
        for dep, md5 in stage.deps.items():
            out = _covering(dep, producers)
            if out and out != path:
                node.upstream += [out] if out not in node.upstream else []
            else:
                node.inputs[dep] = md5
        node.mlflow_runs = runs.for_output(path, node.md5)
        if node.md5.endswith(".dir") and (stage.name == "ingest" or (root / path / "card.json").is_file()):
            node.card = _card(root / path)
        nodes[path] = node
        pending += node.upstream
    return list(nodes.values())


def _card(folder: Path) -> dict:
    from components.data import read_card

    try:
        card = read_card(folder)
    except DulError as err:
        return {"error": str(err)}
    return {"dataset": card.get("dataset"), "source": card.get("source"), "files": card.get("files", [])}


def verify(nodes: list[Node], root: Path, stages: dict[str, Stage]) -> list[str]:
    """Recompute each artifact's md5 on disk and check each stage's deps against
    what dvc.lock records; fill ``node.verify`` and return every problem."""
    producers = {out: name for name, stage in stages.items() for out in stage.outs}
    on_disk: dict[str, str] = {}

    def md5_of(path: str) -> str:
        if path not in on_disk:
            on_disk[path] = content_md5(root / path)
        return on_disk[path]

    problems = []
    for node in nodes:
        found, status, messages = md5_of(node.path), "ok", []
        if not node.md5:
            status, messages = "stale", [f"{node.path}: not in dvc.lock; run `dvc repro {node.stage}`"]
        elif found == "missing":
            status, messages = "missing", [(f"{node.path}: missing on disk (dvc.lock records md5 {node.md5}); "
                                            f"run `dvc checkout {node.path}` or `dvc repro`")]
        elif found != node.md5:
            status, messages = "changed", [(f"{node.path}: md5 on disk {found} differs from dvc.lock {node.md5}; "
                                            f"run `dvc repro` or `dvc checkout {node.path}`")]
        stale = _stale(node, stages[node.stage], stages, producers, md5_of)
        status = "stale" if stale and status == "ok" else status
        node.verify = {"status": status, "md5_on_disk": found, "problems": messages + stale}
        problems += messages + stale
    return problems


def _stale(node: Node, stage: Stage, stages: dict[str, Stage], producers: dict[str, str], md5_of) -> list[str]:
    """Deps whose md5 differs from what the stage ran on: an upstream output that
    dvc.lock now records differently, or code and data changed on disk."""
    fix = f"run `dvc repro {stage.name}`"
    messages, changed = [], []
    for dep, ran_on in stage.deps.items():
        upstream = producers.get(dep)
        if upstream and upstream != stage.name:
            now = stages[upstream].outs[dep]
            if ran_on != now:
                messages.append(f"{node.path}: stale: stage {stage.name} ran on {dep} md5 {ran_on or 'unknown'}, "
                                f"but stage {upstream} now records md5 {now} in dvc.lock; {fix}")
        elif not _covering(dep, producers) and md5_of(dep) != ran_on:
            changed.append(dep)
    if changed:
        messages.append(f"{node.path}: stale: {', '.join(changed)} changed on disk since stage {stage.name} ran; {fix}")
    return messages


def lineage(target: str, *, check: bool = False, use_mlflow: bool = True, start: str | Path = ".") -> dict:
    """The lineage document of ``target``: what ``dul lineage --format json`` prints."""
    root, stages = load_stages(start)
    runs = Runs(root, enabled=use_mlflow)
    git = lock_commit(root)
    starts, note = resolve(target, root, stages, runs)
    nodes = build(starts, root, stages, runs, git["dvc_lock_commit"])
    if note:
        nodes[0].note = note
    problems = verify(nodes, root, stages) if check else None
    return {"target": target, "root": str(root), "git": git,
            "mlflow": {"tracking_uri": runs.uri, "experiment": experiment_name(), "note": runs.note},
            "nodes": [vars(node) for node in nodes], "verified": None if problems is None else not problems,
            "problems": problems or []}

