"""Fine-tuning the unrolled deep autoencoder by backpropagation.

Hinton & Salakhutdinov (2006): the pretrained RBM stack is unrolled into an
encoder and a decoder (``DeepAutoencoder.from_rbms``) and the whole network
is trained on the cross-entropy of its reconstructions (for a Gaussian
first layer: squared error / 2 of the standardised inputs, the unrolled
net standardising them with the stack's statistics; ``train_squared_error``
and ``valid_squared_error`` are in the data's units). The paper used
conjugate gradients on batches of 1,000 (``optimizer: cg``, or ``lbfgs``;
see ``batch_methods``); Adam is the default here, SGD with momentum also
works. ``init: random`` trains the same architecture from random weights:
the no-pretraining baseline whose gap is the paper's point. Runs as a Ray
Train job with a checkpoint every epoch; several workers train data-parallel
through DDP. With ``stream`` on, the training and validation splits are read
from their Parquet files batch by batch (``components.data.stream``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from components.config import FinetuneParams, section_params
from components.data.stream import Batches, TensorBatches, as_batches, open_split, should_stream
from components.errors import DulError
from components.models import registry
from components.models.autoencoder import DeepAutoencoder
from components.models.autoencoder import reconstruction_losses
from components.models.standardise import Standardise
from components.models.stack import layer_from_state
from components.training import loop
from components.training.batch_methods import METHODS, minimize_batch
from components.training.selection import RetrievalScore


def unroll(stack: dict) -> DeepAutoencoder:
    """The deep autoencoder a saved RBM stack unrolls into, with the stack's
    input standardisation (``stack["standardise"]``) for a Gaussian first layer."""
    rbms = [layer_from_state(layer) for layer in stack["layers"]]
    if rbms[0].visible_type == "gaussian" and "standardise" not in stack:
        raise DulError("the stack's first layer has gaussian visible units but the stack holds no "
                       "standardisation statistics (mean, std per feature); run pretrain again")
    return DeepAutoencoder.from_rbms(rbms, stack.get("standardise"))


def initial_model(stack: dict, params: FinetuneParams | dict) -> DeepAutoencoder:
    """The unrolled stack, or (``init: random``) the same architecture with
    PyTorch's default initialisation, seeded by ``finetune.seed``."""
    params = section_params("finetune", params)
    net = unroll(stack)
    if params.init == "random":
        torch.manual_seed(loop.seed_for(params.seed, 0xA11))
        fresh = DeepAutoencoder(net.sizes, net.code_units, net.input_units)
        fresh.standardise = net.standardise  # the same inputs, whatever the weights
        return fresh
    return net


def make_optimizer(model: torch.nn.Module, params: FinetuneParams | dict) -> torch.optim.Optimizer | None:
    """Adam or SGD; None for the batch methods, which build theirs per batch."""
    params = section_params("finetune", params)
    if params.optimizer in METHODS:
        return None
    if params.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum)
    return torch.optim.Adam(model.parameters(), lr=params.lr)


def train_epoch(model, optimizer, data: Batches | torch.Tensor, *, batch_size: int | None = None,
                n_batches: int | None = None, generator: torch.Generator, method: str | None = None,
                line_searches: int = 3, world_size: int = 1, input_units: str = "bernoulli",
                code_noise: float = 0.0, code_size: int = 0, standardise: Standardise | None = None) -> dict[str, float]:
    """One pass of minibatch backprop over ``data``, a ``Batches`` (or a tensor
    (N, D) with ``batch_size`` and ``n_batches``); ``model`` maps (B, D) to output logits.

    With ``method`` (cg | lbfgs) each batch is minimised by ``line_searches``
    iterations of it instead of one ``optimizer`` step; the reported losses
    are then those at the start of each batch's minimisation. ``code_noise``
    > 0 adds N(0, code_noise^2) noise (B, code_size) to the code layer's
    inputs, drawn from the global torch generator. ``standardise`` (gaussian
    inputs, the net's own): the logits fit x standardised, the loss is in
    standardised units and the squared error in the data's."""
    batches = as_batches(data, batch_size, n_batches)
    totals = torch.zeros(2, device=batches.device)
    for x in batches.epoch(generator):  # (B, D)
        noise = code_noise * torch.randn(len(x), code_size, device=x.device) if code_noise > 0 else None
        target, std = (x, None) if standardise is None else (standardise(x), standardise.std)
        if method is None:
            losses = reconstruction_losses(model(x, noise), target, input_units, std)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
        else:
            with torch.no_grad():
                losses = reconstruction_losses(model(x, noise), target, input_units, std)
            minimize_batch(model, x, method, line_searches, world_size, input_units, noise, target)
        totals += torch.stack([losses["loss"].detach(), losses["squared_error"]])
    loss, squared_error = (totals / batches.n_batches).tolist()
    return {"train_loss": loss, "train_squared_error": squared_error}


