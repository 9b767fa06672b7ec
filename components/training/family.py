"""A zoo family's training, as the one phase of the one loop, and its test figures.

Any family of the registry (components/models/registry.py) trains the same
way: ``params.epochs`` epochs over the training split, each batch handed to
the model's own ``training_step(x, optimizers)`` (which does its backward and
steps, so a family with two optimizers needs nothing special here). With
several workers each takes a shard of the split and the optimizers average
the gradients of all workers before every step (``SyncedOptimizer``). After
every epoch the loop checkpoints, checks for NaN/inf and reports progress;
every worker measures the validation split with the family's cheapest
density estimate (``log_prob(x, samples=1)``: exact, or a one-sample bound).

Data: families of binary data get the split binarized by the zoo's protocol
(components/data/binarize.py; ``dynamic`` redraws every training batch);
families of word counts (``inputs = "counts"``) get the counts, and families
of real values (``inputs = "real"``: sparse coding) the intensities in [0, 1]. The data is
read whole into memory (the zoo's datasets are MNIST-sized). Sequence families
(``inputs = "sequence"``: wavenet) get the byte streams of a character ingest
instead: windows of the training stream, validation in bits per character
(components/training/sequences.py).

Optional hooks a family may have: ``fit_inputs(X)`` (statistics of the
training split it keeps, NASH's idf), ``start_epoch(epoch)`` (called before
each epoch, resumed runs included: the DBM's pretraining stages) and
``validation_figures(x)`` (its per-epoch figure where a density is costly).

``test_figures`` is the likelihood report's row for a trained density:
mean test NLL in nats with its standard error over test items, bits per
dimension, and the estimator that produced it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from components.config import ZooParams
from components.data.binarize import family_inputs, redraw, split_inputs
from components.data.chars import read_stream
from components.data.stream import Batches, TensorBatches, batch_count
from components.errors import DulError
from components.models import registry
from components.models.base import Density, SequenceParams
from components.training import loop, sequences


class SyncedOptimizer:
    """An optimizer whose ``step`` first averages its parameters' gradients over the
    workers (a no-op for one); everything else is the wrapped optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, session: loop.Session):
        self.optimizer, self.session = optimizer, session

    def step(self, closure=None):
        if self.session.world > 1:
            self.session.all_reduce_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        return self.optimizer.step(closure)

    def __getattr__(self, name):
        return getattr(self.optimizer, name)


