"""Bernoulli-Bernoulli restricted Boltzmann machine, and the base of the RBM family.

Smolensky (1986); trained with contrastive divergence, Hinton (2002),
"Training products of experts by minimizing contrastive divergence". The
layer type of the deep belief nets in Hinton & Salakhutdinov (2006).
Persistent CD: Tieleman (2008), "Training restricted Boltzmann machines using
approximations to the likelihood gradient" (ICML).

Energy:       E(v, h) = - v.b_v - h.b_h - v W h
Conditionals: p(h_j = 1 | v) = sigmoid(b_h + v W)_j,  p(v_i = 1 | h) = sigmoid(b_v + W h)_i
Free energy:  F(v) = - log sum_h exp(-E(v, h)) = - v.b_v - sum_j softplus(b_h + v W)_j

The other RBMs (rbm_linear, rbm_gaussian, rbm_softmax, rbm_poisson) differ
only in their unit types, which live in the hooks below: ``context`` (what a
row needs besides v, e.g. a document's length), ``hidden_bias`` and
``h_activation``/``h_sample`` on the way up, ``v_activation``/``v_sample`` on
the way down, ``b_h_statistic`` (dF/db_h) and ``check_data``.

``RBM`` (at the end) is the zoo's family "rbm": a BernoulliRBM trained by
CD-k or PCD with SGD, whose log p(x) = -F(x) - log Z takes log Z from
annealed importance sampling, as Salakhutdinov & Murray (2008), "On the
quantitative analysis of deep belief networks" (ICML), measured it
(components/models/nn/ais.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import Checkpointed, TiedLayer, TrainingParams
from components.models.nn.ais import (
    ais_log_partition,
    pseudo_log_likelihood,
    scaled_beta_schedule,
)


class BernoulliRBM(TiedLayer):
    """Binary visible and binary hidden units.

    Visible data may be probabilities in [0, 1] (grey levels), as in the
    paper: they enter the statistics as expectations.
    """

    visible_type = "bernoulli"
    hidden_type = "binary"
    label = "BernoulliRBM"  # names the model in error messages

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.1):
        if n_visible < 1 or n_hidden < 1:
            raise DulError(f"an RBM needs at least one unit per layer, got {n_visible}x{n_hidden}")
        super().__init__(n_visible, n_hidden, init_std)
        self.last_h_pos: torch.Tensor | None = None  # E[h | v_pos] of the last cd_gradients, (B, H)

    # ---- unit-type hooks: a subclass overrides these and nothing else of CD ----

    def context(self, v: torch.Tensor) -> torch.Tensor | None:
        """What the conditionals of a row need besides v: None here; the
        document lengths D = v.sum(1), (B, 1), for count models."""
        return None

    def hidden_bias(self, b_h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The bias in the hidden input x = hidden_bias + v W: b_h, (H,)."""
        return b_h

    def h_activation(self, x: torch.Tensor) -> torch.Tensor:
        """E[h | v] from the hidden input x = b_h + v W (logistic units)."""
        return torch.sigmoid(x)

    def h_sample(self, mean: torch.Tensor) -> torch.Tensor:
        """A draw of h given its conditional mean: Bernoulli(mean).

        ``rand < mean`` rather than torch.bernoulli: the same distribution,
        half the time on CPU (measured 0.64 vs 1.25 ms for 100 x 1000).
        """
        return (torch.rand_like(mean) < mean).to(mean.dtype)

    def v_activation(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """E[v | h] from the visible input x = b_v + h W^T: sigmoid(x), (B, D)."""
        return torch.sigmoid(x)

    def v_sample(self, mean: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """A draw of v given its conditional mean: Bernoulli(mean), (B, D)."""
        return (torch.rand_like(mean) < mean).to(mean.dtype)

    def b_h_statistic(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """-dF/db_h for a row with hidden means h: h itself, (B, H)."""
        return h

    @classmethod
    def check_data(cls, v: torch.Tensor, layer: str | None = None) -> None:
        """Bernoulli visible units model data in [0, 1]; anything else is an input error."""
        if v.numel() and (not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1):
            raise DulError(
                f"{layer or cls.label}: visible data must be finite and in [0, 1] "
                f"(got min {v.min().item():.3g}, max {v.max().item():.3g}); scale the data first"
            )

    # ---- the protocol, written once in terms of the hooks ----

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.hidden_bias(self.b_h, self.context(v)), v, self.W)  # b_h + v W, (B, H)

    def h_mean(self, v: torch.Tensor) -> torch.Tensor:
        """E[h | v] = sigmoid(b_h + v W), shape (B, H)."""
        return self.h_activation(self.hidden_input(v))

    def v_mean(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """E[v | h] = sigmoid(b_v + h W^T), shape (B, D). ``context`` as ``self.context(v)``."""
        return self.v_activation(torch.addmm(self.b_v, h, self.W.T), context)

    def sample_h(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.h_mean(v)
        return mean, self.h_sample(mean)

    def sample_v(self, h: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.v_mean(h, context)
        return mean, self.v_sample(mean, context)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = - v.b_v - sum_j softplus(b_h + v W)_j, shape (B,)."""
        return -(v @ self.b_v) - F.softplus(self.hidden_input(v)).sum(dim=1)

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor:
        """k steps v -> h -> v of block Gibbs sampling; returns the visible means.
        Each row keeps the context (document length) of its starting state."""
        context, v_mean = self.context(v), v
        for _ in range(k):
            _, h = self.sample_h(v)
            v_mean, v = self.sample_v(h, context)
        return v_mean

    def negative_phase(self, v: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The CD-k negative visible data, as in Hinton's rbm.m.

        Hidden states are sampled, reconstructions kept as means (less
        sampling noise in the statistics; the paper's choice).
        """
        with torch.no_grad():
            context, v_neg = self.context(v), v
            for _ in range(k):
                _, h = self.sample_h(v_neg)
                v_neg = self.v_mean(h, context)
        return v_neg

    @torch.no_grad()
    def cd_gradients(self, v_pos: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None,
                     chain: torch.Tensor | None = None, *,
                     into: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                     beta: float = 0.0) -> torch.Tensor:
        """Set ``.grad`` of W, b_v, b_h to the CD-k estimate of the gradient of
        the negative log-likelihood, and return the negative visible data (B, D).

        d(-log p(v))/dW = dF(v)/dW - E_model[dF/dW], and for every unit type
        here dF/dW = -v^T E[h|v], dF/db_v = -v (up to parameter-free terms),
        dF/db_h = -E[h|v] (-D E[h|v] for replicated softmax; ``b_h_statistic``),
        so with the model expectation replaced by negative visible data v_neg:

            grad W   = (v_neg^T h_neg - v_pos^T h_pos) / B
            grad b_v = mean(v_neg - v_pos),  grad b_h = mean(h_neg - h_pos)

        where h_* = E[h | v_*]: the gradient of ``forward``, without autograd's
        extra products. Both statistics come from one matrix product,
        [v_neg; -v_pos]^T [h_neg; h_pos]. ``dtype`` (e.g. torch.bfloat16) is
        the precision of the matrix products' inputs; activations, sampling,
        gradients and weights keep the parameters' dtype.

        CD-k (``chain`` None): v_neg are the reconstructions after k steps from
        v_pos, hidden states sampled and visibles kept as means (mean-field).
        Persistent CD (``chain`` (B', D), sampled visible states, e.g. a copy of
        a data batch to start): the negative chain continues from ``chain`` for
        k full Gibbs steps, visibles *sampled* so the particles stay states of
        the model's chain; ``chain`` is overwritten with the new particles,
        which are also the v_neg returned (fantasies, not reconstructions).

        E[h | v_pos] is kept in ``self.last_h_pos`` (B, H) for regularizers
        (see components.models.regularizers.add_sparsity_gradient).

        ``into`` (tensors shaped like W, b_v, b_h): instead of setting ``.grad``,
        overwrite each with ``beta * itself + gradient``, the weights' product
        accumulating straight into it (one matrix product, no gradient tensor):
        how ``pretrain.train_epoch`` folds the statistics into SGD's momentum
        buffers. With beta 0 the old contents are ignored (NaN included).
        """
        exact = self.W.dtype  # activations, sampling and gradients stay in the parameters' dtype
        dtype = dtype or exact
        if chain is None and dtype == exact == v_pos.dtype and _logistic_units(type(self)):
            return self._logistic_cd(v_pos, k, into, beta)
        W, b_h, b_v = self.W.to(dtype), self.b_h.to(dtype), self.b_v.to(dtype)  # copies only if dtype differs

        def up(v, context):  # E[h | v], (B, H)
            return self.h_activation(torch.addmm(self.hidden_bias(b_h, context), v.to(dtype), W).to(exact))

        def down(h, context):  # E[v | h], (B, D)
            return self.v_activation(torch.addmm(b_v, h.to(dtype), W.T).to(exact), context)

        context_pos = self.context(v_pos)
        h_pos = up(v_pos, context_pos)
        if chain is None:
            context_neg = context_pos
            v_neg = down(self.h_sample(h_pos), context_neg)
            for _ in range(k - 1):
                v_neg = down(self.h_sample(up(v_neg, context_neg)), context_neg)
        else:
            context_neg, v_neg = self.context(chain), chain
            for _ in range(k):
                v_neg = self.v_sample(down(self.h_sample(up(v_neg, context_neg)), context_neg), context_neg)
            chain.copy_(v_neg)
        h_neg = up(v_neg, context_neg)
        self._set_gradients(v_pos, h_pos, context_pos, v_neg, h_neg, context_neg, dtype, into, beta)
        self.last_h_pos = h_pos
        return v_neg

    def _logistic_cd(self, v_pos: torch.Tensor, k: int, into, beta: float) -> torch.Tensor:
        """``cd_gradients`` for CD-k with this class's own units (logistic both
        ways, no context) and products in the parameters' dtype: the same steps
        and the same random draws as the hooks', each product with its bias and
        sigmoid one oneDNN call where it has them (``_Products``), the weights'
        statistics [v_neg; -v_pos]^T [h_neg; h_pos] accumulated straight into
        their target, the biases' as products with [1; 1] and [1; -1], each
        already scaled (1/B) and summed (beta)."""
        W, n = self.W, len(v_pos)
        products = _Products(_onednn(v_pos, W))
        h_pos = products.sigmoid_affine(v_pos, W.T, self.b_h)  # E[h | v_pos], (B, H)
        h_mean = h_pos
        for _ in range(max(k, 1)):
            h_state = torch.rand_like(h_mean).lt_(h_mean)  # Bernoulli(h_mean) as h_sample draws it: rand < mean
            v_neg = products.sigmoid_affine(h_state, W, self.b_v)  # E[v | h], kept as means, (B, D)
            h_mean = products.sigmoid_affine(v_neg, W.T, self.b_h)  # after the last step: h_neg
        h_neg = h_mean
        # [v_neg; -v_pos]^T written as such, (D, 2B): the product's left operand, contiguous as oneDNN wants it
        left = v_pos.new_empty(W.shape[0], 2 * n)
        left[:, :n].copy_(v_neg.T)
        torch.neg(v_pos.T, out=left[:, n:])
        right = torch.cat([h_neg, h_pos])  # (2B, H)
        if into is None:
            into, beta = tuple(torch.empty_like(p) for p in (W, self.b_v, self.b_h)), 0.0
            self.W.grad, self.b_v.grad, self.b_h.grad = into
        ones, signs = _ones_and_signs(n, v_pos.dtype, v_pos.device)
        products.accumulate(into[0], left, right, beta, 1 / n)  # (v_neg^T h_neg - v_pos^T h_pos) / B
        into[1].addmv_(left, ones, beta=beta, alpha=1 / n)  # mean(v_neg - v_pos)
        into[2].addmv_(right.T, signs, beta=beta, alpha=1 / n)  # mean(h_neg - h_pos)
        self.last_h_pos = h_pos
        return v_neg

    def _set_gradients(self, v_pos, h_pos, context_pos, v_neg, h_neg, context_neg, dtype,
                       into=None, beta=0.0) -> None:
        """.grad = negative minus positive statistics, each averaged over its own rows
        (or ``into`` = beta * into + that; see ``cd_gradients``)."""
        exact, n = self.W.dtype, len(v_pos)
        b_h_neg, b_h_pos = self.b_h_statistic(h_neg, context_neg), self.b_h_statistic(h_pos, context_pos)
        if len(v_neg) == n:
            b_v_grad = (v_neg - v_pos).mean(dim=0)
            b_h_grad = (b_h_neg - b_h_pos).mean(dim=0)
        else:  # persistent particles need not number the batch: weight the negative side to match
            b_v_grad = v_neg.mean(dim=0) - v_pos.mean(dim=0)
            b_h_grad = b_h_neg.mean(dim=0) - b_h_pos.mean(dim=0)
            v_neg = v_neg * (n / len(v_neg))
        left, right = torch.cat([v_neg, -v_pos]).T.to(dtype), torch.cat([h_neg, h_pos]).to(dtype)  # (D, 2B), (2B, H)
        if into is None:
            self.b_v.grad, self.b_h.grad = b_v_grad, b_h_grad
            if dtype == exact:  # the 1/n inside the product: no pass over W-sized memory for it
                self.W.grad = torch.addmm(self.W, left, right, beta=0, alpha=1 / n)  # (D, H)
            else:
                self.W.grad = torch.mm(left, right).to(exact).div_(n)
            return
        W_into, b_v_into, b_h_into = into
        for target, gradient in ((b_v_into, b_v_grad), (b_h_into, b_h_grad)):
            if beta:
                target.mul_(beta).add_(gradient)
            else:
                target.copy_(gradient)
        if dtype == exact:
            W_into.addmm_(left, right, beta=beta, alpha=1 / n)
        elif beta:
            W_into.mul_(beta).add_(torch.mm(left, right).to(exact), alpha=1 / n)
        else:
            W_into.copy_(torch.mm(left, right)).div_(n)

    def layer_step(self, v: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None,
                   chain: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy layer-wise trainer's step, shared with autoencoder layers:
        set ``.grad`` for the batch v (B, D) and return its reconstructions.
        For an RBM, ``cd_gradients``."""
        return self.cd_gradients(v, k, dtype, chain)

    def forward(self, v_pos: torch.Tensor, v_neg: torch.Tensor) -> torch.Tensor:
        """The CD surrogate objective mean F(v_pos) - mean F(v_neg).

        Its gradient is the contrastive-divergence update <v h>_data -
        <v h>_recon (and likewise for the biases): what ``cd_gradients``
        computes directly, in fewer products. Kept for autograd users (and as
        the reference the tests check ``cd_gradients`` against).
        """
        return self.free_energy(v_pos).mean() - self.free_energy(v_neg).mean()


class _Products:
    """The matrix products of ``_logistic_cd``: oneDNN's float32 matmul
    (torch.ops.mkldnn._linear_pointwise, with bias and sigmoid fused) where
    ``onednn``, else addmm (MKL's sgemm, or whatever torch uses)."""

    def __init__(self, onednn: bool):
        self.onednn = onednn

    def sigmoid_affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """sigmoid(x @ weight.T + bias), ``weight`` (out, in) as nn.Linear holds
        it (a transposed view is fine)."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "sigmoid", [], "")
        return torch.addmm(bias, x, weight.T).sigmoid_()

    def accumulate(self, target: torch.Tensor, left: torch.Tensor, right: torch.Tensor, beta: float,
                   alpha: float) -> None:
        """target = beta * target + alpha * left @ right; with beta 0 target's
        contents are ignored (NaN included)."""
        if not self.onednn:
            target.addmm_(left, right, beta=beta, alpha=alpha)
            return
        product = torch.ops.mkldnn._linear_pointwise(left, right.T, None, "none", [], "")
        if beta:
            target.mul_(beta).add_(product, alpha=alpha)
        else:
            torch.mul(product, alpha, out=target)


@functools.lru_cache(maxsize=16)
def _ones_and_signs(n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[1; 1] and [1; -1], (2n,) each: the bias statistics as products."""
    ones = torch.ones(2 * n, dtype=dtype, device=device)
    return ones, torch.cat([ones[:n], -ones[n:]])


def _onednn(*tensors: torch.Tensor) -> bool:
    """Whether the products of these tensors go to oneDNN: float32 on CPU, with
    torch's oneDNN enabled and its linear op working here. On this project's
    2-core AMD CPU its float32 kernels ran the CD products 1.2-2x faster than
    the MKL sgemm behind torch.mm/addmm (oneDNN picks its kernels by
    instruction set, MKL by vendor)."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors) \
        and torch.backends.mkldnn.enabled and _onednn_linear_works()


@functools.cache
def _onednn_linear_works() -> bool:
    """torch.ops.mkldnn._linear_pointwise is torch's own (inductor's) fused
    linear: check once that this build has it and that it computes
    sigmoid(x W^T + b) for plain and transposed operands; else addmm is used."""
    try:
        generator = torch.Generator().manual_seed(0)  # not the global one: the probe draws no one's samples
        x, weight, bias = (torch.rand(shape, generator=generator) for shape in ((3, 5), (5, 4), (4,)))
        op = torch.ops.mkldnn._linear_pointwise
        expected = torch.sigmoid(x @ weight + bias)
        return torch.backends.mkldnn.is_available() \
            and torch.allclose(op(x, weight.T, bias, "sigmoid", [], ""), expected) \
            and torch.allclose(op(x, weight.T.contiguous(), bias, "sigmoid", [], ""), expected) \
            and torch.allclose(op(x.T.contiguous().T, weight.T, None, "none", [], ""), x @ weight)
    except (AttributeError, RuntimeError):
        return False


_UNIT_HOOKS = ("context", "hidden_bias", "h_activation", "h_sample", "v_activation", "b_h_statistic")


@functools.cache
def _logistic_units(cls: type) -> bool:
    """Whether ``cls`` keeps all of BernoulliRBM's unit hooks (so ``_logistic_cd`` applies)."""
    return all(getattr(cls, name) is getattr(BernoulliRBM, name) for name in _UNIT_HOOKS)


def check_visible(v: torch.Tensor, layer: str = "BernoulliRBM") -> None:
    """Bernoulli visible units model data in [0, 1]; anything else is an input error.
    (``BernoulliRBM.check_data``; other unit types have their own ``check_data``.)"""
    BernoulliRBM.check_data(v, layer)


class RBM(Checkpointed, BernoulliRBM):
    """The zoo's RBM: D = n_inputs binary visible units, H = hidden binary hidden
    units, trained by CD-k (or PCD) with SGD and momentum, weight cost on W only.

    log p(x) = -F(x) - log Z, with log Z estimated by AIS from the base-rate
    model of the training split's pixel means (``fit_inputs``; 1/2 each until
    then) over ``ais_betas`` intermediate distributions and ``ais_chains``
    runs, drawn from their own generator (seed ``AIS_SEED``), so the same
    parameters always get the same log Z. It is computed once and kept until
    the parameters (or the base rate) change.
    """

    family: ClassVar[str] = "rbm"
    label = "RBM"
    SAMPLE_STEPS: ClassVar[int] = 1000  # Gibbs sweeps per drawn sample
    AIS_SEED: ClassVar[int] = 0  # the AIS generator's seed: log Z is a function of the parameters

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        lr: float = 0.05  # SGD's learning rate (the RBM family trains by SGD with momentum, not Adam)
        hidden: int = 64  # H, binary hidden units (the paper's 500 on MNIST)
        cd_k: int = 1  # Gibbs steps per contrastive-divergence update (the paper's -86.34 nats: CD-25)
        persistent: bool = False  # persistent CD (Tieleman 2008): one fantasy chain per batch row, started
        # from the first batch, kept across updates (and in the checkpoint)
        momentum: float = 0.5  # SGD momentum
        weight_decay: float = 0.0002  # L2 weight cost on W (not on the biases)
        ais_chains: int = 100  # AIS runs for log Z (its estimate and ±3 standard-error bars)
        ais_betas: int = 14500  # AIS intermediate distributions: Salakhutdinov & Murray's schedule (500, 4000
        # and 10000 steps in [0, 0.5], [0.5, 0.9] and [0.9, 1]) scaled in proportion to this many

        def validate(self) -> None:
            self.check_training("rbm")
            for name, least in (("hidden", 1), ("cd_k", 1), ("ais_chains", 2), ("ais_betas", 3)):
                if getattr(self, name) < least:
                    must = "must be positive" if least == 1 else f"must be at least {least}"
                    raise DulError(f"rbm.{name} is {getattr(self, name)}: {must}")
            if not 0 <= self.momentum < 1:
                raise DulError(f"rbm.momentum is {self.momentum}: must be in [0, 1)")
            if self.weight_decay < 0:
                raise DulError(f"rbm.weight_decay is {self.weight_decay}: must be 0 or more")

    def __init__(self, n_inputs: int, hidden: int, cd_k: int = 1, persistent: bool = False,
                 init_std: float = 0.01, ais_chains: int = 100, ais_betas: int = 14500):
        if cd_k < 1 or ais_chains < 2 or ais_betas < 3:
            raise DulError(f"an RBM needs cd_k >= 1, ais_chains >= 2 and ais_betas >= 3, "
                           f"got {cd_k}, {ais_chains} and {ais_betas}")
        super().__init__(n_inputs, hidden, init_std)
        self.hyperparameters = {"n_inputs": n_inputs, "hidden": hidden, "cd_k": cd_k, "persistent": persistent,
                                "init_std": init_std, "ais_chains": ais_chains, "ais_betas": ais_betas}
        self.cd_k, self.persistent, self.ais_chains, self.ais_betas = cd_k, persistent, ais_chains, ais_betas
        self.register_buffer("base_rate", torch.full((n_inputs,), 0.5))  # p, the AIS base rate model's means (D,)
        # PCD's particles (B, D), empty until the first batch. In the state dict: a resumed run continues
        # the same chain (bitwise, as the loop promises), and a checkpoint can go on training.
        self.register_buffer("chain", torch.empty(0, n_inputs))
        self._log_z: tuple[tuple, tuple[float, float, float]] | None = None  # (fingerprint, log_partition())

    code_units = "binary"  # its codes are E[h | v] in (0, 1); an index thresholds them at their training medians

    @property
    def n_inputs(self) -> int:
        return self.n_visible

    @property
    def code_size(self) -> int:
        return self.n_hidden

    def filters(self) -> torch.Tensor:
        """(D, K): the weights into each hidden unit, one a column (``Filters``: the picture of what the first layer learned)."""
        return self.W.detach()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, H) features: the hidden units' probabilities E[h | v] = sigmoid(b_h + v W)."""
        return self.h_mean(x)

    @classmethod
    def from_params(cls, params: RBM.Params, shape: tuple[int, ...]) -> RBM:
        """An RBM for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(n_inputs=math.prod(shape), hidden=params.hidden, cd_k=params.cd_k, persistent=params.persistent,
                   ais_chains=params.ais_chains, ais_betas=params.ais_betas)

    @torch.no_grad()
    def fit_inputs(self, X: torch.Tensor) -> None:
        """Keep the training split's pixel means (N, D) -> (D,): AIS's base rate model and sampling's start."""
        X = _rows(X, torch.float64)
        self.check_data(X, "rbm training split")
        self.base_rate.copy_(X.mean(dim=0))

    def optimizers(self, params: RBM.Params) -> list[torch.optim.Optimizer]:
        """SGD with momentum; the weight cost on W only (as the flagship's pretraining)."""
        groups = [{"params": [self.W], "weight_decay": params.weight_decay},
                  {"params": [self.b_v, self.b_h], "weight_decay": 0.0}]
        return [torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum)]

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One SGD step on the CD-k (or PCD) gradient of the batch x (B, D). The loss logged is
        the squared error of the mean-field reconstruction E[v | E[h | x]] per item, before the step."""
        (optimizer,) = optimizers
        v = _rows(x, self.W.dtype)  # (B, D)
        optimizer.zero_grad(set_to_none=True)
        self.cd_gradients(v, self.cd_k, chain=self._particles(v) if self.persistent else None)
        with torch.no_grad():
            loss = (v - self.v_mean(self.last_h_pos)).square().sum(dim=1).mean()
        optimizer.step()
        return {"loss": loss}

    def _particles(self, v: torch.Tensor) -> torch.Tensor:
        """PCD's chain, (re)started from the batch v (B, D) when it has none."""
        if len(self.chain) == 0:
            self.chain = v.detach().clone()
        return self.chain

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        chain = state_dict.get(prefix + "chain")
        if isinstance(chain, torch.Tensor) and chain.ndim == 2 and chain.shape[1] == self.W.shape[0]:
            self.chain = self.chain.new_empty(chain.shape)  # the particles' number is the batch's, not fixed
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _fingerprint(self) -> tuple:
        """Changes whenever W, b_v, b_h or the base rate do: an optimizer step or load_state_dict
        bumps the version counters, .to() moves the storage, and the sums catch edits through .data."""
        return tuple((t.device, t.dtype, t.data_ptr(), t._version, float(t.detach().sum()))
                     for t in (self.W, self.b_v, self.b_h, self.base_rate))

    def log_partition(self) -> tuple[float, float, float]:
        """(log Z, lower, upper) by AIS (the bars: log(m -+ 3 s) of the importance weights), cached."""
        key = self._fingerprint()
        if self._log_z is None or self._log_z[0] != key:
            estimate = ais_log_partition(self, base_rate=self.base_rate, n_chains=self.ais_chains,
                                         betas=scaled_beta_schedule(self.ais_betas), seed=self.AIS_SEED)
            self._log_z = (key, estimate)
        return self._log_z[1]

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """log p(x) = -F(x) - log Z in nats, x (B, D) -> (B,) float64; log Z by AIS; ``samples`` is ignored."""
        W, b_v, b_h = (p.detach().to(torch.float64) for p in (self.W, self.b_v, self.b_h))
        v = _rows(x, torch.float64).to(W.device)  # (B, D)
        return (v @ b_v) + F.softplus(v @ W + b_h).sum(dim=1) - self.log_partition()[0]

    def estimator(self, samples: int) -> str:
        return "ais"

    @torch.no_grad()
    def validation_figures(self, x: torch.Tensor) -> dict[str, float]:
        """The loop's figure after every epoch: the pseudo-negative-log-likelihood (one
        flipped bit per item, no partition function); AIS runs once, for the test figures."""
        return {"valid_pseudo_nll": -pseudo_log_likelihood(self, _rows(x, torch.float64))}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent Gibbs chains, v_0 ~ Bernoulli(base rate), each SAMPLE_STEPS sweeps
        h ~ p(h | v), v ~ p(v | h); returns E[v | h] of the last sweep, (n, D) in [0, 1]. The
        uniforms come from ``generator`` (on its own device), else the global RNG."""
        (D, H), dtype = self.W.shape, self.W.dtype
        v = (_uniforms(n, D, generator, self.W) < self.base_rate).to(dtype)  # (n, D)
        for step in range(self.SAMPLE_STEPS):
            h = (_uniforms(n, H, generator, self.W) < self.h_mean(v)).to(dtype)  # (n, H)
            mean = self.v_mean(h)  # (n, D)
            if step < self.SAMPLE_STEPS - 1:
                v = (_uniforms(n, D, generator, self.W) < mean).to(dtype)
        return mean


# The zoo families' row helpers (components/models/nn/rows.py), written out here: the flagship's
# stages import this file, and should not go stale when a shared layer of the zoo changes.
def _rows(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Items as rows: (B, D) or (B, C, H, W) -> (B, D), in ``dtype``."""
    return x.reshape(len(x), -1).to(dtype)


def _uniforms(n: int, D: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws (n, D) from ``generator`` (made on its device), moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.rand(n, D, generator=generator, device=device, dtype=like.dtype).to(like.device)
