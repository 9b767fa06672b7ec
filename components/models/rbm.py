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
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import TiedLayer


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