class FamilyUnit:
    """A family in training: the model, its (synced) optimizers, this worker's batches."""

    def __init__(self, model, optimizers: list, batches: Batches, valid: torch.Tensor, dynamic: bool):
        self.model, self.optimizers, self.batches, self.valid, self.dynamic = model, optimizers, batches, valid, dynamic

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        self.model.train()
        if hasattr(self.model, "start_epoch"):  # a family whose training is scheduled by epoch (dbm's stages)
            self.model.start_epoch(epoch)
        totals: dict[str, float] = {}
        for x in self.batches.epoch(generator):
            figures = self.model.training_step(redraw(x) if self.dynamic else x, self.optimizers)
            for key, value in figures.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return {f"train_{k}": v / self.batches.n_batches for k, v in totals.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every worker's figure on the whole validation split: the family's own
        ``validation_figures`` where its density is costly (an RBM's needs AIS), else
        the NLL by ``log_prob(x, samples=1)`` (exact, or a one-sample bound)."""
        self.model.eval()
        if hasattr(self.model, "validation_figures"):
            return self.model.validation_figures(self.valid)
        if not isinstance(self.model, Density):
            return {}
        return {"valid_nll": -float(torch.cat([self.model.log_prob(x, samples=1) for x in self.valid.split(500)])
                                    .double().mean())}

    def state_dict(self) -> dict:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)

    def result(self) -> dict:
        checkpoint = self.model.to_checkpoint()
        return {**checkpoint, "state_dict": {k: v.detach().cpu().clone() for k, v in checkpoint["state_dict"].items()}}


def family_phase(config: dict) -> loop.Phase:
    """Training family ``config["family"]`` as the loop's one phase, seeded by its ``seed``."""
    family, params, zoo = config["family"], config["params"], config["zoo"]
    name = config.get("name", family)  # the zoo row: a variant's name, or the family's

    def build(done: list[dict], session: loop.Session) -> FamilyUnit:
        model = registry.build(family, params, tuple(config["shape"])).to(session.device)
        inputs = family_inputs(model)
        if inputs == "sequence":
            return sequence_unit(model, params, config["data_dir"], session)
        dynamic = inputs == "binary" and zoo.binarization == "dynamic"
        X = split_inputs(config["data_dir"], "train", inputs, zoo, raw=dynamic)
        if hasattr(model, "fit_inputs"):  # statistics of the training split the model keeps (e.g. NASH's idf)
            model.fit_inputs(torch.from_numpy(X).to(session.device))
        n_batches = batch_count(len(X), params.batch_size, session.world, stage=family)
        rows = torch.from_numpy(np.ascontiguousarray(X[session.rank::session.world])).to(session.device)
        valid = torch.from_numpy(split_inputs(config["data_dir"], "validation", inputs, zoo)).to(session.device)
        optimizers = [SyncedOptimizer(o, session) for o in model.optimizers(params)]
        if not optimizers and session.world > 1:  # nothing averages the workers' updates (sparse coding's)
            raise DulError(f"{family} updates its model without an optimizer, so {session.world} workers would each "
                           f"learn alone from their own shard; set zoo.num_workers: 1")
        return FamilyUnit(model, optimizers, TensorBatches(rows, params.batch_size, n_batches), valid, dynamic)

    def describe(unit: FamilyUnit, epoch: int, stats: dict) -> str:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in stats.items())
        return f"{name} epoch {epoch + 1}/{params.epochs}  {shown}"

    # The loop seeds the global generator from (seed,) right before build: the initial weights, alike on every worker.
    return loop.Phase(name=name, epochs=params.epochs, build=build, seed_parts=(params.seed,), describe=describe,
                      evaluate=lambda unit: unit.evaluate(), fix=f"lower {name}.lr",
                      parameters=lambda unit: unit.model.parameters())


class SequenceUnit(FamilyUnit):
    """A sequence family in training: windows of the training stream; validation in bits per
    character of the validation stream (its ``blocks``, or all of it)."""

    def __init__(self, model, optimizers: list, batches: Batches, valid: torch.Tensor, blocks):
        super().__init__(model, optimizers, batches, valid, dynamic=False)
        self.blocks = blocks

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        return {"valid_bits_per_char": sequences.stream_figures(self.model, self.valid, self.blocks)["bits_per_char"]}


def sequence_unit(model, params, data_dir, session: loop.Session) -> SequenceUnit:
    """A sequence family's unit: the train and validation streams, windows of ``params``."""
    if not isinstance(params, SequenceParams):
        raise DulError(f"{model.family} models sequences but its params section has no window or steps")
    stream = torch.from_numpy(read_stream(data_dir, "train")).to(session.device)
    valid = torch.from_numpy(read_stream(data_dir, "validation")).to(session.device)
    optimizers = [SyncedOptimizer(o, session) for o in model.optimizers(params)]
    batches = sequences.WindowBatches(stream, params.window, params.batch_size, params.steps)
    return SequenceUnit(model, optimizers, batches, valid, sequences.spaced_blocks(len(valid), params.valid_chars,
                                                                                    model.block))


def family_loop(config: dict) -> None:
    """Ray Train worker (or ``loop.run_in_process``): a family's training through the loop."""
    session = loop.worker_session(config)  # first: on a cluster it fetches the inputs the config points to
    loop.train([family_phase(config)], session, stage=f"train@{config.get('name', config['family'])}")


def train_family(family: str, data_dir: str | Path, shape: tuple[int, ...], params, zoo: ZooParams, key: str,
                 name: str | None = None) -> dict:
    """Train ``family`` as a Ray Train job (``name``: the zoo row it is, a variant's name;
    default the family); return ``{"checkpoint", "history"}``."""
    from components.training import runtime

    name = name or family
    config = {"family": family, "name": name, "data_dir": str(Path(data_dir).resolve()), "shape": list(shape),
              "params": params, "zoo": zoo}
    state = runtime.fit(family_loop, config, name=f"{name}-{key}", params=zoo, total_steps=params.epochs,
                        desc=name, section="zoo")
    (checkpoint,) = state["done"]
    return {"checkpoint": checkpoint, "history": state["history"]}


@torch.no_grad()
def test_figures(model, X: np.ndarray, samples: int, batch_size: int = 100,
                 generator_seed: int = 0, progress: str | None = None) -> dict[str, float | str]:
    """The likelihood report's figures of a density on test items ``X`` (N, D):
    ``nll_nats`` (mean over items of -log p(x)), its ``stderr`` (std / sqrt(N)),
    ``bits_per_dim`` and the ``estimator`` (with ``samples`` importance samples
    where the family estimates). ``progress``: a bar with that title on a
    terminal (an importance-sampled estimate on 10,000 items takes minutes)."""
    if not isinstance(model, Density):
        raise DulError(f"the {model.family} family has no log_prob: it cannot be in the likelihood report")
    model.eval()
    torch.manual_seed(generator_seed)
    device = next(model.parameters()).device
    starts = range(0, len(X), batch_size)
    if progress is not None:
        # imported here: the compute code runs where only torch and numpy are installed
        from tqdm import tqdm

        starts = tqdm(starts, desc=progress, unit="batch", file=sys.stderr, disable=not sys.stderr.isatty())
    values = torch.cat([model.log_prob(torch.from_numpy(X[i:i + batch_size]).to(device), samples=samples).double()
                        .cpu() for i in starts])
    nll = -values
    return {"nll_nats": float(nll.mean()), "stderr": float(nll.std(unbiased=True) / math.sqrt(len(nll))),
            "bits_per_dim": float(nll.mean() / (X.shape[1] * math.log(2))), "estimator": model.estimator(samples),
            "n_test": len(nll)}


def parameter_count(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))

