"""Sparse coding: a dictionary of unit-norm atoms learned online, codes by the Lasso.

Olshausen & Field (1996), "Emergence of simple-cell receptive field properties
by learning a sparse code for natural images" (Nature 381). Each item x (N,)
is explained by a sparse combination a (K,) of the atoms, the columns of a
dictionary D (N, K), ||d_j|| = 1:

    E(x) = min_a 0.5 ||x - D a||^2 + lam ||a||_1

The dictionary starts as K training items drawn at random (``fit_inputs``,
seeded by the loop), scaled to unit norm. Training then alternates, per
mini-batch (Mairal, Bach, Ponce & Sapiro (2009), "Online dictionary learning
for sparse coding", ICML, Algorithms 1 and 2):

1. codes: the Lasso for every item with D fixed, by batched FISTA from zero
   (components/models/nn/lasso.py), ``lasso_iterations`` steps;
2. statistics: A (K, K) and B (N, K), the surrogate's sufficient statistics,
   with the mini-batch forgetting of Mairal et al. section 3.4.2, as
   scikit-learn's MiniBatchDictionaryLearning keeps them (eta the batch size,
   t the batches seen before this one):

       theta = (t + 1) eta  if t < eta - 1,  else  eta^2 + t + 1 - eta
       beta  = (theta + 1 - eta) / (theta + 1)
       A <- beta A + sum_i a_i a_i^T / eta,    B <- beta B + sum_i x_i a_i^T / eta

3. dictionary: one pass of block-coordinate descent on the surrogate
   0.5 tr(D^T D A) - tr(D^T B), atom by atom (Algorithm 2):

       u_j = (b_j - D a_j) / A_jj + d_j,    d_j = u_j / ||u_j||

   On the unit sphere ||d_j|| = 1 the surrogate in d_j is -d_j^T (A_jj u_j)
   plus a constant, so u_j / ||u_j|| is that block's exact minimiser (Mairal
   projects onto the ball ||d_j|| <= 1 instead; the atoms here have unit norm
   exactly, as the objective states). An atom with A_jj <= 1e-6 (scikit-learn's
   and SPAMS's threshold: used by almost no item lately) is re-drawn as the
   normalised residual x - D a of the batch's worst-reconstructed item (the
   largest ||x - D a||, one item per such atom, as K-SVD's replacement rule:
   Aharon, Elad & Bruckstein 2006), a deterministic rule, so a resumed run
   needs no random state.

A, B and the batch count t are buffers: a resumed run continues bitwise. No
torch optimizer is used (``optimizers`` is empty), so several workers would
each learn from their own shard: train it on one worker.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from components.errors import DulError
from components.models.base import Checkpointed, TrainingParams
from components.models.nn.lasso import check_atoms, fista, lasso_objective
from components.models.nn.rows import flatten

UNUSED = 1e-6  # A_jj at or below this: the atom is re-drawn (scikit-learn's and SPAMS's threshold)


class SparseCoding(Checkpointed, nn.Module):
    """A dictionary D (N, K) of K = atoms unit-norm atoms over N = n_inputs real values (module docstring)."""

    family: ClassVar[str] = "sparse_coding"
    inputs: ClassVar[str] = "real"  # the intensities in [0, 1], not binarized
    code_units = "linear"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        lr: float = 0.001  # unused: the dictionary step is a closed-form update (kept positive, as every family's)
        atoms: int = 64  # K, the dictionary's atoms (columns of unit L2 norm), the code's size
        lam: float = 0.1  # lambda, the weight of ||a||_1 in 0.5 ||x - D a||^2 + lambda ||a||_1
        lasso_iterations: int = 100  # FISTA steps per batch (and per encode), from zero codes

        def validate(self) -> None:
            self.check_training("sparse_coding")
            for name in ("atoms", "lasso_iterations"):
                if getattr(self, name) < 1:
                    raise DulError(f"sparse_coding.{name} is {getattr(self, name)}: must be positive")
            if not self.lam > 0:
                raise DulError(f"sparse_coding.lam is {self.lam}: must be positive")

    def __init__(self, n_inputs: int, atoms: int, lam: float, lasso_iterations: int):
        super().__init__()
        if n_inputs < 1 or atoms < 1 or lasso_iterations < 1 or not lam > 0:
            raise DulError(f"sparse coding needs positive inputs, atoms, lam and lasso_iterations, "
                           f"got {n_inputs}, {atoms}, {lam} and {lasso_iterations}")
        self.hyperparameters = {"n_inputs": n_inputs, "atoms": atoms, "lam": lam,
                                "lasso_iterations": lasso_iterations}
        self.lam, self.lasso_iterations = lam, lasso_iterations
        D = torch.randn(n_inputs, atoms)
        self.D = nn.Parameter(D / D.norm(dim=0), requires_grad=False)  # (N, K), unit-norm columns
        self.register_buffer("A", torch.zeros(atoms, atoms))  # sum of a a^T, with forgetting (K, K)
        self.register_buffer("B", torch.zeros(n_inputs, atoms))  # sum of x a^T, with forgetting (N, K)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # t, batches seen

    @property
    def n_inputs(self) -> int:
        return self.D.shape[0]

    @property
    def code_size(self) -> int:
        return self.D.shape[1]

    @classmethod
    def from_params(cls, params: SparseCoding.Params, shape: tuple[int, ...]) -> SparseCoding:
        """Sparse coding for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(n_inputs=math.prod(shape), atoms=params.atoms, lam=params.lam,
                   lasso_iterations=params.lasso_iterations)

    def fit_inputs(self, X: torch.Tensor) -> None:
        """No more atoms than training items (``check_atoms``), then the starting dictionary drawn from them."""
        check_atoms("sparse_coding", self.code_size, len(X))
        self.init_from(X)

    @torch.no_grad()
    def init_from(self, X: torch.Tensor) -> None:
        """The starting dictionary: K training items drawn without replacement (from the
        global generator, which the loop seeds) and scaled to unit norm, in place of the
        random atoms. Mairal, Bach, Ponce & Sapiro (JMLR 2010), section 5: "initialized
        with random elements of the training set". Items of zero norm (blank) are never
        drawn; atoms left over, if there are too few others, stay random."""
        X = flatten(X, self.D.dtype)
        norms = X.norm(dim=1)
        candidates = torch.nonzero(norms > 0).flatten()
        chosen = candidates[torch.randperm(len(candidates))[:self.code_size].to(candidates.device)]
        self.D[:, :len(chosen)] = (X[chosen] / norms[chosen, None]).T

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return []  # the dictionary step is a closed-form block-coordinate update, not a gradient step

    @torch.no_grad()
    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """Codes for the batch x (B, N), then the statistics and the dictionary; returns the
        batch's mean objective (before the dictionary step) and the mean non-zero codes per item."""
        x = flatten(x, self.D.dtype)
        a = self.encode(x)  # (B, K)
        objective = lasso_objective(x, self.D, a, self.lam).mean()
        self.accumulate(x, a)
        self.update_dictionary(residual=x - a @ self.D.T)
        return {"loss": objective, "nonzero": (a != 0).sum(dim=1).to(x.dtype).mean()}

    @torch.no_grad()
    def accumulate(self, x: torch.Tensor, a: torch.Tensor) -> None:
        """A <- beta A + a^T a / eta, B <- beta B + x^T a / eta (module docstring, step 2)."""
        eta, t = len(x), int(self.steps)
        theta = (t + 1) * eta if t < eta - 1 else eta * eta + t + 1 - eta
        beta = (theta + 1 - eta) / (theta + 1)
        self.A.mul_(beta).add_(a.T @ a / eta)
        self.B.mul_(beta).add_(x.T @ a / eta)
        self.steps += 1

    @torch.no_grad()
    def update_dictionary(self, residual: torch.Tensor | None = None) -> None:
        """One block-coordinate pass over the atoms (module docstring, step 3); atoms with
        A_jj <= UNUSED become the largest rows of ``residual`` (B, N), normalised, else stay."""
        D, A, B = self.D, self.A, self.B
        unused = []
        for j in range(D.shape[1]):
            if A[j, j] <= UNUSED:
                unused.append(j)
                continue
            u = (B[:, j] - D @ A[:, j]) / A[j, j] + D[:, j]  # (N,)
            norm = u.norm()
            if norm > 0:
                D[:, j] = u / norm
        if unused and residual is not None:
            self.redraw(unused, residual)

    def redraw(self, unused: list[int], residual: torch.Tensor) -> None:
        """Atoms ``unused`` <- the normalised residuals (B, N) of largest norm, one each."""
        norms = residual.norm(dim=1)
        worst = torch.argsort(norms, descending=True, stable=True)[:len(unused)]
        for j, i in zip(unused, worst.tolist()):
            if norms[i] > 0:
                self.D[:, j] = residual[i] / norms[i]

    def filters(self) -> torch.Tensor:
        """(D, K): the dictionary's atoms, one a column, unit norm (``Filters``: the picture of what the first layer learned)."""
        return self.D.detach()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The Lasso codes (B, K) of x (B, N) with the learned dictionary (FISTA, ``lasso_iterations`` steps)."""
        return fista(flatten(x, self.D.dtype), self.D, self.lam, self.lasso_iterations)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """D a (B, N), a = encode(x): the data's units."""
        return self.encode(x) @ self.D.T

    @torch.no_grad()
    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """0.5 ||x - D a||^2 + lam ||a||_1 per item (B,), a = encode(x)."""
        x = flatten(x, self.D.dtype)
        return lasso_objective(x, self.D, self.encode(x), self.lam)

    @torch.no_grad()
    def validation_figures(self, x: torch.Tensor) -> dict[str, float]:
        """The loop's figure after every epoch: the mean objective per item (lower is better)."""
        return {"valid_objective": float(torch.cat([self.objective(rows) for rows in x.split(500)]).double().mean())}
