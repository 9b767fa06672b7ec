"""Greedy layer-wise pretraining of an RBM stack (a deep belief net) or of
stacked (denoising) autoencoders, as phases of the one training loop.

Hinton, Osindero & Teh (2006); Hinton & Salakhutdinov (2006). Layer i is an
RBM trained by CD-k (or persistent CD) on the hidden probabilities of layer
i - 1; the first layer's visible units match the data (Bernoulli for pixel
intensities, constrained Poisson or replicated softmax for word counts,
Gaussian for real values: standardised first with the training split's
per-feature mean and std, computed in one streamed pass) and the top layer
may have linear code units. With ``layer_model: autoencoder`` each layer is
instead a tied-weight autoencoder (Bengio et al. 2007; with ``noise`` > 0 a
denoising one, Vincent et al. 2008), trained by the same routine through the
shared ``layer_step``.

Each layer is one ``loop.Phase``: the loop seeds, checkpoints every epoch,
resumes, checks for divergence and reports progress (components/training/loop.py),
on Ray (``pretrain_stack``, a Ray Train job) or in this process
(``train_stack_in_memory``). With several workers each takes a shard of the
data and the gradients are all-reduced every step. With ``stream`` on
(``components.data.stream``) layer k > 1 gets its inputs by passing each
streamed batch up through the trained layers below.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from components.config import PretrainParams, section_params
from components.data import read_card
from components.data.stream import Batches, TensorBatches, as_batches, open_split, should_stream
from components.errors import DulError
from components.models.nn.autoencoder_layer import AutoencoderLayer
from components.models.rbm import BernoulliRBM
from components.models.rbms import RBM_BY_UNITS, make_rbm
from components.models.regularizers import add_sparsity_gradient
from components.models.stack import layer_from_state, layer_state
from components.models.standardise import Standardise, feature_statistics
from components.training import loop
from components.training.fused_sgd import FusedSGD

STATISTICS_ROWS = 4096  # rows per chunk of the standardisation pass
GAUSSIAN_FIX = ("a Gaussian layer needs a small rate: set pretrain.lr_layers, one rate per layer, "
                "about 0.001 for layer 1")


def build_layer(index: int, n_visible: int, params: PretrainParams | dict) -> BernoulliRBM | AutoencoderLayer:
    """Layer ``index`` of the stack: binary hidden units, or the code type on top;
    the data's visible type at the bottom (``visible_units: auto`` means Bernoulli
    here: ``resolved`` makes it concrete for a dataset), Bernoulli above."""
    params = section_params("pretrain", params)
    top = index == len(params.hidden) - 1
    hidden_type = params.code_units if top else "binary"
    size = params.hidden[index]
    if params.layer_model == "autoencoder":
        return AutoencoderLayer(n_visible, size, init_std=params.init_std, noise=params.noise, hidden_type=hidden_type,
                                sparsity_target=params.sparsity_target,
                                sparsity_cost=params.sparsity_cost if hidden_type == "binary" else 0.0)
    visible = params.visible_units if index == 0 and params.visible_units != "auto" else "bernoulli"
    return make_rbm(visible, hidden_type, n_visible, size, init_std=params.init_std)


def layer_lr(index: int, params: PretrainParams | dict) -> float:
    """``lr_layers[index]`` if given, else the linear code layer's ``lr_code`` or ``lr``."""
    params = section_params("pretrain", params)
    if params.lr_layers:
        return params.lr_layers[index]
    top = index == len(params.hidden) - 1
    return params.lr_code if top and params.code_units == "linear" else params.lr


