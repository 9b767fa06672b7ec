"""The batched Lasso the sparse-coding families share (sparse coding, PSD): FISTA.

Beck & Teboulle (2009), "A fast iterative shrinkage-thresholding algorithm for
linear inverse problems" (SIAM J. Imaging Sciences). For every row x of a
batch, with the dictionary D (N, K) fixed (its columns are the atoms), FISTA
minimises

    E(a) = 0.5 ||x - D a||^2 + 0.5 alpha ||a - t||^2 + lam ||a||_1      a (K,)

(alpha = 0: the Lasso of sparse coding; alpha > 0 and t = F(x): the energy
of predictive sparse decomposition) by proximal gradient steps on the smooth
part f(a) = 0.5 ||x - D a||^2 + 0.5 alpha ||a - t||^2 with Nesterov's momentum:

    a_k     = S_{lam/L}(y_k - grad f(y_k) / L)     S_c(v) = sign(v) max(|v| - c, 0)
    s_{k+1} = (1 + sqrt(1 + 4 s_k^2)) / 2
    y_{k+1} = a_k + ((s_k - 1) / s_{k+1}) (a_k - a_{k-1})

with the constant step 1/L, L = lambda_max(D^T D) + alpha, the Lipschitz
constant of grad f. The gradient D^T (D y - x) + alpha (y - t) is computed as
y G - x D + alpha (y - t) with the Gram matrix G = D^T D (K, K), so an
iteration costs O(B K^2), whatever N. E(a_k) - E(a*) <= 2 L ||a_0 - a*||^2 /
(k + 1)^2 (Beck & Teboulle, Theorem 4.4). Everything runs in torch, without
gradients, on the rows' device and in the dictionary's dtype.
"""

from __future__ import annotations

import math

import torch


def check_atoms(family: str, atoms: int, items: int) -> None:
    """Refuse a dictionary of more atoms than the training split has items (a
    one-line DulError naming ``<family>.atoms``): the codes of N items span at
    most N directions, so the other atoms would only ever be reset, never learned."""
    if atoms > items:
        from components.errors import DulError

        raise DulError(f"{family}.atoms is {atoms} but the training split has {items} items; a dictionary "
                       f"cannot be learned with more atoms than items: set {family}.atoms <= {items}")


def lipschitz(D: torch.Tensor) -> torch.Tensor:
    """lambda_max(D^T D), the largest eigenvalue of the small (K, K) Gram matrix: a 0-d tensor."""
    return torch.linalg.eigvalsh(D.T @ D)[-1]


def soft_threshold(v: torch.Tensor, c: float | torch.Tensor) -> torch.Tensor:
    """S_c(v) = sign(v) max(|v| - c, 0), elementwise: the proximal map of c ||.||_1."""
    return torch.sign(v) * torch.clamp(v.abs() - c, min=0)


def lasso_objective(x: torch.Tensor, D: torch.Tensor, a: torch.Tensor, lam: float) -> torch.Tensor:
    """0.5 ||x - D a||^2 + lam ||a||_1 per row: x (B, N), D (N, K), a (B, K) -> (B,)."""
    return 0.5 * (x - a @ D.T).pow(2).sum(dim=1) + lam * a.abs().sum(dim=1)


@torch.no_grad()
def fista(x: torch.Tensor, D: torch.Tensor, lam: float, iterations: int, *, alpha: float = 0.0,
          target: torch.Tensor | None = None, start: torch.Tensor | None = None) -> torch.Tensor:
    """The codes a (B, K) after ``iterations`` FISTA steps on E (module docstring) for rows x (B, N).

    ``target`` t (B, K) is used only with alpha > 0; ``start`` a_0 (B, K) defaults
    to zero (the warm start of sparse coding; PSD starts from its prediction)."""
    x = x.to(D.dtype)
    G, xD = D.T @ D, x @ D  # (K, K), (B, K)
    step = 1.0 / (lipschitz(D) + alpha)
    if alpha > 0:
        xD = xD + alpha * target  # the constant part of -grad f: D^T x + alpha t
        G = G + alpha * torch.eye(len(G), dtype=G.dtype, device=G.device)
    a = torch.zeros_like(xD) if start is None else start.to(xD.dtype).clone()
    y, s = a, 1.0
    for _ in range(iterations):
        a_next = soft_threshold(y - step * (y @ G - xD), lam * step)
        s_next = (1 + math.sqrt(1 + 4 * s * s)) / 2
        y = a_next + ((s - 1) / s_next) * (a_next - a)
        a, s = a_next, s_next
    return a
