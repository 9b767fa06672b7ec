"""Greedy layer-wise pretraining of an RBM stack (a deep belief net) or of
stacked (denoising) autoencoders.

Hinton, Osindero & Teh (2006); Hinton & Salakhutdinov (2006). Layer i is an
RBM trained by CD-k (or persistent CD) on the hidden probabilities of layer
i - 1; the first layer's visible units match the data (Bernoulli for pixel
intensities, constrained Poisson or replicated softmax for word counts,
Gaussian for real values: standardised first with the training split's
per-feature mean and std, computed in one streamed pass) and the top layer
may have linear code units. With ``layer_model: autoencoder``
each layer is instead a tied-weight autoencoder (Bengio et al. 2007; with
``noise`` > 0 a denoising one, Vincent et al. 2008), trained by the same
routine through the shared ``layer_step``. Runs as one Ray Train job over
all layers, with a checkpoint after every epoch, so a crash (or a killed
stage) resumes from the last finished epoch instead of starting over. With
several workers each takes a shard of the data and the gradients are
all-reduced every step. With ``stream`` on (``components.data.stream``) the
split is read from its Parquet file batch by batch and layer k > 1 gets
its inputs by passing each batch up through the trained layers below, so
no matrix of the whole split is ever held.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from components.config import PretrainParams, as_dict
from components.data import read_card
from components.data.stream import Batches, as_batches, open_split, should_stream
from components.errors import DulError
from components.models import AutoencoderLayer, BernoulliRBM, make_rbm
from components.models.regularizers import add_sparsity_gradient
from components.models.stack import layer_from_state as rbm_from_state
from components.models.stack import layer_state
from components.models.standardise import Standardise, feature_statistics
from components.training import runtime
from components.training.progress import publish

STATISTICS_ROWS = 4096  # rows per chunk of the standardisation pass


def build_layer(index: int, n_visible: int, params: dict) -> BernoulliRBM | AutoencoderLayer:
    """Layer ``index`` of the stack: binary hidden units, or the code type on top;
    the data's visible type at the bottom, Bernoulli above."""
    top = index == len(params["hidden"]) - 1
    hidden_type = params["code_units"] if top else "binary"
    size, init_std = params["hidden"][index], params["init_std"]
    if params.get("layer_model", "rbm") == "autoencoder":
        return AutoencoderLayer(n_visible, size, init_std=init_std, noise=params.get("noise", 0.0),
                                hidden_type=hidden_type)
    visible = params.get("visible_units", "bernoulli") if index == 0 else "bernoulli"
    return make_rbm(visible, hidden_type, n_visible, size, init_std=init_std)


def layer_lr(index: int, params: dict) -> float:
    """``lr_layers[index]`` if given, else the linear code layer's ``lr_code`` or ``lr``."""
    if params.get("lr_layers"):
        return params["lr_layers"][index]
    top = index == len(params["hidden"]) - 1
    return params["lr_code"] if top and params["code_units"] == "linear" else params["lr"]


