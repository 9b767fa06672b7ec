"""The partition function of a Bernoulli RBM: exact enumeration and AIS.

Shared code for energy models: the pretrain stack's evaluation
(components/evaluation/ais.py re-exports this module) and the zoo's ``rbm``
family (components/models/rbm.py), whose ``log_prob`` is -F(x) - log Z. It
takes any module with ``W`` (D, H), ``b_v`` (D,) and ``b_h`` (H,) and imports
no model file, so a family that uses it depends on shared code only.

Annealed importance sampling (Neal, 2001) as Salakhutdinov & Murray (2008),
"On the quantitative analysis of deep belief networks" (ICML), use it for
RBMs. Notation of components/models/rbm.py: W (D, H), b_v (D,), b_h (H,),
x = b_h + v W (B, H).

Base rate model A: no weights, visible biases b_A fitted to the data,
    b_A = log(p + eps) - log(1 - p + eps),  p the mean of each pixel,
and H hidden units with zero biases, so Z_A = 2^H prod_i (1 + exp(b_A)_i).

Intermediate distributions, 0 = beta_0 < ... < beta_K = 1, with the hidden
units of the RBM B tempered:
    p_k(v) ∝ exp(-F_k(v)),
    F_k(v) = -(1 - beta_k) v.b_A - beta_k v.b_v - sum_j softplus(beta_k x_j).
F_0 = F_A (up to the constant H log 2 counted in Z_A) and F_K = F_B.

A chain starts at v_1 ~ p_A, moves v_{k+1} ~ T_k(v_k) by one Gibbs sweep
h ~ p_k(h | v_k), v ~ p_k(v | h) of the tempered joint model
    E_k(v, h) = -(1 - beta_k) v.b_A - beta_k (v.b_v + h.b_h + v W h),
which leaves p_k invariant, and collects the importance weight
    log w = sum_{k=1..K} F_{k-1}(v_k) - F_k(v_k).
E[w] = Z_B / Z_A, so log Z_B ≈ log Z_A + log mean(w) over the chains.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from components.errors import DulError

RBMLike = torch.nn.Module  # anything with W (D, H), b_v (D,) and b_h (H,): a BernoulliRBM or the zoo's RBM

MAX_ENUMERATED = 30  # 2^30 states: about the most a CPU enumerates in minutes
BLOCK_DOUBLES = 2**19  # 4 MiB: a block of states this size stays in cache (3x faster at D = 784)
BASE_RATE_EPS = 1e-3  # keeps b_A finite for pixels that are always 0 or 1
PAPER_PARTS = (500, 4000, 10000)  # the paper's steps in [0, 0.5], [0.5, 0.9] and [0.9, 1]: 14,500 in all


def beta_schedule(n_low: int = 500, n_mid: int = 4000, n_high: int = 10000) -> torch.Tensor:
    """Inverse temperatures: n_low evenly spaced steps in [0, 0.5], n_mid in
    [0.5, 0.9], n_high in [0.9, 1]; n_low + n_mid + n_high + 1 values from 0 to 1.

    The defaults are the paper's 14,500 steps; ``beta_schedule(100, 400, 1500)``
    is a cheap 2,000-step schedule with the same shape.
    """
    low = torch.linspace(0.0, 0.5, n_low + 1, dtype=torch.float64)[:-1]
    mid = torch.linspace(0.5, 0.9, n_mid + 1, dtype=torch.float64)[:-1]
    high = torch.linspace(0.9, 1.0, n_high + 1, dtype=torch.float64)
    return torch.cat([low, mid, high])  # (K + 1,)


def scaled_beta_schedule(steps: int = sum(PAPER_PARTS)) -> torch.Tensor:
    """The paper's schedule with ``steps`` steps in all (at least 3), its three
    parts scaled in proportion (500 : 4000 : 10000, each at least one step):
    ``scaled_beta_schedule(14500)`` is ``beta_schedule()``."""
    if steps < 3:
        raise DulError(f"an AIS schedule needs at least 3 steps (one per part), got {steps}")
    total = sum(PAPER_PARTS)
    n_low, n_mid = (max(1, round(steps * part / total)) for part in PAPER_PARTS[:2])
    return beta_schedule(n_low, n_mid, steps - n_low - n_mid)


def exact_log_partition(rbm: RBMLike, batch: int = 2**16) -> float:
    """log Z by enumerating the smaller layer, in chunks of ``batch`` states.

    Over hiddens (H <= D): log Z = logsumexp_h [h.b_h + sum_i softplus(b_v + W h)_i];
    over visibles (H > D): log Z = logsumexp_v [v.b_v + sum_j softplus(b_h + v W)_j].
    At most ``batch`` states are held at once (fewer when the other layer is
    wide, so that a block of states fits in cache).
    """
    W, b_v, b_h = (p.cpu() for p in _parameters(rbm))  # the states are enumerated on the CPU
    D, H = W.shape
    if min(D, H) > MAX_ENUMERATED:
        raise DulError(
            f"exact log Z enumerates 2^min(D, H) states; this RBM is {D} visible x {H} hidden, "
            f"more than 2^{MAX_ENUMERATED}: use ais_log_partition instead"
        )
    if H <= D:
        return _log_sum_over_states(W.T, b_h, b_v, batch)
    return _log_sum_over_states(W, b_v, b_h, batch)


def _log_sum_over_states(M: torch.Tensor, b_s: torch.Tensor, b_o: torch.Tensor, batch: int) -> float:
    """log sum_s exp(s.b_s + sum_o softplus(b_o + s M)_o) over all binary s; M (n, m).

    s = (s_low, s_high): the low bits' part of s M + b_o is computed once and
    each value of the high bits adds a row, so a chunk costs no matmul.
    """
    n, m = M.shape
    block = max(1, min(int(batch), BLOCK_DOUBLES // m))
    n_low = min(n, block.bit_length() - 1)  # 2^n_low <= block
    low = _binary_states(0, 2**n_low, n_low)  # (2^n_low, n_low)
    low_input = low @ M[:n_low] + b_o  # (2^n_low, m)
    low_energy = low @ b_s[:n_low]  # (2^n_low,)
    highs = _binary_states(0, 2 ** (n - n_low), n - n_low)  # (2^(n - n_low), n - n_low)
    # One preallocated result: small tensors kept alive between the big
    # temporaries fragment the heap (24 GB resident at 2^25 states).
    parts = torch.empty(len(highs), dtype=torch.float64)
    for index, high in enumerate(highs):
        offset = high @ M[n_low:]  # (m,)
        log_terms = low_energy + high @ b_s[n_low:] + F.softplus(low_input + offset).sum(dim=1)
        parts[index] = torch.logsumexp(log_terms, dim=0)
    return torch.logsumexp(parts, dim=0).item()


def _binary_states(start: int, stop: int, n: int) -> torch.Tensor:
    """Rows are the binary expansions (least significant bit first) of start..stop-1: (S, n)."""
    bits = 2 ** torch.arange(n)
    return ((torch.arange(start, stop)[:, None] & bits) > 0).to(torch.float64)


def base_rate_biases(data: torch.Tensor) -> torch.Tensor:
    """b_A = log(p + eps) - log(1 - p + eps), p = data.mean(0): the visible
    biases of the independent model that matches the pixel means. (D,)"""
    if data.numel() and (not torch.isfinite(data).all() or data.min() < 0 or data.max() > 1):
        raise DulError(
            f"AIS base rate: visible data must be finite and in [0, 1] "
            f"(got min {data.min().item():.3g}, max {data.max().item():.3g}); scale the data first"
        )
    return base_rate_log_odds(data.to(torch.float64).mean(dim=0))


def base_rate_log_odds(p: torch.Tensor) -> torch.Tensor:
    """b_A = log(p + eps) - log(1 - p + eps) for pixel means p (D,) in [0, 1]. (D,) float64"""
    p = p.to(torch.float64)
    return torch.log(p + BASE_RATE_EPS) - torch.log(1 - p + BASE_RATE_EPS)


@torch.no_grad()
def ais_log_partition(
    rbm: RBMLike,
    data: torch.Tensor | None = None,
    *,
    base_rate: torch.Tensor | None = None,
    n_chains: int = 100,
    betas: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(log Z estimate, lower, upper) of the RBM by AIS; ``data`` (N, D) in [0, 1].

    The base rate model's pixel means p are ``data.mean(0)``, or ``base_rate``
    (D,) given directly (a model that kept its training split's means), or
    1/2 when neither is given (b_A = 0: uniform). The chains run on the RBM's
    device, in float64, drawing from their own generator seeded ``seed``.

    The bars are the paper code's (Salakhutdinov's RBM_AIS.m): with w the
    importance weights, m = mean(w) and s = std(w) / sqrt(n_chains),
    lower = log(m - 3 s) and upper = log(m + 3 s), plus log Z_A; lower is
    -inf when m <= 3 s (the estimate is then not to be trusted).
    """
    W, b_v, b_h = _parameters(rbm)
    if n_chains < 2:
        raise DulError(f"AIS needs at least 2 chains for its error bars, got n_chains={n_chains}")
    betas = _checked_betas(beta_schedule() if betas is None else betas)
    b_A = _base_biases(data, base_rate, W.shape[0]).to(W.device)
    generator = torch.Generator(device=W.device).manual_seed(seed)
    log_w = _log_weights(W, b_v, b_h, b_A, betas, n_chains, generator)  # (C,)
    log_z_A = W.shape[1] * math.log(2.0) + F.softplus(b_A).sum().item()
    return tuple(log_z_A + value for value in _log_mean_with_bars(log_w))


