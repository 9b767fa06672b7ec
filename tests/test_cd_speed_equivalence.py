"""The fast CD paths compute what the general ones do: the logistic units'
``_logistic_cd`` against the hook-by-hook ``cd_gradients``, ``cd_gradients(into=...)``
against ``.grad``, and ``train_epoch``'s fused SGD step against
``layer_step`` + ``optimizer.step()`` (parameters, momentum buffers, errors)."""

import pytest
import torch

from components.models.rbm import BernoulliRBM
from components.models.rbm import _logistic_units
from components.training.pretrain import FusedSGD, make_optimizer, train_epoch

PARAMS = {"hidden": [12], "code_units": "binary", "init_std": 0.1, "lr": 0.1, "lr_code": 0.001,
          "weight_decay": 0.01, "momentum_initial": 0.5}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HookByHook(BernoulliRBM):
    """The same units through an overridden hook: ``cd_gradients`` takes its general path."""

    def h_activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class PlainSGD(torch.optim.SGD):
    """SGD itself, under a type ``train_epoch`` does not fuse: the reference update."""


def pair(seed: int = 0, n_visible: int = 10, n_hidden: int = 12):
    torch.manual_seed(seed)
    fast = BernoulliRBM(n_visible, n_hidden)
    general = HookByHook(n_visible, n_hidden)
    general.load_state_dict(fast.state_dict())
    return fast, general


def grads(rbm):
    return [p.grad.clone() for p in rbm.parameters()]


def test_only_the_logistic_units_take_the_fast_path():
    assert _logistic_units(BernoulliRBM) and not _logistic_units(HookByHook)


@pytest.mark.parametrize("k", [1, 3])
def test_logistic_cd_equals_the_hook_by_hook_path(k):
    fast, general = pair()
    v = torch.rand(20, 10)
    torch.manual_seed(1)
    v_fast = fast.cd_gradients(v, k=k)
    torch.manual_seed(1)  # the same draws
    v_general = general.cd_gradients(v, k=k)
    torch.testing.assert_close(v_fast, v_general)
    for mine, reference in zip(grads(fast), grads(general)):
        torch.testing.assert_close(mine, reference)
    torch.testing.assert_close(fast.last_h_pos, general.last_h_pos)


@pytest.mark.parametrize("model", [BernoulliRBM, HookByHook])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_into_is_beta_times_its_contents_plus_the_gradient(model, dtype):
    torch.manual_seed(0)
    rbm, v = model(10, 12), torch.rand(20, 10)
    torch.manual_seed(1)
    rbm.cd_gradients(v, dtype=dtype)
    reference = grads(rbm)
    start = [torch.randn_like(p) for p in rbm.parameters()]
    into = [s.clone() for s in start]
    torch.manual_seed(1)
    rbm.cd_gradients(v, dtype=dtype, into=into, beta=0.5)
    for got, s, g in zip(into, start, reference):
        torch.testing.assert_close(got, 0.5 * s + g, atol=1e-6, rtol=1e-5)
    into = [torch.full_like(p, float("nan")) for p in rbm.parameters()]
    torch.manual_seed(1)
    rbm.cd_gradients(v, dtype=dtype, into=into)  # beta 0: the old contents are ignored, NaN included
    for got, g in zip(into, reference):
        torch.testing.assert_close(got, g)


def epochs(rbm, optimizer, data, n: int, **kwargs) -> list[float]:
    errors = []
    for epoch in range(n):
        torch.manual_seed(100 + epoch)
        errors.append(train_epoch(rbm, optimizer, data, batch_size=20, n_batches=5, cd_k=kwargs.get("cd_k", 1),
                                  generator=torch.Generator().manual_seed(epoch), dtype=kwargs.get("dtype", torch.float32),
                                  chain=kwargs.get("chain"))["recon_error"])
        for group in optimizer.param_groups:  # the momentum switch between epochs
            group["momentum"] = 0.9
    return errors


def trained(fused: bool, n_epochs: int = 3, **kwargs):
    torch.manual_seed(0)
    rbm = BernoulliRBM(10, 12)
    optimizer = make_optimizer(rbm, 0, PARAMS)
    if not fused:
        optimizer = PlainSGD(optimizer.param_groups, lr=PARAMS["lr"])
    data = torch.rand(100, 10)
    chain = (torch.rand(20, 10) < 0.5).float() if kwargs.pop("persistent", False) else None
    errors = epochs(rbm, optimizer, data, n_epochs, chain=chain, **kwargs)
    return rbm, optimizer, errors


@pytest.mark.parametrize("kwargs", [{}, {"cd_k": 2}, {"dtype": torch.bfloat16}, {"persistent": True}])
def test_fused_sgd_epoch_equals_layer_step_and_optimizer_step(kwargs):
    rbm, optimizer, _ = trained(True, n_epochs=0)
    assert FusedSGD.of(rbm, optimizer) is not None
    fast, fast_optimizer, fast_errors = trained(True, **kwargs)
    slow, slow_optimizer, slow_errors = trained(False, **kwargs)
    assert FusedSGD.of(slow, slow_optimizer) is None
    torch.testing.assert_close(fast_errors, slow_errors, rtol=1e-5, atol=0)
    for p, q in zip(fast.parameters(), slow.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        torch.testing.assert_close(fast_optimizer.state[p]["momentum_buffer"],
                                   slow_optimizer.state[q]["momentum_buffer"], rtol=0, atol=1e-5)


def test_plain_sgd_carries_on_from_the_fused_momentum_buffers():
    """A checkpoint's optimizer state is SGD's own: fused then plain equals plain throughout."""
    fast, fast_optimizer, _ = trained(True, n_epochs=2)
    plain = PlainSGD(fast_optimizer.param_groups, lr=PARAMS["lr"])
    plain.load_state_dict(fast_optimizer.state_dict())
    slow, slow_optimizer, _ = trained(False, n_epochs=2)
    data = torch.rand(100, 10)
    epochs(fast, plain, data, 1)
    epochs(slow, slow_optimizer, data, 1)
    for p, q in zip(fast.parameters(), slow.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


@pytest.mark.parametrize("change", [{"nesterov": True}, {"dampening": 0.1}, {"maximize": True}])
def test_other_sgd_settings_are_not_fused(change):
    rbm = BernoulliRBM(10, 12)
    optimizer = make_optimizer(rbm, 0, PARAMS)
    optimizer.param_groups[0].update(change)
    assert FusedSGD.of(rbm, optimizer) is None
    optimizer = make_optimizer(rbm, 0, PARAMS)
    optimizer.param_groups[1]["momentum"] = 0.0  # two momenta
    assert FusedSGD.of(rbm, optimizer) is None
    assert FusedSGD.of(rbm, torch.optim.Adam(rbm.parameters())) is None