def make_optimizer(rbm: BernoulliRBM, index: int, params: dict) -> torch.optim.SGD:
    """SGD with momentum; weight cost on W only; each layer's own rate (``layer_lr``)."""
    lr = layer_lr(index, params)
    groups = [
        {"params": [rbm.W], "weight_decay": params["weight_decay"]},
        {"params": [rbm.b_v, rbm.b_h], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=params["momentum_initial"])


def train_epoch(rbm: BernoulliRBM, optimizer, data: Batches | torch.Tensor, *, batch_size: int | None = None,
                n_batches: int | None = None, cd_k: int, generator: torch.Generator, world_size: int = 1,
                dtype: torch.dtype = torch.float32, chain: torch.Tensor | None = None,
                sparsity: dict | None = None) -> dict[str, float]:
    """One pass of ``layer_step`` (CD-k for an RBM) over ``data``, a ``Batches``
    (or a tensor (N, D) with ``batch_size`` and ``n_batches``); returns the
    mean squared reconstruction error per item. With several workers, each
    step averages the gradients of all of them first (data-parallel CD: the
    all-reduce of the CD statistics). ``dtype`` is the precision of the matrix
    products' inputs (see cd_gradients). ``chain`` (B, D): persistent CD's
    fantasy particles, updated in place; the error is then measured on mean-field
    reconstructions. ``sparsity``: {"target", "cost", "q"} for the sparsity
    penalty; its running estimate "q" is updated in place."""
    batches = as_batches(data, batch_size, n_batches)
    squared_error = torch.zeros((), device=batches.device)
    fused = FusedSGD.of(rbm, optimizer) if world_size == 1 and sparsity is None else None
    for v in batches.epoch(generator):  # (B, D)
        v_neg = (fused or rbm).layer_step(v, cd_k, dtype, chain)  # (B, D); sets .grad (fused: the momenta)
        if sparsity is not None:
            sparsity["q"] = add_sparsity_gradient(rbm, rbm.last_h_pos, sparsity["q"], sparsity["target"],
                                                  sparsity["cost"])
        if chain is not None:
            with torch.no_grad():
                v_neg = rbm.v_mean(rbm.last_h_pos, rbm.context(v))
        if world_size > 1:
            for parameter in rbm.parameters():
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad.div_(world_size)
        (fused or optimizer).step()
        squared_error += torch.nn.functional.mse_loss(v_neg, v, reduction="sum")  # sum of (v - v_neg)^2
    return {"recon_error": squared_error.item() / (batches.n_batches * batches.batch_size)}


def set_momentum(optimizer: torch.optim.SGD, epoch: int, params: dict) -> None:
    """The recipe's schedule: ``momentum_initial`` before ``momentum_switch_epoch``, then ``momentum_final``."""
    momentum = params["momentum_initial"] if epoch < params["momentum_switch_epoch"] else params["momentum_final"]
    for group in optimizer.param_groups:
        group["momentum"] = momentum


def train_stack_in_memory(X: torch.Tensor, params: dict, epochs: int, *, seed: int = 0, below: list | None = None,
                          on_epoch=None) -> list:
    """Greedy layer-wise CD training in this process, no Ray and no checkpoints:
    for benchmarks on data held in memory (the pipeline's stage is ``pretrain_stack``).

    ``params`` as the pretrain section (``hidden``, ``code_units``, the rates,
    momentum schedule and weight cost; ``cd_k`` defaults to 1). ``below``:
    trained layers the stack starts on (layers ``len(below)`` and up of
    ``hidden`` are trained, on their hidden means). ``on_epoch(layer, stats)``
    is called after every epoch. Returns all layers, bottom to top."""
    layers, data = list(below or []), X
    with torch.no_grad():
        for layer in layers:
            data = layer.h_mean(data)
    for index in range(len(layers), len(params["hidden"])):
        torch.manual_seed(seed + index)
        rbm = build_layer(index, data.shape[1], params)
        optimizer = make_optimizer(rbm, index, params)
        for epoch in range(epochs):
            set_momentum(optimizer, epoch, params)
            stats = train_epoch(rbm, optimizer, data, batch_size=params.get("batch_size", 100),
                                n_batches=len(data) // params.get("batch_size", 100), cd_k=params.get("cd_k", 1),
                                generator=torch.Generator().manual_seed(seed * 1000 + index * 100 + epoch))
            _check_finite(rbm, stats, index, epoch)
            if on_epoch is not None:
                on_epoch(index, stats)
        layers.append(rbm)
        with torch.no_grad():
            data = rbm.h_mean(data)
    return layers


class FusedSGD:
    """``rbm.layer_step`` and ``optimizer.step()`` of plain SGD (momentum, weight
    decay, no dampening or Nesterov) in fewer passes over W: SGD's

        g = grad + weight_decay * p;  buf = momentum * buf + g  (buf = g at first);  p -= lr * buf

    with the CD statistics' product accumulating straight into buf (its beta
    the momentum; ``cd_gradients(into=...)``), so no gradient tensor is made
    or read. The same rule and the same momentum buffers, kept in
    ``optimizer.state`` (checkpoints, and ``optimizer.step()`` after, carry on
    from them); only the rounding of the sums may differ in the last bit."""

    def __init__(self, rbm: BernoulliRBM, optimizer: torch.optim.SGD, momentum: float, settings: list):
        self.rbm, self.optimizer, self.momentum, self.settings = rbm, optimizer, momentum, settings
        self.parameters = (rbm.W, rbm.b_v, rbm.b_h)
        self.buffers: list[torch.Tensor] | None = None

    @classmethod
    def of(cls, rbm, optimizer) -> FusedSGD | None:
        """The fused step for ``optimizer`` if it is plain SGD on exactly W, b_v and b_h
        of an RBM, with one momentum for all; None for anything else."""
        if type(optimizer) is not torch.optim.SGD or not isinstance(rbm, BernoulliRBM):
            return None
        settings, momenta = {}, set()
        for group in optimizer.param_groups:
            if group["dampening"] != 0 or group["nesterov"] or group["maximize"] or group.get("differentiable") \
                    or not all(isinstance(group[key], (int, float)) for key in ("lr", "momentum", "weight_decay")):
                return None
            momenta.add(float(group["momentum"]))
            settings.update({id(p): (float(group["lr"]), float(group["weight_decay"])) for p in group["params"]})
        parameters = (rbm.W, rbm.b_v, rbm.b_h)
        if len(momenta) != 1 or len(settings) != 3 or any(id(p) not in settings for p in parameters):
            return None
        return cls(rbm, optimizer, momenta.pop(), [settings[id(p)] for p in parameters])

    def layer_step(self, v: torch.Tensor, k: int, dtype: torch.dtype, chain: torch.Tensor | None) -> torch.Tensor:
        """``rbm.cd_gradients`` into the momentum buffers, buf = momentum * buf + grad."""
        buffers = [self.optimizer.state[p].get("momentum_buffer") for p in self.parameters]
        first = self.momentum == 0 or any(b is None for b in buffers)
        if first:
            buffers = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in self.parameters]
        self.buffers = buffers
        return self.rbm.cd_gradients(v, k, dtype, chain, into=buffers, beta=0.0 if first else self.momentum)

    @torch.no_grad()
    def step(self) -> None:
        """buf += weight_decay * p;  p -= lr * buf."""
        for p, buf, (lr, weight_decay) in zip(self.parameters, self.buffers, self.settings):
            if weight_decay:
                buf.add_(p, alpha=weight_decay)
            p.add_(buf, alpha=-lr)
            if self.momentum != 0:
                self.optimizer.state[p]["momentum_buffer"] = buf


