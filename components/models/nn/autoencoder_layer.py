"""One layer of a stacked (denoising) autoencoder, with tied weights.

The other greedy layer-wise pretraining: Bengio, Lamblin, Popovici &
Larochelle (2007), "Greedy layer-wise training of deep networks", train each
layer of the stack as an autoencoder instead of an RBM; Vincent, Larochelle,
Bengio & Manzagol (2008), "Extracting and composing robust features with
denoising autoencoders" (and Vincent et al., JMLR 2010, "Stacked denoising
autoencoders") train it to reconstruct the clean input from a corrupted one.

Encoder:   h = sigmoid(b_h + v~ W)    (B, H)   (b_h + v~ W for linear code units)
Decoder:   v^ = sigmoid(b_v + h W^T)  (B, D)
Loss:      - sum_i [v_i log v^_i + (1 - v_i) log(1 - v^_i)], averaged over the batch,
           against the clean v; v~ = v with masking noise: for each example a
           random round(noise * D) of its D inputs are set to 0 (v~ = v when noise = 0).
Sparse:    + cost * sum_j KL(rho || rho^_j), rho^_j = the batch's mean of h_j
           (binary code units), KL(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q)):
           the sparse autoencoder of Ng's CS294A notes ("Sparse autoencoder",
           section 3), pulling each unit's mean activation toward the target rho.

The parameters are named and shaped like an RBM's (W (D, H), b_v (D,), b_h (H,))
and the layer has the RBM's ``hidden_type``, ``h_mean`` and ``v_mean``, so a
trained stack unrolls into a ``DeepAutoencoder`` with ``from_rbms`` and one
greedy trainer drives both kinds through ``layer_step``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from components.errors import DulError
from components.models.base import TiedLayer

HIDDEN_TYPES = ("binary", "linear")


class AutoencoderLayer(TiedLayer):
    """Tied-weight autoencoder on Bernoulli (data in [0, 1]) visible units."""

    hidden_type = "binary"
    visible_type = "bernoulli"

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.1, noise: float = 0.0,
                 hidden_type: str = "binary", sparsity_target: float = 0.05, sparsity_cost: float = 0.0):
        if n_visible < 1 or n_hidden < 1:
            raise DulError(f"an autoencoder layer needs at least one unit per layer, got {n_visible}x{n_hidden}")
        if not 0.0 <= noise < 1.0:
            raise DulError(f"autoencoder layer noise is the fraction of inputs zeroed; "
                           f"it must be in [0, 1), got {noise}")
        if hidden_type not in HIDDEN_TYPES:
            raise DulError(f"autoencoder layer hidden_type must be one of {', '.join(HIDDEN_TYPES)}, "
                           f"got {hidden_type!r}")
        if not init_std > 0:
            raise DulError(f"autoencoder layer init_std must be positive, got {init_std}")
        if sparsity_cost and (hidden_type != "binary" or not 0 < sparsity_target < 1 or sparsity_cost < 0):
            raise DulError(f"the sparsity penalty needs binary code units, 0 < target < 1 and cost >= 0; got "
                           f"{hidden_type} units, target {sparsity_target}, cost {sparsity_cost}")
        super().__init__(n_visible, n_hidden, init_std)
        self.hidden_type = hidden_type
        self.noise = float(noise)
        self.sparsity_target, self.sparsity_cost = float(sparsity_target), float(sparsity_cost)

    def h_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The code from the hidden input x = b_h + v W: logistic, or x itself for linear units."""
        return x if self.hidden_type == "linear" else torch.sigmoid(x)

    def h_mean(self, v: torch.Tensor) -> torch.Tensor:
        """The clean encoding h = sigmoid(b_h + v W), (B, D) -> (B, H): what the next layer trains on."""
        return self.h_activation(torch.addmm(self.b_h, v, self.W))

    def v_logits(self, h: torch.Tensor) -> torch.Tensor:
        """b_v + h W^T, (B, H) -> (B, D)."""
        return torch.addmm(self.b_v, h, self.W.T)

    def v_mean(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstruction v^ = sigmoid(b_v + h W^T), (B, H) -> (B, D)."""
        return torch.sigmoid(self.v_logits(h))

    def encode(self, v: torch.Tensor) -> torch.Tensor:
        return self.h_mean(v)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.v_mean(h)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) reconstruction logits of the clean input."""
        return self.v_logits(self.h_mean(v))

    def corrupt(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masking noise: zero round(noise * D) inputs of each example, chosen
        uniformly at random (a fixed number per example, as in Vincent et al. 2008)."""
        n_zeroed = round(self.noise * v.shape[1])
        if n_zeroed == 0:
            return v
        scores = torch.rand(v.shape, generator=generator, device=v.device)  # (B, D)
        zeroed = scores.topk(n_zeroed, dim=1).indices  # (B, n_zeroed)
        return v.scatter(1, zeroed, 0.0)

    def loss(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of the clean reconstruction against v (summed over
        inputs, averaged over the batch) and the squared reconstruction error
        (same reduction, for logging). The training objective is this loss on a
        corrupted input (``layer_step``); with noise 0 the two are the same."""
        return _losses(self(v), v)

    def layer_step(self, v: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None,
                   chain: torch.Tensor | None = None) -> torch.Tensor:
        """Set ``.grad`` of W, b_v, b_h to the gradient of the (denoising) loss on
        the batch v (B, D) and return the clean-input reconstruction (B, D), detached.

        The RBM's ``layer_step`` contract, so the greedy trainer serves both:
        it follows with an all-reduce of the gradients and ``optimizer.step()``.
        ``k`` and ``chain`` (the RBM's CD steps and persistent chain) have no
        meaning here and are ignored. ``dtype``
        (e.g. torch.bfloat16) is the precision of the matrix products' inputs;
        activations, the loss and the gradients keep the parameters' dtype.
        """
        exact = self.W.dtype
        dtype = dtype or exact
        W, b_h, b_v = self.W.to(dtype), self.b_h.to(dtype), self.b_v.to(dtype)  # copies only if dtype differs
        for parameter in self.parameters():
            parameter.grad = None
        with torch.enable_grad():
            h = self.h_activation(torch.addmm(b_h, self.corrupt(v).to(dtype), W).to(exact))  # (B, H)
            logits = torch.addmm(b_v, h.to(dtype), W.T).to(exact)  # (B, D)
            loss = _losses(logits, v)["loss"]
            if self.sparsity_cost:
                loss = loss + self.sparsity_cost * sparsity_kl(h, self.sparsity_target)
            loss.backward()
        if self.noise == 0:
            return torch.sigmoid(logits.detach())
        with torch.no_grad():
            return self.v_mean(self.h_mean(v))

    @classmethod
    def check_data(cls, v: torch.Tensor, layer: str | None = None) -> None:
        """Bernoulli visible units model data in [0, 1]; anything else is an input error.
        ``layer`` names the layer in the message (the RBMs' ``check_data`` signature)."""
        if v.numel() and (not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1):
            raise DulError(
                f"{layer or cls.__name__}: visible data must be finite and in [0, 1] "
                f"(got min {v.min().item():.3g}, max {v.max().item():.3g}); scale the data first"
            )


def _losses(logits: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy and squared error, each summed over inputs and averaged over the batch."""
    cross_entropy = F.binary_cross_entropy_with_logits(logits, v, reduction="sum") / len(v)
    recon_error = (torch.sigmoid(logits) - v).pow(2).sum() / len(v)
    return {"loss": cross_entropy, "recon_error": recon_error.detach()}


def sparsity_kl(h: torch.Tensor, target: float) -> torch.Tensor:
    """sum_j KL(target || rho^_j) for the batch's mean activations rho^ = mean of h (B, H) over B."""
    rho = h.mean(dim=0).clamp(1e-7, 1 - 1e-7)  # (H,); clamped: a dead or saturated unit has a finite penalty
    return (target * torch.log(target / rho) + (1 - target) * torch.log((1 - target) / (1 - rho))).sum()
