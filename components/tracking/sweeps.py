"""MLflow runs of a sweep: one parent run per sweep, one child run per trial.

All of it is written by the sweep's driver (Ray Tune calls back into it as
trials start, report and end), so one process writes to the store even when
trials run concurrently: no SQLite ``database is locked``. Runs are found
again by their tags (``dul.sweep``, ``ray.trial_id``), so a resumed sweep
keeps its parent and its trials keep their child runs.
"""

from __future__ import annotations

from pathlib import Path

from components.tracking import _client, _experiment, _flatten, git_state, lineage_tags, tags_filter

SWEEP_ROLE = "sweep"


class SweepRuns:
    """The MLflow side of one sweep. Holds plain data only, so Ray Tune can
    pickle it with the sweep's state (``Tuner.restore`` brings it back)."""

    def __init__(self, name: str, params: dict, root: str | Path = "."):
        self.name, self.root = name, Path(root).resolve()
        client = _client(self.root)
        self.experiment_id = _experiment(client, self.root)
        commit, dirty = git_state(self.root)
        self.tags = lineage_tags(commit, dirty)
        self.parent = self._find({"dul.role": SWEEP_ROLE}) or self._create_parent(client, params)
        self._trials: dict[str, str] = {}

    def _create_parent(self, client, params: dict) -> str:
        tags = {**self.tags, "dul.role": SWEEP_ROLE, "dul.sweep": self.name}
        run_id = client.create_run(self.experiment_id, run_name=f"sweep {self.name}", tags=tags).info.run_id
        for key, value in _flatten(params).items():
            client.log_param(run_id, key, value)
        return run_id

    def trial_started(self, trial_id: str, params: dict) -> str:
        """The child run of ``trial_id`` (found again after a resume), with its params."""
        if trial_id in self._trials:
            return self._trials[trial_id]
        run_id = self._find({"ray.trial_id": trial_id})
        if run_id is None:
            tags = {**self.tags, "mlflow.parentRunId": self.parent, "dul.sweep": self.name,
                    "dul.role": "trial", "ray.trial_id": trial_id}
            client = _client(self.root)
            run_id = client.create_run(self.experiment_id, run_name=f"trial {trial_id}", tags=tags).info.run_id
            for key, value in _flatten(params).items():
                client.log_param(run_id, key, value)
        self._trials[trial_id] = run_id
        return run_id

    def trial_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> None:
        client = _client(self.root)
        for key, value in metrics.items():
            client.log_metric(self._trials[trial_id], key, float(value), step=step)

    def trial_ended(self, trial_id: str, status: str, tags: dict[str, str]) -> None:
        """``status``: FINISHED, KILLED (stopped early) or FAILED."""
        client = _client(self.root)
        run_id = self._trials.get(trial_id) or self.trial_started(trial_id, {})
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.set_terminated(run_id, status)

    def finish(self, status: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        client = _client(self.root)
        for key, value in metrics.items():
            client.log_metric(self.parent, key, float(value))
        for key, value in tags.items():
            client.set_tag(self.parent, key, value)
        client.set_terminated(self.parent, status)

    def _find(self, tags: dict[str, str]) -> str | None:
        query = tags_filter({"dul.sweep": self.name, **tags}, "sweep", "sweep.name")
        found = _client(self.root).search_runs([self.experiment_id], filter_string=query, max_results=1)
        return found[0].info.run_id if found else None