def _base_biases(data: torch.Tensor | None, base_rate: torch.Tensor | None, D: int) -> torch.Tensor:
    """b_A (D,) from the data, from pixel means, or 0 (see ``ais_log_partition``)."""
    if data is not None and base_rate is not None:
        raise DulError("AIS base rate: give the data or its pixel means (base_rate), not both")
    if data is not None:
        if data.ndim != 2 or data.shape[1] != D:
            raise DulError(f"AIS base rate: data must be (N, {D}), got {tuple(data.shape)}")
        return base_rate_biases(data)
    if base_rate is None:
        return torch.zeros(D, dtype=torch.float64)
    if base_rate.shape != (D,) or not torch.isfinite(base_rate).all() or base_rate.min() < 0 or base_rate.max() > 1:
        raise DulError(f"AIS base rate: pixel means must be ({D},) in [0, 1], got shape {tuple(base_rate.shape)}")
    return base_rate_log_odds(base_rate)


def _log_weights(W, b_v, b_h, b_A, betas, n_chains, generator) -> torch.Tensor:
    """The AIS log importance weights of ``n_chains`` parallel chains. (C,)"""
    betas = betas.tolist()  # python floats: one fewer tensor op per step
    v = torch.bernoulli(torch.sigmoid(b_A).expand(n_chains, -1), generator=generator)  # (C, D) ~ p_A
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=W.device)  # (C,)
    for k in range(1, len(betas)):
        x = v @ W + b_h  # (C, H)
        base, model = v @ b_A, v @ b_v  # (C,), (C,)
        log_w += _neg_free_energy(base, model, x, betas[k]) - _neg_free_energy(base, model, x, betas[k - 1])
        if k < len(betas) - 1:
            v = _tempered_gibbs(x, W, b_v, b_A, betas[k], generator)
    return log_w