def pretrain_loop(config: dict) -> None:
    """Ray Train worker: train every layer not yet in the checkpoint."""
    rank, world, device = runtime.worker_setup(config)
    params = config["params"]
    streaming = should_stream(params.get("stream", False), config["data_dir"], ["train"])
    batches = open_split(config["data_dir"], "train", batch_size=params["batch_size"], streaming=streaming,
                         rank=rank, world=world, device=device, stage="pretrain")
    if config.get("standardise") is not None:  # gaussian visibles: the driver's statistics, every worker alike
        batches = batches.through(Standardise.from_statistics(config["standardise"]).to(device))
    first_layer = build_layer(0, batches.first().shape[1], params)
    batches = batches.through(_checked(first_layer, "pretrain layer 1"))  # streamed: every batch, as drawn
    state = runtime.load_checkpoint() or {"layers": [], "history": [], "current": None, "next_epoch": 0}
    stack = [rbm_from_state(s).to(device) for s in state["layers"]]
    for rbm in stack:
        batches = batches.through(rbm.h_mean)
    if rank == 0:
        publish(config["progress"], step=len(state["history"]))
    ran = False
    for index in range(len(stack), len(params["hidden"])):
        rbm = _train_layer(index, batches, state, params, config, rank, world, device)
        ran = True
        batches = batches.through(rbm.h_mean)  # the next layer's data: this one's hidden probabilities
    if not ran:  # relaunched after completion: hand the finished state back
        runtime.save_checkpoint(state, state["history"][-1], rank)


def _checked(layer, name: str):
    def check(v: torch.Tensor) -> torch.Tensor:
        layer.check_data(v, layer=name)
        return v
    return check