def neighbour_epoch(model: DeepAutoencoder, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                    targets: torch.Tensor, *, batch_size: int, generator: torch.Generator, code_noise: float,
                    weight: float = 10.0, scale: float = 2.0, word_dropout: float = 0.3) -> dict[str, float]:
    """One pass of fine-tuning on the reconstruction loss plus neighbourhood targets.

    ``targets`` (N, code_size) are unit-variance coordinates that keep each
    training document near its neighbours (``components.retrieval.spectral``);
    the code layer's inputs are pulled towards ``scale`` times them with
    ``weight`` * squared error (summed over code units, averaged over the
    batch), next to the usual reconstruction through noisy codes
    (N(0, code_noise^2) on the code layer's inputs). ``word_dropout`` drops each
    input count with that probability in the encoder's input only (the
    reconstruction's target keeps them): the net must find a document's
    neighbourhood from part of its words, so it does not memorise the
    training documents' targets."""
    if targets.shape != (len(data), model.code_size):
        raise DulError(f"neighbourhood targets are {tuple(targets.shape)}, the data and codes need "
                       f"({len(data)}, {model.code_size})")
    totals = torch.zeros(3, device=data.device)
    order = torch.randperm(len(data), generator=generator)
    n_batches = 0
    for batch in order.split(batch_size):
        x = data[batch]
        kept = x if word_dropout <= 0 else x * (torch.rand(x.shape, generator=generator) >= word_dropout).to(x.device)
        inputs = model.code_inputs(kept)  # (B, code_size)
        noisy = inputs + code_noise * torch.randn(inputs.shape, generator=generator).to(inputs.device)
        codes = noisy if model.code_units == "linear" else torch.sigmoid(noisy)
        losses = reconstruction_losses(model.decode_logits(codes), model.target(x), model.input_units)
        neighbours = (inputs - scale * targets[batch]).pow(2).sum(dim=1).mean()
        loss = losses["loss"] + weight * neighbours
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += torch.stack([losses["loss"].detach(), losses["squared_error"], neighbours.detach()])
        n_batches += 1
    loss, squared_error_, neighbours = (totals / max(n_batches, 1)).tolist()
    return {"train_loss": loss, "train_squared_error": squared_error_, "train_neighbour_error": neighbours}


@torch.no_grad()
def squared_error(model: DeepAutoencoder, data: Batches | torch.Tensor, batch_size: int = 1000) -> float:
    """Mean over items of the squared reconstruction error summed over the inputs;
    ``data`` (N, D), or a ``Batches`` read in order ``batch_size`` rows at a time."""
    total, count = 0.0, 0
    for x in data.split(batch_size) if isinstance(data, torch.Tensor) else data.sequential(batch_size):
        total += (model.reconstruct(x) - x).pow(2).sum().item()
        count += len(x)
    return total / max(count, 1)


