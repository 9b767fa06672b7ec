"""Predictive sparse decomposition (PSD): sparse coding with a fast learned encoder.

Kavukcuoglu, Ranzato & LeCun, "Fast inference in sparse coding algorithms
with applications to object recognition" (NYU technical report
CBLL-TR-2008-12-01; arXiv:1010.3467). Sparse coding's dictionary D (N, K) of
unit-norm atoms, plus a feed-forward encoder trained to predict the optimal
codes:

    F(x) = g * tanh(W x + b)                  W (K, N), b (K,), g (K,) a diagonal gain
    L(x, z) = ||x - D z||^2 + lam ||z||_1 + alpha ||z - F(x)||^2     (the paper's loss)

Training, per mini-batch (the paper's learning scheme):

1. inference: z* = argmin_z L(x, z) with D and F fixed, by batched FISTA with
   the extra quadratic term (components/models/nn/lasso.py; L / 2 is its
   energy with lam / 2 and alpha), warm-started at z = F(x),
   ``lasso_iterations`` steps;
2. learning: one Adam step on D, W, b, g for the batch mean of L(x, z*) with
   z* fixed (the l1 term is then a constant), then every atom d_j <- d_j / ||d_j||.

The point of PSD: ``encode(x) = F(x)``, one pass, no optimisation;
``reconstruct(x) = D F(x)`` accordingly. Note the paper's scaling: lam here
weighs ||z||_1 against ||x - D z||^2, not 0.5 ||x - D z||^2, so, the prediction
term aside, PSD's lam = 0.2 is sparse_coding's lam = 0.1 (the default of each).
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
from components.models.nn.lasso import check_atoms, fista
from components.models.nn.rows import flatten


class PSD(Checkpointed, nn.Module):
    """Predictive sparse decomposition over N = n_inputs real values, K = atoms (module docstring)."""

    family: ClassVar[str] = "psd"
    inputs: ClassVar[str] = "real"  # the intensities in [0, 1], not binarized
    code_units = "linear"

    @dataclasses.dataclass(frozen=True)
    class Params(TrainingParams):
        atoms: int = 64  # K, the dictionary's atoms (columns of unit L2 norm) and the encoder's outputs
        lam: float = 0.2  # lambda, the weight of ||z||_1 in ||x - D z||^2 + lambda ||z||_1 + alpha ||z - F(x)||^2
        alpha: float = 1.0  # alpha, the weight of the encoder's prediction error ||z - F(x)||^2 in that energy
        lasso_iterations: int = 100  # FISTA steps inferring z per batch, warm-started at F(x)

        def validate(self) -> None:
            self.check_training("psd")
            for name in ("atoms", "lasso_iterations"):
                if getattr(self, name) < 1:
                    raise DulError(f"psd.{name} is {getattr(self, name)}: must be positive")
            for name in ("lam", "alpha"):
                if not getattr(self, name) > 0:
                    raise DulError(f"psd.{name} is {getattr(self, name)}: must be positive")

    def __init__(self, n_inputs: int, atoms: int, lam: float, alpha: float, lasso_iterations: int):
        super().__init__()
        if n_inputs < 1 or atoms < 1 or lasso_iterations < 1 or not lam > 0 or not alpha > 0:
            raise DulError(f"PSD needs positive inputs, atoms, lam, alpha and lasso_iterations, "
                           f"got {n_inputs}, {atoms}, {lam}, {alpha} and {lasso_iterations}")
        self.hyperparameters = {"n_inputs": n_inputs, "atoms": atoms, "lam": lam, "alpha": alpha,
                                "lasso_iterations": lasso_iterations}
        self.lam, self.alpha, self.lasso_iterations = lam, alpha, lasso_iterations
        D = torch.randn(n_inputs, atoms)
        self.D = nn.Parameter(D / D.norm(dim=0))  # (N, K), unit-norm columns
        self.W = nn.Parameter(torch.empty(atoms, n_inputs).uniform_(-1, 1) / math.sqrt(n_inputs))  # (K, N)
        self.b = nn.Parameter(torch.zeros(atoms))  # (K,)
        self.g = nn.Parameter(torch.ones(atoms))  # (K,), the diagonal gain G

    @property
    def n_inputs(self) -> int:
        return self.D.shape[0]

    @property
    def code_size(self) -> int:
        return self.D.shape[1]

    @classmethod
    def from_params(cls, params: PSD.Params, shape: tuple[int, ...]) -> PSD:
        """PSD for items of ``shape`` ((D,) or (C, H, W), flattened in that order)."""
        return cls(n_inputs=math.prod(shape), atoms=params.atoms, lam=params.lam, alpha=params.alpha,
                   lasso_iterations=params.lasso_iterations)

    def fit_inputs(self, X: torch.Tensor) -> None:
        """No more atoms than training items (``check_atoms``)."""
        check_atoms("psd", self.code_size, len(X))

    def optimizers(self, params: TrainingParams) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=params.lr)]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) = g * tanh(W x + b): x (B, N) -> (B, K), differentiable."""
        return self.g * torch.tanh(flatten(x, self.W.dtype) @ self.W.T + self.b)

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """z* (B, K) = argmin_z L(x, z) with D and F fixed: FISTA on L / 2 from z = F(x)."""
        x, prediction = flatten(x, self.D.dtype), self.predict(x)
        return fista(x, self.D, self.lam / 2, self.lasso_iterations, alpha=self.alpha, target=prediction,
                     start=prediction)

    def energy(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """L(x, z) per item (B,) and its parts: ``reconstruction`` ||x - D z||^2,
        ``sparsity`` ||z||_1 and ``prediction`` ||z - F(x)||^2."""
        x = flatten(x, self.D.dtype)
        parts = {"reconstruction": (x - z @ self.D.T).pow(2).sum(dim=1), "sparsity": z.abs().sum(dim=1),
                 "prediction": (z - self.predict(x)).pow(2).sum(dim=1)}
        return {"energy": parts["reconstruction"] + self.lam * parts["sparsity"] + self.alpha * parts["prediction"],
                **parts}

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """Infer z*, one Adam step on the batch mean of L(x, z*), atoms back to unit norm. Returns
        the mean energy (``loss``) and prediction error before the step."""
        (optimizer,) = optimizers
        z = self.infer(x)
        optimizer.zero_grad(set_to_none=True)
        parts = self.energy(x, z)
        parts["energy"].mean().backward()
        optimizer.step()
        with torch.no_grad():
            self.D.div_(self.D.norm(dim=0))
        return {"loss": parts["energy"].mean().detach(), "prediction_error": parts["prediction"].mean().detach()}

    def filters(self) -> torch.Tensor:
        """(D, K): the dictionary's atoms, one a column, unit norm (the encoder learns to predict their codes) (``Filters``: the picture of what the first layer learned)."""
        return self.D.detach()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) (B, K): the encoder's one pass, PSD's fast approximation of the sparse code."""
        return self.predict(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """D F(x) (B, N): the data's units."""
        return self.encode(x) @ self.D.T

    @torch.no_grad()
    def validation_figures(self, x: torch.Tensor) -> dict[str, float]:
        """The loop's figures after every epoch, per item (lower is better): the energy at the
        inferred codes and the encoder's prediction error ||z* - F(x)||^2."""
        parts = [self.energy(rows, self.infer(rows)) for rows in x.split(500)]
        mean = {key: float(torch.cat([p[key] for p in parts]).double().mean()) for key in ("energy", "prediction")}
        return {"valid_energy": mean["energy"], "valid_prediction_error": mean["prediction"]}