def make_optimizer(rbm: BernoulliRBM, index: int, params: PretrainParams | dict) -> torch.optim.SGD:
    """SGD with momentum; weight cost on W only; each layer's own rate (``layer_lr``)."""
    params = section_params("pretrain", params)
    groups = [
        {"params": [rbm.W], "weight_decay": params.weight_decay},
        {"params": [rbm.b_v, rbm.b_h], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=layer_lr(index, params), momentum=params.momentum_initial)


def train_epoch(rbm: BernoulliRBM, optimizer, data: Batches | torch.Tensor, *, batch_size: int | None = None,
                n_batches: int | None = None, cd_k: int, generator: torch.Generator, world_size: int = 1,
                dtype: torch.dtype = torch.float32, chain: torch.Tensor | None = None,
                sparsity: dict | None = None,
                all_reduce: Callable[[object], None] | None = None) -> dict[str, float]:
    """One pass of ``layer_step`` (CD-k for an RBM) over ``data``, a ``Batches``
    (or a tensor (N, D) with ``batch_size`` and ``n_batches``); returns the
    mean squared reconstruction error per item. With several workers, each
    step averages the gradients of all of them first (``all_reduce``, default
    torch.distributed: data-parallel CD). ``dtype`` is the precision of the
    matrix products' inputs (see cd_gradients). ``chain`` (B, D): persistent
    CD's fantasy particles, updated in place; the error is then measured on
    mean-field reconstructions. ``sparsity``: {"target", "cost", "q"} for the
    sparsity penalty; its running estimate "q" is updated in place."""
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
            (all_reduce or _all_reduce_gradients)(rbm.parameters())
        (fused or optimizer).step()
        squared_error += torch.nn.functional.mse_loss(v_neg, v, reduction="sum")  # sum of (v - v_neg)^2
    return {"recon_error": squared_error.item() / (batches.n_batches * batches.batch_size)}


def _all_reduce_gradients(parameters) -> None:
    world = torch.distributed.get_world_size()
    for parameter in parameters:
        torch.distributed.all_reduce(parameter.grad)
        parameter.grad.div_(world)


def set_momentum(optimizer: torch.optim.SGD, epoch: int, params: PretrainParams | dict) -> None:
    """The recipe's schedule: ``momentum_initial`` before ``momentum_switch_epoch``, then ``momentum_final``."""
    params = section_params("pretrain", params)
    momentum = params.momentum_initial if epoch < params.momentum_switch_epoch else params.momentum_final
    for group in optimizer.param_groups:
        group["momentum"] = momentum


class LayerUnit:
    """One layer in training: the layer, its optimizer, its batches, and the
    state CD carries between epochs (persistent chains, the sparsity estimate)."""

    def __init__(self, layer, index: int, batches: Batches, params: PretrainParams, session: loop.Session):
        self.layer, self.index, self.batches, self.params, self.session = layer, index, batches, params, session
        check_matmul_dtype(params, session.device)
        self.optimizer = make_optimizer(layer, index, params)
        self.chain = None
        if params.persistent:  # the chains start from the first batch, sampled
            first = batches.first()
            self.chain = layer.v_sample(first.clone(), layer.context(first))
        uses_sparsity = params.sparsity_cost > 0 and not isinstance(layer, AutoencoderLayer)
        self.sparsity = {"target": params.sparsity_target, "cost": params.sparsity_cost, "q": None} \
            if uses_sparsity else None

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        set_momentum(self.optimizer, epoch, self.params)
        return train_epoch(self.layer, self.optimizer, self.batches, cd_k=self.params.cd_k, generator=generator,
                           world_size=self.session.world, dtype=getattr(torch, self.params.matmul_dtype),
                           chain=self.chain, sparsity=self.sparsity, all_reduce=self.session.all_reduce_gradients)

    def state_dict(self) -> dict:
        weights = {k: v.detach().cpu().clone() for k, v in self.layer.state_dict().items()}
        return {"layer": weights, "optimizer": self.optimizer.state_dict(), "chain": _cpu(self.chain),
                "sparsity_q": _cpu(self.sparsity["q"]) if self.sparsity else None}

    def load_state_dict(self, state: dict) -> None:
        device = self.session.device
        self.layer.load_state_dict(state["layer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.chain = None if state["chain"] is None else state["chain"].to(device)
        if self.sparsity is not None and state["sparsity_q"] is not None:
            self.sparsity["q"] = state["sparsity_q"].to(device)

    def result(self) -> dict:
        return layer_state(self.layer)


def native_bfloat16(device: torch.device) -> str | None:
    """Why bfloat16 matrix products would be slow on ``device``, or None if it has
    native bf16 units: AVX-512 BF16 or AMX on a CPU (/proc/cpuinfo's flags), a
    bf16-capable GPU. Without them bf16 products are emulated: measured 35x
    slower than float32 on an AVX2-only AMD EPYC (benchmarks/cd1_speed.py)."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"GPU {torch.cuda.get_device_name(device)} has no bf16 units"
    flags = cpu_flags()
    if flags is None:
        return "this CPU's instruction set could not be read (/proc/cpuinfo)"
    if {"avx512_bf16", "amx_bf16"} & flags:
        return None
    return "this CPU has neither AVX-512 BF16 nor AMX, so bf16 products are emulated (35x slower measured)"


def cpu_flags() -> set[str] | None:
    """The instruction-set flags /proc/cpuinfo lists for this CPU (None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as info:
            return set(next((line for line in info if line.startswith("flags")), "").split())
    except OSError:
        return None


def cpu_line() -> str:
    """The CPU model and the instruction sets that decide matmul speed (AVX2 / AVX-512 / bf16 / AMX),
    printed with every benchmark's timings: machines differ and change."""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        model = ""
    flags = sorted(f for f in (cpu_flags() or set()) if f.startswith(("avx", "amx")))
    return f"CPU: {model or platform.processor() or 'unknown CPU'}; {' '.join(flags)}"


def check_matmul_dtype(params: PretrainParams, device: torch.device) -> None:
    """``matmul_dtype: bfloat16`` only where it is fast; a one-line refusal elsewhere."""
    if params.matmul_dtype == "bfloat16":
        reason = native_bfloat16(device)
        if reason is not None:
            raise DulError(f"pretrain.matmul_dtype: bfloat16 would be slow here: {reason}; use float32")


def _cpu(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().cpu().clone()


class StackInputs:
    """The batches layer i trains on: the bottom data (``open_bottom(session)``)
    passed up through the i trained layers below it, each layer's hidden
    probabilities (computed once per layer for data in memory, per batch for
    streamed data). The last answer is kept, so layer i + 1 starts from it."""

    def __init__(self, open_bottom: Callable[[loop.Session], Batches], below: list | None = None):
        self.open_bottom, self.below = open_bottom, list(below or [])
        self.cached: tuple[int, Batches] | None = None

    def __call__(self, done: list[dict], session: loop.Session) -> Batches:
        layers = self.below + [layer_from_state(state).to(session.device) for state in done]
        start, batches = self.cached if self.cached and self.cached[0] <= len(layers) else (0, None)
        batches = batches or self.open_bottom(session)
        for layer in layers[start:]:
            batches = batches.through(layer.h_mean)
        self.cached = (len(layers), batches)
        return batches


def layer_phases(params: PretrainParams, inputs: StackInputs, *, first: int = 0,
                 epoch_seeds: Callable[[int], Callable] | None = None, seed_parts=None) -> list[loop.Phase]:
    """One phase per layer from ``first`` up: build layer i (seeded by (seed, i))
    on ``inputs``' batches and train it ``params.epochs`` epochs."""
    n_layers = len(params.hidden)
    seed_parts = seed_parts or (lambda index: (params.seed, index))
    return [loop.Phase(name=f"layer {index + 1}", epochs=params.epochs, seed_parts=seed_parts(index),
                       build=_layer_builder(index, params, inputs, seed_parts(index)), row={"layer": index + 1},
                       describe=_describer(index, n_layers, params), fix=_fix(index, params),
                       parameters=lambda unit: unit.layer.parameters(),
                       epoch_seeds=epoch_seeds(index) if epoch_seeds else None)
            for index in range(first, n_layers)]


def _layer_builder(index: int, params: PretrainParams, inputs: StackInputs, seed_parts: tuple):
    def build(done: list[dict], session: loop.Session) -> LayerUnit:
        batches = inputs(done, session)
        n_visible = params.hidden[index - 1] if index else batches.first().shape[1]
        torch.manual_seed(loop.seed_for(*seed_parts))  # the layer's initial weights: the same on every worker
        layer = build_layer(index, n_visible, params).to(session.device)
        return LayerUnit(layer, index, batches, params, session)
    return build


def _describer(index: int, n_layers: int, params: PretrainParams):
    def describe(unit: LayerUnit, epoch: int, stats: dict) -> str:
        layer = unit.layer
        return (f"layer {index + 1}/{n_layers} ({layer.n_visible} {layer.visible_type}->{layer.n_hidden} "
                f"{layer.hidden_type}) epoch {epoch + 1}/{params.epochs}  recon_error {stats['recon_error']:.4f}")
    return describe


def _fix(index: int, params: PretrainParams) -> str:
    if index == 0 and params.visible_units == "gaussian":  # unit-variance inputs take ~100x smaller rates
        return GAUSSIAN_FIX
    return "lower pretrain.lr or pretrain.lr_code"


def train_stack_in_memory(X: torch.Tensor, params: PretrainParams | dict, epochs: int, *, seed: int = 0,
                          below: list | None = None, on_epoch=None) -> list:
    """Greedy layer-wise training in this process through the same loop, no Ray
    and no checkpoints: for benchmarks on data held in memory (the pipeline's
    stage is ``pretrain_stack``). Layers are built on ``X``'s device.

    ``params`` as the pretrain section. ``below``: trained layers the stack
    starts on (layers ``len(below)`` and up of ``hidden`` are trained, on their
    hidden means). ``on_epoch(layer, stats)`` is called after every epoch.
    Seeds: layer i's weights from ``seed + i``, its epoch e's batch order from
    ``seed * 1000 + i * 100 + e`` (as the benchmarks' recorded runs drew them).
    Returns all layers, bottom to top."""
    params = dataclasses.replace(section_params("pretrain", params), epochs=epochs)
    below = list(below or [])
    n_batches = len(X) // params.batch_size
    inputs = StackInputs(lambda session: TensorBatches(X, params.batch_size, n_batches), below)
    phases = layer_phases(params, inputs, first=len(below), seed_parts=lambda index: (seed + index,),
                          epoch_seeds=lambda index: lambda epoch, rank: (None, seed * 1000 + index * 100 + epoch))
    report = (lambda row: on_epoch(row["layer"] - 1, {k: v for k, v in row.items() if k not in ("layer", "epoch")})) \
        if on_epoch else None
    state = loop.train(phases, loop.LocalSession(X.device, on_epoch=report), stage="pretrain")
    return below + [layer_from_state(s).to(X.device) for s in state["done"]]


# ---- the pipeline's stage: a Ray Train job --------------------------------------


def training_inputs(config: dict) -> StackInputs:
    """The worker's training batches (its shard, streamed or in memory), standardised
    for a Gaussian first layer and checked against layer 1's visible units."""
    params: PretrainParams = config["params"]

    def open_bottom(session: loop.Session) -> Batches:
        streaming = should_stream(params.stream, config["data_dir"], ["train"])
        batches = open_split(config["data_dir"], "train", batch_size=params.batch_size, streaming=streaming,
                             rank=session.rank, world=session.world, device=session.device, stage="pretrain")
        if config.get("standardise") is not None:  # gaussian visibles: the driver's statistics, every worker alike
            batches = batches.through(Standardise.from_statistics(config["standardise"]).to(session.device))
        return batches.through(_checked(params))  # streamed: every batch, as drawn

    return StackInputs(open_bottom)


def _checked(params: PretrainParams):
    visible = params.visible_units if params.visible_units != "auto" else "bernoulli"
    hidden = params.code_units if len(params.hidden) == 1 else "binary"
    kind = AutoencoderLayer if params.layer_model == "autoencoder" else RBM_BY_UNITS.get((visible, hidden), BernoulliRBM)

    def check(v: torch.Tensor) -> torch.Tensor:
        kind.check_data(v, layer="pretrain layer 1")
        return v
    return check


def pretrain_loop(config: dict) -> None:
    """Ray Train worker: the layers not yet in the checkpoint, through the loop."""
    session = loop.worker_session(config)  # first: on a cluster it fetches the inputs the config points to
    loop.train(layer_phases(config["params"], training_inputs(config)), session, stage="pretrain")


def resolved(params: PretrainParams, card: dict) -> PretrainParams:
    """The params with ``visible_units: auto`` made concrete for the data:
    constrained Poisson for word counts (semantic hashing), Bernoulli for images."""
    visible = params.visible_units
    if visible == "auto":
        visible = "poisson" if card.get("kind") == "bow" else "bernoulli"
    if visible == "gaussian" and card.get("kind") == "bow":
        raise DulError(f"pretrain.visible_units: gaussian is for real-valued features (images), but "
                       f"{card.get('dataset', 'the data')} is word counts; set it to auto (constrained poisson), "
                       "poisson or softmax (replicated softmax)")
    return dataclasses.replace(params, visible_units=visible)


def input_statistics(data_dir: str | Path) -> dict[str, torch.Tensor]:
    """Per-feature mean and std (D,) of the training split, read in one streamed
    pass (memory: a row group), for the Gaussian first layer's standardisation."""
    split = open_split(data_dir, "train", batch_size=1, streaming=True)
    return feature_statistics(split.sequential(STATISTICS_ROWS), what=f"{data_dir}/train.parquet")


def pretrain_stack(data_dir: str | Path, params: PretrainParams, key: str) -> dict:
    """Train the stack as a Ray Train job; return ``{"layers": [...], "history": [...]}``,
    plus ``"standardise": {"mean", "std"}`` (D,) for a Gaussian first layer: its
    inputs are the training split standardised with them (``Standardise``).

    ``key`` identifies the work (params and data); the run's name adds the
    code's hash, so the same key with the same code resumes the same run.
    """
    from components.training import runtime

    config = {"data_dir": str(Path(data_dir).resolve()), "params": resolved(params, read_card(data_dir))}
    gaussian = config["params"].visible_units == "gaussian"
    config["standardise"] = input_statistics(data_dir) if gaussian else None
    state = runtime.fit(pretrain_loop, config, name=f"pretrain-{key}", params=params,
                        total_steps=len(params.hidden) * params.epochs, desc="pretrain")
    result = {"layers": state["done"], "history": state["history"]}
    return result | ({"standardise": config["standardise"]} if gaussian else {})
