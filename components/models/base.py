"""The model contract: what every family is, and the small protocols that say
what a model can do. Stages dispatch on these (``isinstance(model, Encoder)``),
never on family names.

Every family (``Model``) is an ``nn.Module`` whose constructor takes keyword
hyperparameters only (scikit-learn's estimator rule) and records them in
``hyperparameters``; ``to_checkpoint()`` is ``{"family", "params",
"state_dict"}`` with those hyperparameters as ``params``, so the registry
(components/models/registry.py) rebuilds any checkpoint by its family, loading
with ``weights_only=True``. A zoo family also has a frozen ``Params``
dataclass (its params.yaml section: its hyperparameters plus
``TrainingParams``), ``from_params(params, card)`` to build it for a dataset,
``optimizers(params)`` and ``training_step(x, optimizers)``, which does its
own backward and steps (so two optimizers, alternating, need nothing special
from the loop). Capabilities:

- ``Encoder``: ``encode(x) -> codes`` (B, C), ``n_inputs`` (D), ``code_size``
  (C) and ``code_units`` ("binary" or "linear"): what index, search, the
  registered encoder and maps use;
- ``Density``: ``log_prob(x, samples) -> (B,)`` nats, exact or a bound or an
  estimate, and ``estimator(samples)`` saying which ("exact", "elbo",
  "is-5000", "ais", "ais-bound": a bound with log Z by AIS);
- ``Sampler``: ``sample(n, generator) -> (n, D)``;
- sequence families (``inputs = "sequence"``, a class attribute; ``SequenceParams``)
  model byte sequences (B, T) of any length: ``log_prob`` is per sequence,
  ``stream_log_prob(stream)`` per byte of a whole split's stream, and the
  registry builds them for the shape (None,) of a sequence card only;
- ``Reconstructor``: ``reconstruct(x) -> (B, D)`` in the data's units (evaluate's figures);
- ``PartitionEstimate``: ``log_partition() -> (log Z, lower, upper)``, the AIS
  estimate a density's log-likelihood rests on, with its bars (rbm, dbm).

The rest of this module: the protocols the greedy layer-wise trainer uses.

Energy models (RBMs) expose ``free_energy``, ``sample_h``, ``sample_v``,
``gibbs``, the conditional means ``h_mean``/``v_mean``, ``cd_gradients``,
``check_data`` and their unit types; latent models (autoencoders, VAEs)
expose ``encode``, ``decode`` and ``loss``; anything that feeds retrieval
exposes ``codes``. A ``loss`` returns a dict that holds ``"loss"`` plus
whatever should be logged. The greedy layer-wise trainer drives RBMs and
autoencoder layers alike through ``layer_step`` (``LayerModel``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """What every zoo family's params section has besides its hyperparameters."""

    epochs: int = 50  # passes over the training split
    batch_size: int = 100  # mini-batch size
    lr: float = 0.001  # Adam's learning rate
    seed: int = 0  # initial weights and every draw (per epoch and worker)

    def check_training(self, section: str) -> None:
        """epochs, batch_size and lr positive, seed not negative: a DulError naming ``section.key``."""
        from components.errors import DulError

        for name in ("epochs", "batch_size", "lr"):
            if not getattr(self, name) > 0:
                raise DulError(f"{section}.{name} is {getattr(self, name)}: must be positive")
        if self.seed < 0:
            raise DulError(f"{section}.seed is {self.seed}: must be 0 or more")


@dataclasses.dataclass(frozen=True)
class SequenceParams(TrainingParams):
    """What a sequence family's section has besides its hyperparameters (a family with
    ``inputs = "sequence"``: it reads a split as one byte stream, components/data/chars.py)."""

    epochs: int = 10  # epochs of `steps` batches each
    batch_size: int = 16  # windows per batch
    window: int = 512  # bytes per training window, each a stretch of the training stream at a random offset
    steps: int = 200  # batches per epoch (an epoch is not a pass over the stream: 12 M bytes are many batches)
    valid_chars: int = 0  # bytes of the validation stream scored after each epoch, in evenly spaced blocks each
    # with its true context; 0: all of it

    def check_training(self, section: str) -> None:
        from components.errors import DulError

        super().check_training(section)
        for name in ("window", "steps"):
            if getattr(self, name) < 1:
                raise DulError(f"{section}.{name} is {getattr(self, name)}: must be positive")
        if self.valid_chars < 0:
            raise DulError(f"{section}.valid_chars is {self.valid_chars}: must be 0 (all) or more")


