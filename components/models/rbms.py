"""The RBMs by unit types: which class a layer of a stack is, from its visible
and hidden unit types (the pretrain stage's ``visible_units`` and ``code_units``)."""

from components.errors import DulError
from components.models.rbm import BernoulliRBM
from components.models.rbm_gaussian import GaussianBernoulliRBM
from components.models.rbm_linear import BernoulliLinearRBM
from components.models.rbm_poisson import ConstrainedPoissonRBM
from components.models.rbm_softmax import ReplicatedSoftmaxRBM

# The RBM class for each hidden-unit type a layer of a stack can have (Bernoulli visibles).
RBM_BY_HIDDEN = {"binary": BernoulliRBM, "linear": BernoulliLinearRBM}

VISIBLE_TYPES = ("bernoulli", "gaussian", "softmax", "poisson")

# The RBM class for each (visible, hidden) unit-type pair.
RBM_BY_UNITS = {
    ("bernoulli", "binary"): BernoulliRBM,
    ("bernoulli", "linear"): BernoulliLinearRBM,
    ("gaussian", "binary"): GaussianBernoulliRBM,
    ("softmax", "binary"): ReplicatedSoftmaxRBM,
    ("poisson", "binary"): ConstrainedPoissonRBM,
}


def make_rbm(visible: str, hidden: str, n_visible: int, n_hidden: int, init_std: float = 0.1) -> BernoulliRBM:
    """The RBM with ``visible`` units (one of VISIBLE_TYPES) and ``hidden`` units ("binary" or "linear")."""
    cls = RBM_BY_UNITS.get((visible, hidden))
    if cls is None:
        supported = ", ".join(f"{v}/{h}" for v, h in RBM_BY_UNITS)
        raise DulError(f"no RBM has {visible} visible and {hidden} hidden units; "
                       f"supported visible/hidden pairs: {supported}")
    return cls(n_visible, n_hidden, init_std=init_std)