class FinetuneUnit:
    """Fine-tuning in progress: the net (DDP-wrapped for several workers), its
    optimizer, the data, and with ``keep: best_precision`` the best epoch so far
    (epoch 0: the net before fine-tuning)."""

    def __init__(self, net: DeepAutoencoder, params: FinetuneParams, data: Batches, valid: Batches,
                 score: RetrievalScore | None, session: loop.Session):
        self.net, self.params, self.data, self.valid, self.score = net, params, data, valid, score
        self.world = session.world
        self.model = _ddp(net, session.device) if session.world > 1 else net
        self.optimizer = make_optimizer(self.model, params)
        self.method = params.optimizer if params.optimizer in METHODS else None
        self.targets = neighbourhood_targets(net, params, data)
        self.best = None
        if score is not None:
            pretrained = score(net.eval())
            self.best = {"epoch": 0, "precision_at_100": pretrained, "pretrained_precision_at_100": pretrained,
                         "valid_squared_error": squared_error(net, valid), "model": _cpu_state(net)}
        self.epoch = 0

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        self.epoch = epoch
        self.net.train()
        if self.targets is not None:
            return neighbour_epoch(self.net, self.optimizer, self.data.data, self.targets,
                                   batch_size=self.params.batch_size, generator=generator,
                                   code_noise=self.params.code_noise, weight=self.params.neighbour_weight)
        return train_epoch(self.model, self.optimizer, self.data, generator=generator, method=self.method,
                           line_searches=self.params.line_searches, world_size=self.world,
                           input_units=self.net.input_units, code_noise=self.params.code_noise,
                           code_size=self.net.code_size, standardise=self.net.standardise)

    def evaluate(self) -> dict[str, float]:
        """Every worker measures the whole validation split (and the retrieval score)."""
        self.net.eval()
        stats = {"valid_squared_error": squared_error(self.net, self.valid)}
        if self.score is not None:
            stats["valid_precision_at_100"] = self.score(self.net)
            if stats["valid_precision_at_100"] > self.best["precision_at_100"]:
                self.best = {"epoch": self.epoch + 1, "precision_at_100": stats["valid_precision_at_100"],
                             "pretrained_precision_at_100": self.best["pretrained_precision_at_100"],
                             "valid_squared_error": stats["valid_squared_error"], "model": _cpu_state(self.net)}
        return stats

    def state_dict(self) -> dict:
        return {"model": _cpu_state(self.net), "best": self.best,
                "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.best = state["best"]

    def result(self) -> dict:
        return {"model": _cpu_state(self.net), "best": self.best, "params": self.net.hyperparameters}


def neighbourhood_targets(net: DeepAutoencoder, params: FinetuneParams, data: Batches) -> torch.Tensor | None:
    """With ``finetune.neighbours``: the training documents' spectral targets (N, code_size), else None."""
    if not params.neighbours:
        return None
    if net.input_units not in ("poisson", "softmax"):
        raise DulError(f"finetune.neighbours builds a TF-IDF neighbour graph of word counts, but this stack's "
                       f"inputs are {net.input_units}; set finetune.neighbours: 0")
    if not isinstance(data, TensorBatches):
        raise DulError("finetune.neighbours needs the training split in memory, but it is streamed; "
                       "set finetune.stream: false")
    from components.retrieval.spectral import spectral_targets

    if params.neighbour_dimensions > net.code_size:
        raise DulError(f"finetune.neighbour_dimensions ({params.neighbour_dimensions}) is more than the code's "
                       f"{net.code_size} bits; give at most {net.code_size}, or 0 (one eigenvector per bit)")
    counts = data.data.cpu().numpy()
    return torch.from_numpy(spectral_targets(counts, net.code_size, params.neighbours, params.seed,
                                             params.neighbour_dimensions)).to(data.device)


def _ddp(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Data-parallel gradients: DDP averages them across the workers in backward."""
    ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def finetune_phase(config: dict) -> loop.Phase:
    """Fine-tuning as the loop's one phase, seeded by ``finetune.seed``."""
    params: FinetuneParams = config["params"]

    def build(done: list[dict], session: loop.Session) -> FinetuneUnit:
        streaming = should_stream(params.stream, config["data_dir"], ["train", "validation"])
        data = open_split(config["data_dir"], "train", batch_size=params.batch_size, streaming=streaming,
                          rank=session.rank, world=session.world, device=session.device, stage="finetune")
        valid = open_split(config["data_dir"], "validation", batch_size=params.batch_size, streaming=streaming,
                           device=session.device)  # every worker measures the whole split
        net = initial_model(registry.read_checkpoint(config["stack_path"]), params)
        score = RetrievalScore(config["data_dir"]) if params.keep == "best_precision" else None
        return FinetuneUnit(net.to(session.device), params, data, valid, score, session)

    def describe(unit: FinetuneUnit, epoch: int, stats: dict) -> str:
        return (f"finetune epoch {epoch + 1}/{params.epochs}  loss {stats['train_loss']:.3f}  "
                f"train_sq_err {stats['train_squared_error']:.3f}  valid_sq_err {stats['valid_squared_error']:.3f}")

    return loop.Phase(name="", epochs=params.epochs, build=build, seed_parts=(params.seed,),
                      evaluate=FinetuneUnit.evaluate, describe=describe, fix="lower finetune.lr",
                      parameters=lambda unit: unit.net.parameters())


def finetune_loop(config: dict) -> None:
    """Ray Train worker: fine-tuning through the loop."""
    session = loop.worker_session(config)  # first: on a cluster it fetches the inputs the config points to
    loop.train([finetune_phase(config)], session, stage="finetune")


def _cpu_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def finetune_autoencoder(data_dir: str | Path, stack_path: str | Path, params: FinetuneParams, key: str) -> dict:
    """Fine-tune as a Ray Train job; return ``{"checkpoint": ..., "history": [...], "kept": ...}``
    where ``checkpoint`` is ``DeepAutoencoder.to_checkpoint()`` of the result: the last
    epoch's net, or with ``keep: best_precision`` the best one, described by ``kept``
    (``epoch``, 0 = before fine-tuning; ``precision_at_100``; ``valid_squared_error``)."""
    from components.training import runtime

    config = {"data_dir": str(Path(data_dir).resolve()), "stack_path": str(Path(stack_path).resolve()),
              "params": params}
    state = runtime.fit(finetune_loop, config, name=f"finetune-{key}", params=params,
                        total_steps=params.epochs, desc="finetune")
    return finetune_result(state)


def finetune_result(state: dict) -> dict:
    """The loop's final state as the stage's result (see ``finetune_autoencoder``)."""
    (done,) = state["done"]
    best = done["best"]  # finetune.keep: best_precision
    kept = {k: v for k, v in best.items() if k != "model"} if best else None
    return {"checkpoint": {"family": DeepAutoencoder.family, "params": done["params"],
                           "state_dict": best["model"] if best else done["model"]},
            "history": state["history"], "kept": kept}
