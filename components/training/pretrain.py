"""Greedy layer-wise pretraining of an RBM stack (a deep belief net).

Hinton, Osindero & Teh (2006); Hinton & Salakhutdinov (2006). Layer i is an
RBM trained by CD-k on the hidden probabilities of layer i - 1; the top layer
may have linear code units. Runs as one Ray Train job over all layers, with a
checkpoint after every epoch, so a crash (or a killed stage) resumes from the
last finished epoch instead of starting over. With several workers each takes
a shard of the data and the CD gradients are all-reduced every step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from components.config import PretrainParams, as_dict
from components.data import read_split
from components.errors import DulError
from components.models import RBM_BY_HIDDEN, BernoulliRBM
from components.models.rbm import check_visible
from components.training import runtime
from components.training.progress import publish


def build_layer(index: int, n_visible: int, params: dict) -> BernoulliRBM:
    """Layer ``index`` of the stack: binary hidden units, or the code type on top."""
    top = index == len(params["hidden"]) - 1
    hidden_type = params["code_units"] if top else "binary"
    return RBM_BY_HIDDEN[hidden_type](n_visible, params["hidden"][index], init_std=params["init_std"])


def make_optimizer(rbm: BernoulliRBM, index: int, params: dict) -> torch.optim.SGD:
    """SGD with momentum; weight cost on W only; the linear code layer's own rate."""
    top = index == len(params["hidden"]) - 1
    lr = params["lr_code"] if top and params["code_units"] == "linear" else params["lr"]
    groups = [
        {"params": [rbm.W], "weight_decay": params["weight_decay"]},
        {"params": [rbm.b_v, rbm.b_h], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=params["momentum_initial"])


def train_epoch(rbm: BernoulliRBM, optimizer, data: torch.Tensor, *, batch_size: int, n_batches: int,
                cd_k: int, generator: torch.Generator, world_size: int = 1,
                dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """One pass of CD-k over ``data`` (N, D); returns the mean squared reconstruction
    error per item. With several workers, each step averages the gradients of
    all of them first (data-parallel CD: the all-reduce of the CD statistics).
    ``dtype`` is the precision of the matrix products' inputs (see cd_gradients)."""
    order = torch.randperm(len(data), generator=generator)
    squared_error = torch.zeros((), device=data.device)
    for b in range(n_batches):
        v = data[order[b * batch_size:(b + 1) * batch_size]]  # (B, D)
        v_neg = rbm.cd_gradients(v, cd_k, dtype)  # (B, D); sets .grad
        if world_size > 1:
            for parameter in rbm.parameters():
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad.div_(world_size)
        optimizer.step()
        squared_error += (v - v_neg).pow(2).sum()
    return {"recon_error": squared_error.item() / (n_batches * batch_size)}


def layer_state(rbm: BernoulliRBM) -> dict:
    return {"hidden_type": rbm.hidden_type, **{k: v.detach().cpu().clone() for k, v in rbm.state_dict().items()}}


def rbm_from_state(state: dict) -> BernoulliRBM:
    rbm = RBM_BY_HIDDEN[state["hidden_type"]](*state["W"].shape)
    rbm.load_state_dict({k: state[k] for k in ("W", "b_v", "b_h")})
    return rbm


def pretrain_loop(config: dict) -> None:
    """Ray Train worker: train every layer not yet in the checkpoint."""
    rank, world, device = runtime.worker_setup(config)
    params = config["params"]
    X_all, _ = read_split(config["data_dir"], "train")
    data, n_batches = runtime.shard(X_all, params["batch_size"], "pretrain", rank, world, device)
    check_visible(data, layer="pretrain layer 1")
    state = runtime.load_checkpoint() or {"layers": [], "history": [], "current": None, "next_epoch": 0}
    stack = [rbm_from_state(s).to(device) for s in state["layers"]]
    with torch.no_grad():
        for rbm in stack:
            data = rbm.h_mean(data)
    if rank == 0:
        publish(config["progress"], step=len(state["history"]))
    ran = False
    for index in range(len(stack), len(params["hidden"])):
        rbm = _train_layer(index, data, state, params, config, rank, world, device, n_batches)
        ran = True
        with torch.no_grad():
            data = rbm.h_mean(data)
    if not ran:  # relaunched after completion: hand the finished state back
        runtime.save_checkpoint(state, state["history"][-1], rank)


def _train_layer(index, data, state, params, config, rank, world, device, n_batches) -> BernoulliRBM:
    torch.manual_seed(runtime.seed_for(params["seed"], index))
    rbm = build_layer(index, data.shape[1], params).to(device)
    if state["current"] is not None:
        rbm.load_state_dict(state["current"])
    optimizer = make_optimizer(rbm, index, params)
    if state["current"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    n_layers, epochs = len(params["hidden"]), params["epochs"]
    for epoch in range(state["next_epoch"], epochs):
        momentum = params["momentum_initial"] if epoch < params["momentum_switch_epoch"] else params["momentum_final"]
        for group in optimizer.param_groups:
            group["momentum"] = momentum
        torch.manual_seed(runtime.seed_for(params["seed"], index, epoch, rank))
        generator = torch.Generator().manual_seed(runtime.seed_for(params["seed"], index, epoch, rank, 1))
        stats = train_epoch(rbm, optimizer, data, batch_size=params["batch_size"], n_batches=n_batches,
                            cd_k=params["cd_k"], generator=generator, world_size=world,
                            dtype=getattr(torch, params["matmul_dtype"]))
        stats = runtime.all_reduce_mean(stats, world, device)
        _check_finite(rbm, stats, index, epoch)
        row = {"layer": index + 1, "epoch": epoch + 1, **stats}
        state["history"].append(row)
        if epoch == epochs - 1:
            state.update(layers=state["layers"] + [layer_state(rbm)], current=None, optimizer=None, next_epoch=0)
        else:
            state.update(current=layer_state(rbm), optimizer=optimizer.state_dict(), next_epoch=epoch + 1)
            state["current"].pop("hidden_type")
        runtime.save_checkpoint(state, row, rank)
        if rank == 0:
            line = f"layer {index + 1}/{n_layers} ({rbm.n_visible}->{rbm.n_hidden} {rbm.hidden_type}) " \
                   f"epoch {epoch + 1}/{epochs}  recon_error {stats['recon_error']:.4f}"
            publish(config["progress"], step=len(state["history"]), line=line,
                    postfix={"layer": index + 1, "recon": f"{stats['recon_error']:.3f}"})
    return rbm


def _check_finite(rbm: BernoulliRBM, stats: dict, index: int, epoch: int) -> None:
    finite = math.isfinite(stats["recon_error"]) and all(torch.isfinite(p).all() for p in rbm.parameters())
    if not finite:
        raise DulError(f"pretrain: training diverged (NaN/inf) in layer {index + 1} at epoch {epoch + 1}; "
                       "the last good checkpoint is kept; lower pretrain.lr or pretrain.lr_code")


def pretrain_stack(data_dir: str | Path, params: PretrainParams, key: str) -> dict:
    """Train the stack as a Ray Train job; return ``{"layers": [...], "history": [...]}``.

    ``key`` identifies the work (config and data): the same key resumes the same run.
    """
    config = {"data_dir": os.path.abspath(data_dir), "params": as_dict(params)}
    state = runtime.fit(pretrain_loop, config, name=f"pretrain-{key}", params=params,
                        total_steps=len(params.hidden) * params.epochs, desc="pretrain")
    return {"layers": state["layers"], "history": state["history"]}
