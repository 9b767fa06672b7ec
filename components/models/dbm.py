"""Deep Boltzmann machine with two binary hidden layers, for binary vectors.

Salakhutdinov & Hinton (2009), "Deep Boltzmann machines" (AISTATS);
Salakhutdinov & Larochelle (2010), "Efficient learning of deep Boltzmann
machines" (AISTATS) for the mean-field details. W1 (D, H1), W2 (H1, H2),
b_v (D,), b_h1 (H1,), b_h2 (H2,):

    E(v, h1, h2) = - v W1 h1 - h1 W2 h2 - v.b_v - h1.b_h1 - h2.b_h2
    p(v | h1) = sigmoid(h1 W1^T + b_v),  p(h2 | h1) = sigmoid(h1 W2 + b_h2)
    p(h1 | v, h2) = sigmoid(v W1 + h2 W2^T + b_h1)

The graph is bipartite between h1 and (v, h2), so summing v and h2 out gives
    log p*(h1) = h1.b_h1 + sum_i softplus(h1 W1^T + b_v)_i + sum_m softplus(h1 W2 + b_h2)_m,
the negative free energy of an RBM whose visible units are h1 and whose
hidden units are (v, h2) (``as_rbm``): log Z is that RBM's, estimated by AIS
over h1 (Salakhutdinov & Murray 2008; components/models/nn/ais.py).

Training, one phase of the loop in three stages by epoch (``start_epoch``,
``stage`` kept in a buffer): ``pretrain_epochs`` epochs of CD-1 on the bottom
RBM (v, h1) with v doubled, p(h1 | v) = sigmoid(2 v W1 + b_h1); as many on the
top RBM (h1, h2), its data h1 ~ p(h1 | v) of the bottom RBM, with h2 doubled,
p(h1 | h2) = sigmoid(2 h2 W2^T + b_top) (the paper's corrections: each RBM
stands in for the input h1 gets from the layer it lacks). Composing them halves
h1's total input: W1 and W2 are kept and h1's two biases averaged,
b_h1 = (b_h1 + b_top) / 2. Then jointly: for a batch v, the mean-field
posterior q(h1, h2 | v) = prod Bernoulli(mu1) Bernoulli(mu2) by
``mean_field_steps`` fixed-point sweeps started bottom up with doubled
weights, and the model's statistics from ``chains`` persistent chains, each
update ``gibbs_steps`` sweeps v, h2 ~ p(. | h1), h1 ~ p(h1 | v, h2):

    -d bound / d theta = E_{data, q}[dE/d theta] - E_model[dE/d theta]

(E is linear in each unit, so E_q[E] = E(v, mu1, mu2); the chains' h1 enters
as its conditional mean given their v and h2, a Rao-Blackwellised statistic).
With ``lr_decay`` the joint stage's rate falls linearly toward zero over its
epochs, as the paper's did: the chains' statistics are a stochastic
approximation (Younes 1989; Tieleman 2008), which converges only as the rate
goes to zero.

log_prob(x) is the variational lower bound with the mean-field posterior,
    log p(v) >= -E(v, mu1, mu2) + H(mu1) + H(mu2) - log Z,
whose gap is KL(q || p(h1, h2 | v)).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams
from components.models.nn.ais import ais_log_partition, scaled_beta_schedule
from components.models.nn.rows import flatten, uniforms

STAGES = ("bottom RBM", "top RBM", "joint")  # the values of the ``stage`` buffer, in order


def entropy(mu: torch.Tensor) -> torch.Tensor:
    """H of independent Bernoulli(mu) units, summed over the last dimension: (..., H) -> (...)."""
    return -(torch.xlogy(mu, mu) + torch.xlogy(1 - mu, 1 - mu)).sum(-1)


def rbm_energy(a: torch.Tensor, h: torch.Tensor, W: torch.Tensor, b_a: torch.Tensor, b_h: torch.Tensor):
    """-a W h - a.b_a - h.b_h per row, (B,): an RBM's energy (its statistics are CD's)."""
    return -((a @ W) * h).sum(-1) - a @ b_a - h @ b_h


class DBM(Checkpointed, nn.Module):
    """A two-hidden-layer DBM over D = n_inputs binary units (see the module docstring).

    Optimizer: SGD with momentum (the paper's), not Adam. The model's statistics
    come from persistent chains, which stay near the model's distribution only
    while the parameters move slowly against the chains' mixing; SGD's step is
    proportional to the gradient, so it shrinks as the data and chain statistics
    agree, where Adam's normalised step stays about lr however noisy the
    difference is. The same optimizer serves the pretraining stages, as CD's
    usual one (the rbm family's too).
    """

    family: ClassVar[str] = "dbm"
    code_units = "binary"
    SAMPLE_STEPS: ClassVar[int] = 1000  # Gibbs sweeps per drawn sample
    EVAL_MEAN_FIELD_STEPS: ClassVar[int] = 50  # log_prob's sweeps: each raises the bound, and they are cheap
    AIS_SEED: ClassVar[int] = 0  # the AIS generator's seed: log Z is a function of the model's state

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        lr: float = 0.01  # SGD's learning rate, every stage (the dbm family trains by SGD with momentum, not Adam)
        hidden: tuple[int, ...] = (64, 64)  # H1, H2: the two binary hidden layers, bottom to top (paper: 500, 1000)
        pretrain_epochs: int = 10  # epochs of greedy pretraining per RBM (bottom, then top) before the joint stage
        mean_field_steps: int = 10  # fixed-point sweeps of the mean-field posterior per training batch (paper: 10)
        chains: int = 100  # persistent Markov chains for the model's statistics (paper: 100)
        gibbs_steps: int = 1  # Gibbs sweeps of the chains per update (1: PCD)
        momentum: float = 0.5  # SGD momentum
        weight_decay: float = 0.0002  # L2 weight cost on W1 and W2 (not on the biases)
        ais_chains: int = 100  # AIS runs for log Z (its estimate and ±3 standard-error bars)
        ais_betas: int = 14500  # AIS intermediate distributions: Salakhutdinov & Murray's schedule (500, 4000
        # and 10000 steps in [0, 0.5], [0.5, 0.9] and [0.9, 1]) scaled in proportion to this many
        lr_decay: bool = True  # the joint stage's learning rate falls linearly toward 0 over its epochs (lr times
        # 1, (J-1)/J, ..., 1/J for J joint epochs): the paper's "gradually decreased to zero", which the stochastic
        # approximation of the model's statistics needs to converge; false: lr throughout

        def validate(self) -> None:
            self.check_training("dbm")
            if len(self.hidden) != 2 or min(self.hidden) < 1:
                raise DulError(f"dbm.hidden is {list(self.hidden)}: give two layer sizes, both positive")
            for name, least in (("pretrain_epochs", 0), ("mean_field_steps", 1), ("chains", 1), ("gibbs_steps", 1),
                                ("ais_chains", 2), ("ais_betas", 3)):
                if getattr(self, name) < least:
                    raise DulError(f"dbm.{name} is {getattr(self, name)}: must be at least {least}")
            if 2 * self.pretrain_epochs > self.epochs:
                raise DulError(f"dbm.pretrain_epochs is {self.pretrain_epochs}: two RBMs' pretraining must fit "
                               f"in dbm.epochs ({self.epochs})")
            if not 0 <= self.momentum < 1:
                raise DulError(f"dbm.momentum is {self.momentum}: must be in [0, 1)")
            if self.weight_decay < 0:
                raise DulError(f"dbm.weight_decay is {self.weight_decay}: must be 0 or more")

    def __init__(self, n_inputs: int, hidden: Sequence[int], pretrain_epochs: int = 10, mean_field_steps: int = 10,
                 chains: int = 100, gibbs_steps: int = 1, init_std: float = 0.01, ais_chains: int = 100,
                 ais_betas: int = 14500, epochs: int | None = None, lr_decay: bool = False):
        super().__init__()
        hidden = [int(size) for size in hidden]
        if n_inputs < 1 or len(hidden) != 2 or min(hidden) < 1 or pretrain_epochs < 0 or min(
                mean_field_steps, chains, gibbs_steps) < 1 or ais_chains < 2 or ais_betas < 3:
            raise DulError(f"a DBM needs n_inputs >= 1, two positive hidden sizes, pretrain_epochs >= 0, "
                           f"mean_field_steps, chains and gibbs_steps >= 1, ais_chains >= 2 and ais_betas >= 3; "
                           f"got {n_inputs}, {hidden}, {pretrain_epochs}, {mean_field_steps}, {chains}, "
                           f"{gibbs_steps}, {ais_chains} and {ais_betas}")
        self.hyperparameters = {"n_inputs": n_inputs, "hidden": hidden, "pretrain_epochs": pretrain_epochs,
                                "mean_field_steps": mean_field_steps, "chains": chains, "gibbs_steps": gibbs_steps,
                                "init_std": init_std, "ais_chains": ais_chains, "ais_betas": ais_betas,
                                "epochs": epochs, "lr_decay": lr_decay}
        if lr_decay and epochs is None:
            raise DulError("a DBM whose rate decays over the joint stage needs the run's epochs")
        self.epochs, self.lr_decay, self.epoch = epochs, lr_decay, 0
        (H1, H2), D = hidden, n_inputs
        self.pretrain_epochs, self.mean_field_steps, self.gibbs_steps = pretrain_epochs, mean_field_steps, gibbs_steps
        self.ais_chains, self.ais_betas = ais_chains, ais_betas
        self.W1 = nn.Parameter(init_std * torch.randn(D, H1))  # (D, H1)
        self.W2 = nn.Parameter(init_std * torch.randn(H1, H2))  # (H1, H2)
        self.b_v = nn.Parameter(torch.zeros(D))  # (D,)
        self.b_h1 = nn.Parameter(torch.zeros(H1))  # (H1,)
        self.b_h2 = nn.Parameter(torch.zeros(H2))  # (H2,)
        self.b_top = nn.Parameter(torch.zeros(H1))  # (H1,) the top RBM's visible biases, until they join b_h1
        # The training state, in the state dict so that a resumed run continues bitwise: the stage (an index
        # into STAGES), the chains' h1 states (C, H1; set when the joint stage starts) and the training
        # split's pixel means (the chains' starting v).
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self.register_buffer("chains_h1", torch.zeros(chains, H1))
        self.register_buffer("base_rate", torch.full((D,), 0.5))
        self._log_z: tuple[tuple, tuple[float, float, float]] | None = None  # (fingerprint, log_partition())

    @classmethod
    def from_params(cls, params: DBM.Params, shape: tuple[int, ...]) -> DBM:
        """A DBM for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(math.prod(shape), params.hidden, params.pretrain_epochs, params.mean_field_steps, params.chains,
                   params.gibbs_steps, ais_chains=params.ais_chains, ais_betas=params.ais_betas, epochs=params.epochs,
                   lr_decay=params.lr_decay)

    @property
    def n_inputs(self) -> int:
        return self.W1.shape[0]  # D

    @property
    def code_size(self) -> int:
        return self.W2.shape[1]  # H2

    @torch.no_grad()
    def fit_inputs(self, X: torch.Tensor) -> None:
        """Keep the training split's pixel means (N, D) -> (D,): where the chains' v start."""
        X = flatten(X, torch.float64)
        if X.numel() and (not torch.isfinite(X).all() or X.min() < 0 or X.max() > 1):
            raise DulError("dbm training split: data must be binary (in [0, 1]); binarize it first")
        self.base_rate.copy_(X.mean(dim=0))

    # ---- the model's conditionals, energy and marginal ----

    def energy(self, v: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """E(v, h1, h2), (B,); for means in [0, 1] it is E_q[E] under the factorised q they define."""
        return -((v @ self.W1) * h1).sum(-1) - ((h1 @ self.W2) * h2).sum(-1) \
            - v @ self.b_v - h1 @ self.b_h1 - h2 @ self.b_h2

    def v_mean(self, h1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.b_v, h1, self.W1.T))  # p(v = 1 | h1), (B, D)

    def h2_mean(self, h1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.b_h2, h1, self.W2))  # p(h2 = 1 | h1), (B, H2)

    def h1_mean(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.b_h1, v, self.W1) + h2 @ self.W2.T)  # p(h1 = 1 | v, h2), (B, H1)

    def log_p_star_h1(self, h1: torch.Tensor) -> torch.Tensor:
        """log sum_{v, h2} exp(-E(v, h1, h2)), (B,): v and h2 summed out analytically."""
        return h1 @ self.b_h1 + F.softplus(torch.addmm(self.b_v, h1, self.W1.T)).sum(-1) \
            + F.softplus(torch.addmm(self.b_h2, h1, self.W2)).sum(-1)

    def as_rbm(self) -> types.SimpleNamespace:
        """The DBM as the RBM between visible h1 and hidden (v, h2): W (H1, D + H2),
        b_v = b_h1 (H1,), b_h = (b_v, b_h2) (D + H2,); its -F(h1) is ``log_p_star_h1`` and
        its Z the DBM's, so nn/ais.py's AIS and enumeration apply as they are."""
        return types.SimpleNamespace(W=torch.cat([self.W1.T, self.W2], dim=1), b_v=self.b_h1,
                                     b_h=torch.cat([self.b_v, self.b_h2]))

    # ---- inference and sampling ----

    def mean_field(self, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu1 (B, H1), mu2 (B, H2)) of q(h1, h2 | v): started bottom up with doubled weights,
        mu1 = sigmoid(2 v W1 + b_h1), mu2 = sigmoid(mu1 W2 + b_h2), then ``steps`` sweeps
        mu1 = sigmoid(v W1 + mu2 W2^T + b_h1), mu2 = sigmoid(mu1 W2 + b_h2). Each update
        maximises the bound over one layer given the other, so no sweep lowers it."""
        bottom_up = torch.addmm(self.b_h1, v, self.W1)  # v W1 + b_h1, (B, H1)
        mu1 = torch.sigmoid(bottom_up + v @ self.W1)
        mu2 = self.h2_mean(mu1)
        for _ in range(steps):
            mu1 = torch.sigmoid(bottom_up + mu2 @ self.W2.T)
            mu2 = self.h2_mean(mu1)
        return mu1, mu2

    def unnormalised_bound(self, v: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> torch.Tensor:
        """-E_q[E(v, h)] + H(q), (B,): the bound on log p*(v) = log p(v) + log Z."""
        return -self.energy(v, mu1, mu2) + entropy(mu1) + entropy(mu2)

    def gibbs(self, h1: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        """``steps`` sweeps v ~ p(v | h1), h2 ~ p(h2 | h1), then h1 ~ p(h1 | v, h2), from h1 (C, H1);
        returns the last sweep's states (v, h1, h2), a draw of the joint if h1 was one of its
        marginal. Uniforms from ``generator`` (on its own device), else the global RNG."""
        (D, H1), H2 = self.W1.shape, self.W2.shape[1]
        n = len(h1)
        for _ in range(steps):
            v = (uniforms(n, D, generator, h1) < self.v_mean(h1)).to(h1.dtype)
            h2 = (uniforms(n, H2, generator, h1) < self.h2_mean(h1)).to(h1.dtype)
            h1 = (uniforms(n, H1, generator, h1) < self.h1_mean(v, h2)).to(h1.dtype)
        return v, h1, h2

    # ---- training ----

    def optimizers(self, params: DBM.Params) -> list[torch.optim.Optimizer]:
        """SGD with momentum (why: the class docstring); the weight cost on W1 and W2 only."""
        groups = [{"params": [self.W1, self.W2], "weight_decay": params.weight_decay},
                  {"params": [self.b_v, self.b_h1, self.b_h2, self.b_top], "weight_decay": 0.0}]
        return [torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum)]

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        """The loop's call before epoch ``epoch`` (0-based): move to that epoch's stage, bottom RBM
        for the first ``pretrain_epochs``, top RBM for the next as many, joint after. Entering the
        joint stage combines the RBMs and starts the chains; stages never go back."""
        P = self.pretrain_epochs
        self.epoch = epoch
        target = 0 if epoch < P else 1 if epoch < 2 * P else 2
        if int(self.stage) < 2 <= target:
            self.b_h1.add_(self.b_top).mul_(0.5)  # h1's input halved: the two RBMs' biases averaged
            v = (torch.rand_like(self.base_rate.expand(len(self.chains_h1), -1)) < self.base_rate).to(self.W1.dtype)
            mu1 = torch.sigmoid(torch.addmm(self.b_h1, v, 2 * self.W1))
            self.chains_h1.copy_(torch.rand_like(mu1) < mu1)  # h1 ~ p(h1 | 2v) of v from the base rates
        self.stage.fill_(max(int(self.stage), target))

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One SGD step of the current stage on the batch x (B, D). The loss logged is the squared
        error per item of the stage's mean-field reconstruction of its own data (v, or the top
        RBM's h1), before the step; ``stage`` is the index into STAGES."""
        (optimizer,) = optimizers
        v = flatten(x, self.W1.dtype)  # (B, D)
        optimizer.zero_grad(set_to_none=True)
        stage = int(self.stage)
        for group in optimizer.param_groups:  # "initial_lr" is saved with the optimizer: a resumed run decays alike
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * self.rate_factor(stage)
        surrogate, error = (self._bottom_rbm, self._top_rbm, self._joint)[stage](v)
        surrogate.backward()
        optimizer.step()
        return {"loss": error, "stage": torch.tensor(float(stage))}

    def rate_factor(self, stage: int) -> float:
        """The learning rate's factor in the current epoch: 1 while pretraining (and without
        ``lr_decay``); in joint epoch j of J, 1 - j / J."""
        if not self.lr_decay or stage < 2:
            return 1.0
        joint_start = 2 * self.pretrain_epochs
        return 1.0 - (self.epoch - joint_start) / (self.epochs - joint_start)

    def _bottom_rbm(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CD-1 on (v, h1) with v doubled: h ~ sigmoid(2 v W1 + b_h1), v_neg = sigmoid(h W1^T + b_v)
        (kept as means). The tied copies' factor 2 in the statistics is left to the learning rate."""
        W, b_v, b_h = self.W1, self.b_v, self.b_h1
        with torch.no_grad():
            h_pos = torch.sigmoid(torch.addmm(b_h, v, 2 * W))  # (B, H1)
            v_neg = self.v_mean((torch.rand_like(h_pos) < h_pos).to(v.dtype))  # (B, D)
            h_neg = torch.sigmoid(torch.addmm(b_h, v_neg, 2 * W))
            error = (v - self.v_mean(h_pos)).square().sum(-1).mean()
        return rbm_energy(v, h_pos, W, b_v, b_h).mean() - rbm_energy(v_neg, h_neg, W, b_v, b_h).mean(), error

    def _top_rbm(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CD-1 on (h1, h2), h1 ~ p(h1 | v) of the bottom RBM, with h2 doubled:
        h2 ~ sigmoid(h1 W2 + b_h2), h1_neg = sigmoid(2 h2 W2^T + b_top) (kept as means)."""
        W, b_a, b_h = self.W2, self.b_top, self.b_h2
        with torch.no_grad():
            p1 = torch.sigmoid(torch.addmm(self.b_h1, v, 2 * self.W1))
            h1 = (torch.rand_like(p1) < p1).to(v.dtype)  # (B, H1): the top RBM's data
            h_pos = self.h2_mean(h1)  # (B, H2)
            h2 = (torch.rand_like(h_pos) < h_pos).to(v.dtype)
            h1_neg = torch.sigmoid(torch.addmm(b_a, h2, 2 * W.T))  # (B, H1)
            h_neg = self.h2_mean(h1_neg)
            error = (h1 - torch.sigmoid(torch.addmm(b_a, h_pos, 2 * W.T))).square().sum(-1).mean()
        return rbm_energy(h1, h_pos, W, b_a, b_h).mean() - rbm_energy(h1_neg, h_neg, W, b_a, b_h).mean(), error

    def _joint(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean field for the data, ``gibbs_steps`` sweeps of the persistent chains for the model."""
        with torch.no_grad():
            mu1, mu2 = self.mean_field(v, self.mean_field_steps)
            v_neg, h1, h2_neg = self.gibbs(self.chains_h1, self.gibbs_steps)
            self.chains_h1.copy_(h1)
            negative = (v_neg, self.h1_mean(v_neg, h2_neg), h2_neg)  # h1 Rao-Blackwellised: E[h1 | v, h2]
            error = (v - self.v_mean(mu1)).square().sum(-1).mean()
        return self.joint_loss(v, (mu1, mu2), negative), error

    def joint_loss(self, v: torch.Tensor, posterior: tuple[torch.Tensor, torch.Tensor],
                   negative: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   weights: torch.Tensor | None = None) -> torch.Tensor:
        """mean E(v, mu1, mu2) - E_neg[E(v~, h1~, h2~)], all states constants: its gradient is the
        joint stage's, -(gradient of the bound) with E_model replaced by the negative states,
        weighted by ``weights`` (summing to 1) or equally."""
        energies = self.energy(*negative)
        model = energies.mean() if weights is None else (weights * energies).sum()
        return self.energy(v, *posterior).mean() - model

    # ---- the capabilities: Density, Sampler, Encoder, Reconstructor ----

    def _fingerprint(self) -> tuple:
        """Changes whenever the parameters or what AIS's base rate comes from do (see RBM's)."""
        return tuple((t.device, t.dtype, t.data_ptr(), t._version, float(t.detach().sum()))
                     for t in (self.W1, self.W2, self.b_v, self.b_h1, self.b_h2, self.chains_h1, self.stage))

    def log_partition(self) -> tuple[float, float, float]:
        """(log Z, lower, upper) by AIS over h1 (``as_rbm``), cached per state. The base rate model's
        h1 means are the persistent chains' (near the model's own marginal) once they run, else 1/2."""
        key = self._fingerprint()
        if self._log_z is None or self._log_z[0] != key:
            base = self.chains_h1.mean(dim=0) if self.stage == 2 else None
            estimate = ais_log_partition(self.as_rbm(), base_rate=base, n_chains=self.ais_chains,
                                         betas=scaled_beta_schedule(self.ais_betas), seed=self.AIS_SEED)
            self._log_z = (key, estimate)
        return self._log_z[1]

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """The mean-field lower bound on log p(x) in nats, x (B, D) -> (B,) float64, log Z by AIS
        and EVAL_MEAN_FIELD_STEPS sweeps; ``samples`` is ignored."""
        v = flatten(x, self.W1.dtype)
        mu1, mu2 = self.mean_field(v, max(self.mean_field_steps, self.EVAL_MEAN_FIELD_STEPS))
        return self.unnormalised_bound(v, mu1, mu2).double() - self.log_partition()[0]

    def estimator(self, samples: int) -> str:
        """"ais-bound": the mean-field lower bound on log p*(v) with log Z by AIS (the paper's
        test figure), a bound like "elbo", not the RBM's "ais" estimate of log p(v) itself."""
        return "ais-bound"

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """p(v = 1 | mu1), (B, D): the data through the mean-field posterior and back."""
        v = flatten(x, self.W1.dtype)
        return self.v_mean(self.mean_field(v, self.mean_field_steps)[0])

    @torch.no_grad()
    def validation_figures(self, x: torch.Tensor) -> dict[str, float]:
        """The loop's figure after every epoch: the mean-field reconstruction's squared error per
        item (no partition function; AIS runs once, for the test figures)."""
        v = flatten(x, self.W1.dtype)
        return {"valid_recon_error": float((v - self.reconstruct(v)).square().sum(-1).mean())}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D): p(v = 1 | h1) after SAMPLE_STEPS Gibbs sweeps of n fresh chains from
        h1 ~ Bernoulli(1/2), uniforms from ``generator`` (the persistent chains stay as they are)."""
        h1 = (uniforms(n, self.W1.shape[1], generator, self.W1) < 0.5).to(self.W1.dtype)
        return self.v_mean(self.gibbs(h1, self.SAMPLE_STEPS, generator)[1])

    def filters(self) -> torch.Tensor:
        """(D, K): the weights between the visible units and each first-layer hidden unit, one a column (``Filters``: the picture of what the first layer learned)."""
        return self.W1.detach()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, H2): mu2 of the mean-field posterior, the top layer's, which sees the
        data through both layers (mu1 feeds it and it feeds mu1 back)."""
        return self.mean_field(flatten(x, self.W1.dtype), self.mean_field_steps)[1]
