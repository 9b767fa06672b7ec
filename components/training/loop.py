"""The one training loop: every family, every recipe, on Ray or in this process.

A recipe is a list of ``Phase``s run one after another: the layers of a
greedy layer-wise stack (DBN, stacked autoencoders), the single phase of
fine-tuning or of a zoo family. A phase builds a ``Unit`` (its model,
optimizers and data, from the results of the phases before it) and the loop
runs its epochs:

- **seeds**: before the unit is built and before every epoch the global torch
  generator is seeded from (phase seed parts, epoch, rank), and the epoch's
  batch order comes from its own generator, so a resumed run draws exactly
  what an uninterrupted one would;
- **all-reduce**: each epoch's figures are averaged over the workers;
- **finite check**: a NaN or inf figure or parameter stops training with
  ``Diverged``, naming the stage, the phase and the epoch (a deterministic
  error: the runtime never retries it);
- **checkpoint**: after every epoch the whole state (finished phases' results,
  the unit's state, the history) is saved through the session;
- **resume**: the session's newest checkpoint is the starting point, so the
  first epoch a resumed run trains is the one after the checkpoint's;
- **progress**: one event per epoch to the session (a bar in the driver).

The loop imports neither Ray nor MLflow: a ``Session`` says where it runs.
``LocalSession`` runs it in this process (notebooks, benchmarks, a bare GPU
machine); ``components.training.runtime.RaySession`` runs it in a Ray Train
worker, with checkpoints in the run's storage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from components.errors import DulError


class Diverged(DulError):
    """Training produced NaN or inf: the same inputs would do it again, so it is never retried."""


def seed_for(*parts: int) -> int:
    """A seed per (phase, epoch, rank, ...): a resumed run draws what an uninterrupted one would."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + part) % (2**31 - 1)
    return seed


class Session(Protocol):
    """Where the loop runs: its rank among ``world`` workers, its device, its checkpoints."""

    rank: int
    world: int
    device: torch.device

    def restore(self) -> dict | None: ...  # the newest saved state, or None

    def save(self, state: dict, row: dict) -> None: ...  # a checkpoint of ``state``; ``row``: the epoch's figures

    def all_reduce_mean(self, values: dict[str, float]) -> dict[str, float]: ...

    def all_reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None: ...  # grads averaged in place

    def publish(self, **event) -> None: ...  # progress: step, line, postfix


class Unit(Protocol):
    """A phase's trainable state: what one epoch does, and how it is saved."""

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]: ...  # this worker's figures

    def state_dict(self) -> dict: ...  # everything a resumed epoch needs (plain tensors and data)

    def load_state_dict(self, state: dict) -> None: ...

    def result(self) -> dict: ...  # what the finished phase hands to the next (plain tensors and data)


@dataclass
class Phase:
    """One phase of a recipe: ``epochs`` epochs of the unit ``build`` makes.

    ``build(done, session)`` gets the results of the phases before this one.
    ``seed_parts`` prefix every seed the loop draws in this phase. ``row`` is
    put before each epoch's figures in the history (e.g. ``{"layer": 2}``).
    ``evaluate(unit)`` adds figures after the all-reduce (e.g. a validation
    error every worker measures on the whole split). ``describe(unit, epoch, stats)``
    is the progress line; ``fix`` ends the divergence message.
    """

    name: str
    epochs: int
    build: Callable[[list[dict], Session], Unit]
    seed_parts: tuple[int, ...]
    row: dict = field(default_factory=dict)
    evaluate: Callable[[Unit], dict[str, float]] | None = None
    describe: Callable[[Unit, int, dict], str] | None = None
    fix: str = "lower the learning rate"
    parameters: Callable[[Unit], Iterable[torch.Tensor]] | None = None  # checked for NaN/inf each epoch
    epoch_seeds: Callable[[int, int], tuple[int | None, int]] | None = None  # (epoch, rank) -> seeds


def fresh_state() -> dict:
    return {"phase": 0, "epoch": 0, "done": [], "unit": None, "history": []}


def train(phases: Sequence[Phase], session: Session, *, stage: str) -> dict:
    """Run ``phases`` from the session's newest checkpoint; return the final state:
    ``done`` (each phase's ``result()``) and ``history`` (one row per epoch)."""
    state = session.restore() or fresh_state()
    session.publish(step=len(state["history"]))
    ran = False
    for index in range(state["phase"], len(phases)):
        _run_phase(phases[index], index, state, session, stage)
        ran = True
    if not ran:  # relaunched after completion: hand the finished state back
        session.save(state, state["history"][-1] if state["history"] else {})
    return state