def _neg_free_energy(base: torch.Tensor, model: torch.Tensor, x: torch.Tensor, beta: float) -> torch.Tensor:
    """-F_beta(v) = (1 - beta) v.b_A + beta v.b_v + sum_j softplus(beta x_j). (C,)"""
    return (1 - beta) * base + beta * model + F.softplus(beta * x).sum(dim=1)


def _tempered_gibbs(x, W, b_v, b_A, beta: float, generator) -> torch.Tensor:
    """One sweep of E_beta: h ~ sigmoid(beta x), v ~ sigmoid((1 - beta) b_A + beta (b_v + W h)). (C, D)"""
    h = torch.bernoulli(torch.sigmoid(beta * x), generator=generator)  # (C, H)
    return torch.bernoulli(torch.sigmoid((1 - beta) * b_A + beta * (h @ W.T + b_v)), generator=generator)


def _log_mean_with_bars(log_w: torch.Tensor) -> tuple[float, float, float]:
    """(log m, log(m - 3 s), log(m + 3 s)), m = mean(w), s = std(w) / sqrt(n), from log w."""
    shift = log_w.max()
    w = torch.exp(log_w - shift)  # (C,) in (0, 1]: no overflow
    mean, sem = w.mean(), w.std() / math.sqrt(len(w))
    lower = torch.log(mean - 3 * sem) if mean > 3 * sem else log_w.new_tensor(-math.inf)
    return tuple((value + shift).item() for value in (torch.log(mean), lower, torch.log(mean + 3 * sem)))


