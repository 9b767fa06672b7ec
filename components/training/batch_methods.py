"""The paper's fine-tuning optimisers: conjugate gradients or L-BFGS on large batches.

Hinton & Salakhutdinov (2006), supporting material: the unrolled
autoencoder was fine-tuned with conjugate gradients (Rasmussen's
``minimize.m``) on mini-batches of 1,000 images, three line searches per
batch, starting afresh on each batch. ``minimize_batch`` does the same with
scipy's nonlinear conjugate gradients (Polak-Ribiere with a Wolfe line
search; ``maxiter`` iterations = line searches) or with torch's L-BFGS and a
strong-Wolfe line search.

With several data-parallel workers every function evaluation averages the
loss and (through DDP) the gradient over all of them, so every worker sees
identical values, takes identical steps and stays in lockstep.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from components.models.autoencoder import reconstruction_losses

METHODS = ("cg", "lbfgs")


def minimize_batch(model: torch.nn.Module, x: torch.Tensor, method: str, line_searches: int,
                   world_size: int = 1, input_units: str = "bernoulli", noise: torch.Tensor | None = None,
                   target: torch.Tensor | None = None) -> None:
    """Run ``line_searches`` iterations of ``method`` on the reconstruction loss of batch ``x`` (B, D)
    against ``target`` (B, D) (default x; gaussian inputs: x standardised, ``DeepAutoencoder.target``).

    ``noise`` (B, code) is the code-layer noise, drawn once per batch and
    reused by every evaluation ("deterministic noise", Salakhutdinov &
    Hinton 2009), so the line searches see one fixed objective."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    target = x if target is None else target

    def evaluate() -> torch.Tensor:  # loss averaged over workers; .grad set (averaged by DDP)
        for p in parameters:
            p.grad = None
        loss = reconstruction_losses(model(x, noise), target, input_units)["loss"]
        loss.backward()
        value = loss.detach().clone()
        if world_size > 1:
            torch.distributed.all_reduce(value)
            value /= world_size
        return value

    if method == "lbfgs":
        optimizer = torch.optim.LBFGS(parameters, lr=1.0, max_iter=line_searches, tolerance_grad=0.0,
                                      tolerance_change=0.0, line_search_fn="strong_wolfe")
        optimizer.step(evaluate)
    elif method == "cg":
        _conjugate_gradients(parameters, evaluate, line_searches)
    else:
        raise ValueError(f"unknown batch method {method!r}; expected one of {METHODS}")


def _conjugate_gradients(parameters: list[torch.Tensor], evaluate, line_searches: int) -> None:
    """scipy's CG over the flattened parameters (float64 in scipy, the model's dtype in torch)."""

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        _assign(parameters, theta)
        value = evaluate()
        gradient = torch.cat([p.grad.reshape(-1) for p in parameters])
        return float(value), gradient.detach().cpu().double().numpy()

    start = torch.cat([p.detach().reshape(-1) for p in parameters]).cpu().double().numpy()
    result = scipy.optimize.minimize(fun, start, jac=True, method="CG",
                                     options={"maxiter": line_searches, "gtol": 0.0})
    _assign(parameters, result.x)


@torch.no_grad()
def _assign(parameters: list[torch.Tensor], theta: np.ndarray) -> None:
    offset = 0
    for p in parameters:
        chunk = torch.from_numpy(theta[offset:offset + p.numel()])
        p.copy_(chunk.view_as(p).to(p.dtype))
        offset += p.numel()