def _train_layer(index, batches: Batches, state, params, config, rank, world, device) -> BernoulliRBM:
    torch.manual_seed(runtime.seed_for(params["seed"], index))
    n_visible = params["hidden"][index - 1] if index else batches.first().shape[1]
    rbm = build_layer(index, n_visible, params).to(device)
    if state["current"] is not None:
        rbm.load_state_dict(state["current"])
    optimizer = make_optimizer(rbm, index, params)
    if state["current"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    n_layers, epochs = len(params["hidden"]), params["epochs"]
    chain = None
    if params.get("persistent"):  # the chains start from the first batch (a resumed run restarts them there)
        first = batches.first()
        chain = rbm.v_sample(first.clone(), rbm.context(first))
    sparsity = {"target": params["sparsity_target"], "cost": params["sparsity_cost"], "q": None} \
        if params.get("sparsity_cost", 0) > 0 and not isinstance(rbm, AutoencoderLayer) else None
    for epoch in range(state["next_epoch"], epochs):
        set_momentum(optimizer, epoch, params)
        torch.manual_seed(runtime.seed_for(params["seed"], index, epoch, rank))
        generator = torch.Generator().manual_seed(runtime.seed_for(params["seed"], index, epoch, rank, 1))
        stats = train_epoch(rbm, optimizer, batches, cd_k=params["cd_k"], generator=generator, world_size=world,
                            dtype=getattr(torch, params["matmul_dtype"]), chain=chain, sparsity=sparsity)
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
            line = f"layer {index + 1}/{n_layers} ({rbm.n_visible} {rbm.visible_type}->{rbm.n_hidden} {rbm.hidden_type}) " \
                   f"epoch {epoch + 1}/{epochs}  recon_error {stats['recon_error']:.4f}"
            publish(config["progress"], step=len(state["history"]), line=line,
                    postfix={"layer": index + 1, "recon": f"{stats['recon_error']:.3f}"})
    return rbm


def _check_finite(rbm: BernoulliRBM, stats: dict, index: int, epoch: int) -> None:
    finite = math.isfinite(stats["recon_error"]) and all(torch.isfinite(p).all() for p in rbm.parameters())
    if not finite:
        fix = "lower pretrain.lr or pretrain.lr_code"
        if rbm.visible_type == "gaussian":  # unit-variance real inputs take rates ~100 times smaller (Hinton's guide)
            fix = "a Gaussian layer needs a small rate: set pretrain.lr_layers, one rate per layer, about 0.001 for layer 1"
        raise DulError(f"pretrain: training diverged (NaN/inf) in layer {index + 1} at epoch {epoch + 1}; "
                       f"the last good checkpoint is kept; {fix}")


def resolved(params: PretrainParams, card: dict) -> dict:
    """The params as a dict, ``visible_units: auto`` made concrete for the data:
    constrained Poisson for word counts (semantic hashing), Bernoulli for images."""
    values = as_dict(params)
    if values["visible_units"] == "auto":
        values["visible_units"] = "poisson" if card.get("kind") == "bow" else "bernoulli"
    if values["visible_units"] == "gaussian" and card.get("kind") == "bow":
        raise DulError(f"pretrain.visible_units: gaussian is for real-valued features (images), but "
                       f"{card.get('dataset', 'the data')} is word counts; set it to auto (constrained poisson), "
                       "poisson or softmax (replicated softmax)")
    return values


def input_statistics(data_dir: str | Path) -> dict[str, torch.Tensor]:
    """Per-feature mean and std (D,) of the training split, read in one streamed
    pass (memory: a row group), for the Gaussian first layer's standardisation."""
    split = open_split(data_dir, "train", batch_size=1, streaming=True)
    return feature_statistics(split.sequential(STATISTICS_ROWS), what=f"{data_dir}/train.parquet")


def pretrain_stack(data_dir: str | Path, params: PretrainParams, key: str) -> dict:
    """Train the stack as a Ray Train job; return ``{"layers": [...], "history": [...]}``,
    plus ``"standardise": {"mean", "std"}`` (D,) for a Gaussian first layer: its
    inputs are the training split standardised with them (``Standardise``).

    ``key`` identifies the work (config and data): the same key resumes the same run.
    """
    config = {"data_dir": os.path.abspath(data_dir), "params": resolved(params, read_card(data_dir))}
    gaussian = config["params"]["visible_units"] == "gaussian"
    config["standardise"] = input_statistics(data_dir) if gaussian else None
    state = runtime.fit(pretrain_loop, config, name=f"pretrain-{key}", params=params,
                        total_steps=len(params.hidden) * params.epochs, desc="pretrain")
    result = {"layers": state["layers"], "history": state["history"]}
    return result | ({"standardise": config["standardise"]} if gaussian else {})