@runtime_checkable
class Model(Protocol):
    """Every family: built from hyperparameters, trained by ``training_step``, saved whole."""

    family: ClassVar[str]  # its name in params.yaml and in checkpoints
    hyperparameters: dict  # the constructor's keyword arguments

    def training_step(self, x: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        ...  # backward and step(s); returns {"loss": ..., other figures to log}

    def to_checkpoint(self) -> dict: ...  # {"family", "params", "state_dict"}


@runtime_checkable
class Encoder(Protocol):
    code_units: str  # "binary" (codes thresholded at their training medians) or "linear"
    n_inputs: int  # D, the width of the rows it encodes
    code_size: int  # C

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, D) -> (B, C)


@runtime_checkable
class Reconstructor(Protocol):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, D) -> (B, D) in the data's units


@runtime_checkable
class Density(Protocol):
    def log_prob(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor: ...  # (B, D) -> (B,) nats

    def estimator(self, samples: int) -> str: ...  # "exact" | "elbo" | "is-<samples>" | "ais" | "ais-bound"


@runtime_checkable
class Sampler(Protocol):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...  # (n, D)


@runtime_checkable
class Filters(Protocol):
    """A model whose first layer reads the input through filters (dictionary atoms, weights
    into hidden units): train@ draws them as images, reports/zoo/families/<name>/filters.png."""

    def filters(self) -> torch.Tensor: ...  # (D, K): filter k is column k, in the input's space


@runtime_checkable
class PartitionEstimate(Protocol):
    """A density whose log Z is estimated (by AIS): the report states it with its bars."""

    def log_partition(self) -> tuple[float, float, float]: ...  # (log Z, lower, upper): AIS's -3 and +3 sigma bars


class Checkpointed:
    """``to_checkpoint`` and ``from_checkpoint`` for a family whose constructor takes exactly
    its ``hyperparameters``: the checkpoint is ``{"family", "params", "state_dict"}``, and
    loading builds the model from ``params`` and loads every tensor (strictly)."""

    def to_checkpoint(self) -> dict:
        return {"family": self.family, "params": self.hyperparameters, "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict):
        model = cls(**checkpoint["params"])
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        return model


class TiedLayer(nn.Module):
    """The parameters every greedy layer has (RBM or autoencoder layer): weights
    W (D, H) drawn as init_std * N(0, 1), visible biases b_v (D,) and hidden
    biases b_h (H,), both zero, so a stack of either kind unrolls alike."""

    def __init__(self, n_visible: int, n_hidden: int, init_std: float):
        super().__init__()
        self.W = nn.Parameter(init_std * torch.randn(n_visible, n_hidden))  # (D, H)
        self.b_v = nn.Parameter(torch.zeros(n_visible))  # (D,)
        self.b_h = nn.Parameter(torch.zeros(n_hidden))  # (H,)

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]


@runtime_checkable
class EnergyModel(Protocol):
    visible_type: str  # "bernoulli", "gaussian", "softmax" or "poisson"
    hidden_type: str  # "binary" or "linear"

    def free_energy(self, v: torch.Tensor) -> torch.Tensor: ...  # (B, D) -> (B,)

    def sample_h(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...  # (mean, sample)

    def sample_v(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor: ...

    def h_mean(self, v: torch.Tensor) -> torch.Tensor: ...  # E[h | v], (B, H)

    def v_mean(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor: ...  # E[v | h]

    def cd_gradients(self, v_pos: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None,
                     chain: torch.Tensor | None = None, *,
                     into: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                     beta: float = 0.0) -> torch.Tensor: ...  # sets .grad (or into = beta * into + grad); (B, D)

    def check_data(self, v: torch.Tensor, layer: str | None = None) -> None: ...  # DulError if v is unfit


@runtime_checkable
class LayerModel(Protocol):
    """One layer of a greedy layer-wise stack: an RBM or an autoencoder layer."""

    def layer_step(self, v: torch.Tensor, k: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor: ...

    def h_mean(self, v: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LatentModel(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...
