"""The loop's session in a Ray Train worker (``loop.Session``).

Rank, world size and device come from Ray Train; every epoch's state is
reported as a checkpoint (rank 0 attaches it); progress goes to the
driver's queue. ``restore`` takes the newest complete checkpoint of the
run: the one Ray Train hands back, or a newer one in the run's storage whose
upload finished but whose report the controller never saw (the worker, or
the whole process tree, was killed in between), so no finished epoch is
trained again.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import ray
import ray.train
import ray.train.torch  # noqa: F401 (ray.train.torch.get_device)
import torch
from ray.train import Checkpoint

from components.training.inputs import localize
from components.training.progress import publish

STATE_FILE = "state.pt"

class RaySession:
    """``loop.Session`` in a Ray Train worker: rank, world and device from Ray
    Train; checkpoints reported to it (rank 0 attaches the state); progress on
    the driver's queue. ``restore`` takes the newest complete checkpoint of
    the run, from Ray Train or from the run's storage."""

    def __init__(self, config: dict):
        localize(config)  # shared inputs: this node's copies, in place of the storage locations
        torch.set_num_threads(int(config["cpus_per_worker"]))
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.channel = config.get("progress")

    def restore(self) -> dict | None:
        state = newest_state(_given_checkpoint(), _stored_checkpoints())
        if self.world > 1:  # every rank starts from what rank 0 found
            box = [state]
            torch.distributed.broadcast_object_list(box, src=0)
            state = box[0]
        return state

    def save(self, state: dict, row: dict) -> None:
        """Every rank reports; rank 0 attaches the checkpoint holding ``state``."""
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if self.rank == 0:
                torch.save(state, Path(folder) / STATE_FILE)
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report(_plain(row), checkpoint=checkpoint)

    def all_reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average per-worker figures across the worker group (identity for one worker)."""
        if self.world == 1:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return {k: float(v) / self.world for k, v in zip(keys, tensor)}

    def all_reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        if self.world == 1:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad.div_(self.world)

    def publish(self, **event) -> None:
        if self.rank == 0:
            publish(self.channel, **event)


def _plain(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool))}


def _given_checkpoint() -> dict | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return _load_state(Path(folder) / STATE_FILE)


def _stored_checkpoints() -> Iterator[dict]:
    """The states in the run's storage, newest first: after a kill, the newest may
    be one the controller never registered (its upload finished, its report did not)."""
    try:
        storage = ray.train.get_context().get_storage()
        fs, root = storage.storage_filesystem, storage.experiment_fs_path
        import pyarrow.fs as pafs

        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except Exception:  # noqa: BLE001 (no storage context, e.g. Ray Train's local mode)
        return
    folders = sorted((e.path for e in entries if e.type == pafs.FileType.Directory
                      and e.base_name.startswith("checkpoint_")), reverse=True)
    for folder in folders:
        with contextlib.suppress(Exception):  # an upload cut short: not a checkpoint
            with fs.open_input_file(f"{folder}/{STATE_FILE}") as handle:
                yield torch.load(io.BytesIO(handle.read()), weights_only=True, map_location="cpu")


def _load_state(path: Path) -> dict | None:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 (truncated or missing)
        return None


def newest_state(*sources) -> dict | None:
    """The state with the most finished epochs among ``sources`` (a state or None, or
    an iterable of states); the first such on a tie."""
    best = None
    for source in sources:
        for state in ([source] if source is None or isinstance(source, dict) else source):
            if state is not None and (best is None or len(state["history"]) > len(best["history"])):
                best = state
    return best