def _run_phase(phase: Phase, index: int, state: dict, session: Session, stage: str) -> None:
    torch.manual_seed(seed_for(*phase.seed_parts))
    unit = phase.build(state["done"], session)
    if state["unit"] is not None:
        unit.load_state_dict(state["unit"])
    for epoch in range(state["epoch"], phase.epochs):
        torch_seed, batch_seed = _seeds(phase, epoch, session.rank)
        if torch_seed is not None:
            torch.manual_seed(torch_seed)
        stats = session.all_reduce_mean(unit.train_epoch(epoch, torch.Generator().manual_seed(batch_seed)))
        if phase.evaluate is not None:
            stats |= phase.evaluate(unit)
        check_finite(stats, phase.parameters(unit) if phase.parameters else (), stage, phase, epoch)
        row = {**phase.row, "epoch": epoch + 1, **stats}
        state["history"].append(row)
        if epoch == phase.epochs - 1:
            state.update(phase=index + 1, epoch=0, unit=None, done=state["done"] + [unit.result()])
        else:
            state.update(epoch=epoch + 1, unit=unit.state_dict())
        session.save(state, row)
        line = phase.describe(unit, epoch, stats) if phase.describe else f"{phase.name} epoch {epoch + 1}/{phase.epochs}"
        session.publish(step=len(state["history"]), line=line, postfix=_postfix(phase.row, stats))


def _seeds(phase: Phase, epoch: int, rank: int) -> tuple[int | None, int]:
    if phase.epoch_seeds is not None:
        return phase.epoch_seeds(epoch, rank)
    return seed_for(*phase.seed_parts, epoch, rank), seed_for(*phase.seed_parts, epoch, rank, 1)


def check_finite(stats: dict, parameters: Iterable[torch.Tensor], stage: str, phase: Phase, epoch: int) -> None:
    """``Diverged`` if any figure or parameter is NaN or inf, naming where and the fix."""
    bad = [k for k, v in stats.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
    if not bad and all(bool(torch.isfinite(p).all()) for p in parameters):
        return
    where = f" in {phase.name}" if phase.name else ""
    what = f"NaN/inf in {', '.join(bad)}" if bad else "NaN/inf in the parameters"  # e.g. a GAN's train_d_loss
    raise Diverged(f"{stage}: training diverged ({what}){where} at epoch {epoch + 1}; "
                   f"the last good checkpoint is kept; {phase.fix}")


def _postfix(row: dict, stats: dict) -> dict:
    first = next((k for k, v in stats.items() if isinstance(v, float)), None)
    return {**row, **({first: f"{stats[first]:.3f}"} if first else {})}


class LocalSession:
    """The loop in this process: one worker, ``device``, and (with ``folder``) a
    checkpoint file ``folder/state.pt`` written atomically after every epoch,
    which a rerun with the same folder resumes from. ``on_epoch(row)`` sees
    every epoch's figures."""

    rank, world = 0, 1

    def __init__(self, device: torch.device | str = "cpu", folder: str | Path | None = None,
                 on_epoch: Callable[[dict], None] | None = None):
        self.device = torch.device(device)
        self.folder = Path(folder) if folder is not None else None
        self.on_epoch = on_epoch
        self.state: dict | None = None  # the last state saved

    def restore(self) -> dict | None:
        path = self.folder / "state.pt" if self.folder else None
        return torch.load(path, weights_only=True, map_location="cpu") if path and path.exists() else None

    def save(self, state: dict, row: dict) -> None:
        self.state = state
        if self.folder is not None:
            from components.io import save_torch

            save_torch(self.folder / "state.pt", state)
        if self.on_epoch is not None and row:
            self.on_epoch(row)

    def all_reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def all_reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        pass

    def publish(self, **event) -> None:
        pass


def worker_session(config: dict) -> Session:
    """The session a stage's worker function runs the loop in: the in-process one
    ``run_in_process`` passes, or (importing Ray only then) this Ray Train worker's."""
    if config.get("session") is not None:
        return config["session"]
    from components.training.ray_worker import RaySession

    return RaySession(config)


def run_in_process(worker: Callable[[dict], None], config: dict, device: torch.device | str = "cpu",
                   folder: str | Path | None = None, session: LocalSession | None = None) -> dict:
    """Run a stage's worker function (``pretrain_loop``, ``finetune_loop``, ...) here,
    as one worker on ``device`` (checkpoints in ``folder``, if given), without Ray;
    return its final state, as ``runtime.fit`` returns the state of a Ray Train
    run's last checkpoint."""
    session = session or LocalSession(device, folder)
    worker({**config, "session": session, "progress": None, "cpus_per_worker": torch.get_num_threads()})
    return session.state
