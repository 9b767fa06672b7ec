"""The layers the zoo's families share (components/models/nn/)."""

import pytest
import torch

from components.models.nn.masked import MaskedLinear, degree_mask


def test_masked_linear_cuts_masked_connections_in_value_and_gradient():
    mask = degree_mask(torch.tensor([1, 2, 3]), torch.tensor([1, 3]), strict=True)  # [[0, 0, 0], [1, 1, 0]]
    assert mask.tolist() == [[False, False, False], [True, True, False]]
    layer = MaskedLinear(3, 2, mask=mask).double()
    assert layer.mask.dtype == torch.bool and "mask" in layer.state_dict()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert (layer.weight.grad[~mask] == 0).all() and (layer.weight.grad[mask] != 0).all()
    assert (x.grad[:, 2] == 0).all() and (x.grad[:, :2] != 0).all()
    assert "mask" not in MaskedLinear(3, 2, persistent=False).state_dict()
    with pytest.raises(ValueError, match="mask of shape"):
        layer.set_mask(torch.ones(3, 2))
