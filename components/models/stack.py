"""A trained layer of a greedy stack as plain tensors, and back.

``layer_state`` is what the pretrain stage saves for each layer
(``models/stack.pt``, loadable with ``torch.load(weights_only=True)``): the
parameters ``W`` (D, H), ``b_v`` (D,), ``b_h`` (H,) plus the unit types and
the layer kind. ``layer_from_state`` rebuilds the right class. Stacks saved
before the kinds were recorded hold Bernoulli RBMs. A stack with a Gaussian
first layer also holds ``standardise``: ``{"mean", "std"}`` (D,), the
training split's per-feature statistics its inputs are standardised with
(``components.models.standardise``).
"""

from __future__ import annotations

from components.models.nn.autoencoder_layer import AutoencoderLayer
from components.models.rbm import BernoulliRBM
from components.models.rbms import make_rbm


def layer_state(layer: BernoulliRBM | AutoencoderLayer) -> dict:
    kind = "autoencoder" if isinstance(layer, AutoencoderLayer) else "rbm"
    return {"hidden_type": layer.hidden_type, "visible_type": layer.visible_type, "kind": kind,
            **{k: v.detach().cpu().clone() for k, v in layer.state_dict().items()}}


def layer_from_state(state: dict) -> BernoulliRBM | AutoencoderLayer:
    if state.get("kind") == "autoencoder":
        layer = AutoencoderLayer(*state["W"].shape, hidden_type=state["hidden_type"])
    else:
        layer = make_rbm(state.get("visible_type", "bernoulli"), state["hidden_type"], *state["W"].shape)
    layer.load_state_dict({k: state[k] for k in ("W", "b_v", "b_h")})
    return layer
