"""Penalties a layer-wise trainer adds to an RBM's CD gradients.

Sparsity target: Lee, Ekanadham & Ng (2008), "Sparse deep belief net model
for visual area V2" (NIPS); Hinton (2010), "A practical guide to training
restricted Boltzmann machines" §11. Each hidden unit j keeps a running
estimate of its mean activation,

    q_j <- decay q_j + (1 - decay) mean_b E[h_bj | v_b],

and the penalty cost * CE(target, q_j) (cross-entropy) has derivative
cost * (q_j - target) with respect to the unit's total input, which the
guide applies to the hidden bias and (optionally) the incoming weights:

    grad b_h_j += cost (q_j - target),  grad W_ij += cost mean_b(v_bi) (q_j - target).
"""

from __future__ import annotations

import torch

from components.errors import DulError


def add_sparsity_gradient(rbm, h_pos: torch.Tensor, q_running: torch.Tensor | None, target: float,
                          cost: float, decay: float = 0.9, v_pos: torch.Tensor | None = None) -> torch.Tensor:
    """Add the sparsity penalty's gradient to ``rbm.b_h.grad`` (and to
    ``rbm.W.grad`` when the batch ``v_pos`` (B, D) is given); return the new q (H,).

    Call after ``rbm.cd_gradients`` (which sets the gradients and leaves
    E[h | v_pos] in ``rbm.last_h_pos``, the ``h_pos`` (B, H) to pass here).
    ``q_running`` None starts the estimate at this batch's mean.
    """
    if not 0 < target < 1 or cost < 0 or not 0 <= decay < 1:
        raise DulError(f"sparsity: need 0 < target < 1, cost >= 0 and 0 <= decay < 1; "
                       f"got target={target}, cost={cost}, decay={decay}")
    if rbm.b_h.grad is None:
        raise DulError("sparsity: the RBM has no gradients yet; call rbm.cd_gradients(v) first")
    with torch.no_grad():
        q_batch = h_pos.mean(dim=0)  # (H,)
        q = q_batch if q_running is None else decay * q_running + (1 - decay) * q_batch
        penalty = cost * (q - target)  # (H,)
        rbm.b_h.grad.add_(penalty)
        if v_pos is not None:
            rbm.W.grad.add_(torch.outer(v_pos.mean(dim=0), penalty))  # (D, H)
    return q
