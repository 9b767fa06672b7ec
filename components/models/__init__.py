"""Models, one per file; ``MODELS`` maps the names used in params.yaml to classes."""

from components.models.autoencoder import DeepAutoencoder
from components.models.base import EnergyModel, LatentModel
from components.models.rbm import BernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM

MODELS = {
    "rbm": BernoulliRBM,
    "rbm-linear": BernoulliLinearRBM,
    "deep-autoencoder": DeepAutoencoder,
}

# The RBM class for each hidden-unit type a layer of a stack can have.
RBM_BY_HIDDEN = {"binary": BernoulliRBM, "linear": BernoulliLinearRBM}

__all__ = ["MODELS", "RBM_BY_HIDDEN", "BernoulliRBM", "BernoulliLinearRBM", "DeepAutoencoder", "EnergyModel", "LatentModel"]
