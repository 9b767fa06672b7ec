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

import math
import os
from pathlib import Path

import torch
from ray.train.torch import prepare_model

from components.config import FinetuneParams, as_dict
from components.data.stream import Batches, as_batches, open_split, should_stream
from components.errors import DulError
from components.models import DeepAutoencoder
from components.models.autoencoder import reconstruction_losses
from components.models.standardise import Standardise
from components.training import runtime
from components.training.batch_methods import METHODS, minimize_batch
from components.training.pretrain import rbm_from_state
from components.training.progress import publish
from components.training.selection import RetrievalScore


def unroll(stack: dict) -> DeepAutoencoder:
    """The deep autoencoder a saved RBM stack unrolls into, with the stack's
    input standardisation (``stack["standardise"]``) for a Gaussian first layer."""
    rbms = [rbm_from_state(layer) for layer in stack["layers"]]
    if rbms[0].visible_type == "gaussian" and "standardise" not in stack:
        raise DulError("the stack's first layer has gaussian visible units but the stack holds no "
                       "standardisation statistics (mean, std per feature); run pretrain again")
    return DeepAutoencoder.from_rbms(rbms, stack.get("standardise"))


def initial_model(stack: dict, params: dict) -> DeepAutoencoder:
    """The unrolled stack, or (``init: random``) the same architecture with
    PyTorch's default initialisation, seeded by ``params["seed"]``."""
    net = unroll(stack)
    if params["init"] == "random":
        torch.manual_seed(runtime.seed_for(params["seed"], 0xA11))
        fresh = DeepAutoencoder(net.sizes, net.code_units, net.input_units)
        fresh.standardise = net.standardise  # the same inputs, whatever the weights
        return fresh
    return net


def make_optimizer(model: torch.nn.Module, params: dict) -> torch.optim.Optimizer | None:
    """Adam or SGD; None for the batch methods, which build theirs per batch."""
    if params["optimizer"] in METHODS:
        return None
    if params["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"])
    return torch.optim.Adam(model.parameters(), lr=params["lr"])


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


@torch.no_grad()
def squared_error(model: DeepAutoencoder, data: Batches | torch.Tensor, batch_size: int = 1000) -> float:
    """Mean over items of the squared reconstruction error summed over the inputs;
    ``data`` (N, D), or a ``Batches`` read in order ``batch_size`` rows at a time."""
    total, count = 0.0, 0
    for x in data.split(batch_size) if isinstance(data, torch.Tensor) else data.sequential(batch_size):
        total += (model.reconstruct(x) - x).pow(2).sum().item()
        count += len(x)
    return total / max(count, 1)


def finetune_loop(config: dict) -> None:
    rank, world, device = runtime.worker_setup(config)
    params = config["params"]
    streaming = should_stream(params.get("stream", False), config["data_dir"], ["train", "validation"])
    data = open_split(config["data_dir"], "train", batch_size=params["batch_size"], streaming=streaming,
                      rank=rank, world=world, device=device, stage="finetune")
    valid = open_split(config["data_dir"], "validation", batch_size=params["batch_size"], streaming=streaming,
                       device=device)  # every worker measures the whole split
    net = initial_model(torch.load(config["stack_path"], weights_only=True), params).to(device)
    state = runtime.load_checkpoint() or {"history": [], "next_epoch": 0}
    if "model" in state:
        net.load_state_dict(state["model"])
    model = prepare_model(net) if world > 1 else net
    optimizer = make_optimizer(model, params)
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    method = params["optimizer"] if params["optimizer"] in METHODS else None
    if rank == 0:
        publish(config["progress"], step=len(state["history"]))
    start = state["next_epoch"]
    score = RetrievalScore(config["data_dir"]) if params.get("keep", "last") == "best_precision" else None
    if score is not None and "best" not in state:  # epoch 0: the net before any fine-tuning
        state["best"] = {"epoch": 0, "precision_at_100": score(net.eval()),
                         "valid_squared_error": squared_error(net, valid), "model": _cpu_state(net)}
    for epoch in range(start, params["epochs"]):
        torch.manual_seed(runtime.seed_for(params["seed"], epoch, rank))
        generator = torch.Generator().manual_seed(runtime.seed_for(params["seed"], epoch, rank, 1))
        net.train()
        stats = train_epoch(model, optimizer, data, generator=generator, method=method,
                            line_searches=params["line_searches"], world_size=world, input_units=net.input_units,
                            code_noise=params["code_noise"], code_size=net.code_size, standardise=net.standardise)
        stats = runtime.all_reduce_mean(stats, world, device)
        net.eval()
        stats["valid_squared_error"] = squared_error(net, valid)
        if not all(math.isfinite(v) for v in stats.values()):
            raise DulError(f"finetune: training diverged (NaN/inf) at epoch {epoch + 1}; "
                           "the last good checkpoint is kept; lower finetune.lr")
        best = state.get("best")
        if score is not None:
            stats["valid_precision_at_100"] = score(net)
            if stats["valid_precision_at_100"] > best["precision_at_100"]:
                best = {"epoch": epoch + 1, "precision_at_100": stats["valid_precision_at_100"],
                        "valid_squared_error": stats["valid_squared_error"], "model": _cpu_state(net)}
        row = {"epoch": epoch + 1, **stats}
        state = {"history": state["history"] + [row], "next_epoch": epoch + 1, "model": _cpu_state(net),
                 "optimizer": optimizer.state_dict() if optimizer else None, "config": net.to_checkpoint()["config"]}
        if best is not None:
            state["best"] = best
        runtime.save_checkpoint(state, row, rank)
        if rank == 0:
            line = (f"finetune epoch {epoch + 1}/{params['epochs']}  loss {stats['train_loss']:.3f}  "
                    f"train_sq_err {stats['train_squared_error']:.3f}  valid_sq_err {stats['valid_squared_error']:.3f}")
            publish(config["progress"], step=epoch + 1, line=line,
                    postfix={"valid_sq_err": f"{stats['valid_squared_error']:.3f}"})
    if start == params["epochs"]:  # relaunched after completion: hand the finished state back
        runtime.save_checkpoint(state, state["history"][-1], rank)


def _cpu_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def finetune_autoencoder(data_dir: str | Path, stack_path: str | Path, params: FinetuneParams, key: str) -> dict:
    """Fine-tune as a Ray Train job; return ``{"checkpoint": ..., "history": [...], "kept": ...}``
    where ``checkpoint`` is ``DeepAutoencoder.to_checkpoint()`` of the result: the last
    epoch's net, or with ``keep: best_precision`` the best one, described by ``kept``
    (``epoch``, 0 = before fine-tuning; ``precision_at_100``; ``valid_squared_error``)."""
    config = {"data_dir": os.path.abspath(data_dir), "stack_path": os.path.abspath(stack_path),
              "params": as_dict(params)}
    state = runtime.fit(finetune_loop, config, name=f"finetune-{key}", params=params,
                        total_steps=params.epochs, desc="finetune")
    best = state.get("best")  # finetune.keep: best_precision
    kept = {k: v for k, v in best.items() if k != "model"} if best else None
    return {"checkpoint": {"config": state["config"], "state_dict": best["model"] if best else state["model"]},
            "history": state["history"], "kept": kept}
