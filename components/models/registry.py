"""The registry: every family by its name in params.yaml, built and loaded alike.

``FAMILIES`` maps a family's name to the module and class that hold it, one
line a family. Modules are imported only when their family is asked for, so
a family's training stage runs (and depends on) its own file and what that
imports, never the other families' (dvc.yaml: adding or changing one family
leaves the others' results valid).

- ``family_class(name)``: the class, or a one-line error naming the known ones;
- ``build(name, params, shape)``: a model for items of ``shape`` ((D,) for
  vectors, (C, H, W) for images, (None,) for byte sequences, from the dataset
  card), from the family's params section;
- ``load(checkpoint)``: any checkpoint written by ``to_checkpoint()``
  (``{"family", "params", "state_dict"}``), from a dict or a file read with
  ``weights_only=True`` (nothing is unpickled); an unknown family, missing or
  mismatched tensors, or a damaged file are one-line errors.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from pathlib import Path

from components.errors import DulError, did_you_mean

FAMILIES = {
    "deep-autoencoder": "components.models.autoencoder:DeepAutoencoder",
    "vae": "components.models.vae:VAE",
    "iwae": "components.models.iwae:IWAE",
    "nade": "components.models.nade:NADE",
    "made": "components.models.made:MADE",
    "nash": "components.models.nash:NASH",
    "rbm": "components.models.rbm:RBM",
    "sparse_coding": "components.models.sparse_coding:SparseCoding",
    "psd": "components.models.psd:PSD",
    "helmholtz": "components.models.helmholtz:HelmholtzMachine",
    "dbm": "components.models.dbm:DBM",
    "stacked_autoencoder": "components.models.stacked_autoencoder:StackedAutoencoder",
    "pixelcnn": "components.models.pixelcnn:PixelCNN",
    "vdsh": "components.models.vdsh:VDSH",
    "gan": "components.models.gan:GAN",
    "gmmn": "components.models.gmmn:GMMN",
    "wavenet": "components.models.wavenet:WaveNet",
}
# The families trained as zoo stages (train@<family>); the flagship has stages of its own.
ZOO_FAMILIES = tuple(name for name in FAMILIES if name != "deep-autoencoder")


def family_class(name: str) -> type:
    """The class of family ``name``."""
    if name not in FAMILIES:
        raise DulError(f"unknown model family '{name}'; {did_you_mean(name, FAMILIES)}")
    module, _, attribute = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def params_class(name: str) -> type:
    """The frozen dataclass of family ``name``'s params section."""
    cls = family_class(name)
    if not hasattr(cls, "Params"):
        raise DulError(f"model family '{name}' is trained by its own stages (pretrain, finetune), not as a zoo family")
    return cls.Params


def build(name: str, params, shape: tuple[int | None, ...]):
    """A new model of family ``name`` for items of ``shape``, seeded by the caller. Byte
    sequences (shape (None,), a card of kind sequence) go to sequence families only."""
    cls = family_class(name)
    if None in tuple(shape) and getattr(cls, "inputs", None) != "sequence":
        raise DulError(f"{name} models fixed-size items, but this dataset's items are byte sequences (a card of kind "
                       "sequence, ingest.representation: chars); train a sequence family (wavenet) on it, or ingest "
                       "with representation bow")
    return cls.from_params(params, tuple(shape))


def load(checkpoint: dict | str | os.PathLike, map_location="cpu"):
    """The model a checkpoint holds, rebuilt by the family it names."""
    if not isinstance(checkpoint, dict):
        checkpoint = read_checkpoint(checkpoint, map_location)
    family = checkpoint.get("family") or checkpoint.get("config", {}).get("model")
    if family is None:
        raise DulError("the checkpoint names no model family (no 'family' key); was it written by dul?")
    cls = family_class(family)
    try:
        return cls.from_checkpoint(checkpoint)
    except DulError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise DulError(f"the {family} checkpoint does not match its params: {_first_line(error)}; "
                       "train it again") from None


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint file read with ``weights_only=True``: tensors and plain data only."""
    import torch

    path = Path(path)
    try:
        checkpoint = torch.load(path, weights_only=True, map_location=map_location)
    except FileNotFoundError:
        raise DulError(f"{path}: no such checkpoint; run the stage that writes it") from None
    except IsADirectoryError:
        raise DulError(f"{path} is a directory, not a checkpoint file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise DulError(f"{path} is not a readable dul checkpoint ({_reason(error)}); "
                       "run the stage that writes it again") from None
    except Exception as error:  # noqa: BLE001 (torch raises UnpicklingError and others for foreign pickles)
        raise DulError(f"{path} is not a dul checkpoint: it holds objects other than tensors and plain data "
                       f"({_reason(error)}), which dul never loads") from None
    if not isinstance(checkpoint, dict):
        raise DulError(f"{path} is not a dul checkpoint (it holds a {type(checkpoint).__name__}, not a mapping)")
    return checkpoint


def _reason(error: BaseException) -> str:
    text = _first_line(error)
    if "failed finding central directory" in text or "PytorchStreamReader" in text:
        return "truncated or damaged"
    if "Weights only load failed" in text or "Unsupported global" in text:
        return "a pickle of Python objects"
    return text[:160]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