def _checked_betas(betas: torch.Tensor) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() < 0).any():
        raise DulError("AIS betas must be a 1-D nondecreasing schedule from exactly 0 to exactly 1")
    return betas


def _parameters(rbm: RBMLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W (D, H), b_v (D,), b_h (H,) as detached float64 tensors; a model without
    that energy (a VAE, NADE, ...) is a one-line DulError."""
    missing = [name for name in ("W", "b_v", "b_h") if not isinstance(getattr(rbm, name, None), torch.Tensor)]
    if missing:
        raise DulError(f"AIS estimates the partition function of an RBM's energy (W, b_v, b_h); "
                       f"{getattr(rbm, 'family', type(rbm).__name__)} has no {', '.join(missing)}: "
                       "measure it with its own estimator (log_prob) instead")
    return tuple(p.detach().to(torch.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))


@torch.no_grad()
def log_likelihood(rbm: RBMLike, data: torch.Tensor, log_z: float) -> float:
    """Mean over items of log p(v) = -F(v) - log Z; data (N, D)."""
    W, b_v, b_h = _parameters(rbm)
    v = data.to(torch.float64)  # (N, D)
    return (-_free_energy(v, W, b_v, b_h)).mean().item() - log_z


@torch.no_grad()
def pseudo_log_likelihood(rbm: RBMLike, data: torch.Tensor, seed: int = 0) -> float:
    """Stochastic pseudo-log-likelihood, as scikit-learn's BernoulliRBM.score_samples.

    sum_i log p(v_i | v_-i) = sum_i log sigmoid(F(v with bit i flipped) - F(v)),
    estimated per item from one uniformly drawn bit i as
    D * log sigmoid(F(v_flipped) - F(v)); the mean over items is returned.
    """
    W, b_v, b_h = _parameters(rbm)
    v = data.to(torch.float64)  # (N, D)
    N, D = v.shape
    generator = torch.Generator().manual_seed(seed)
    bit = torch.randint(0, D, (N,), generator=generator)  # (N,)
    flipped = v.clone()
    flipped[torch.arange(N), bit] = 1 - flipped[torch.arange(N), bit]
    gap = _free_energy(flipped, W, b_v, b_h) - _free_energy(v, W, b_v, b_h)  # (N,)
    return (D * F.logsigmoid(gap)).mean().item()


def _free_energy(v, W, b_v, b_h) -> torch.Tensor:
    """F(v) = - v.b_v - sum_j softplus(b_h + v W)_j in float64. (N,)"""
    return -(v @ b_v) - F.softplus(v @ W + b_h).sum(dim=1)
