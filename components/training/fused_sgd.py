"""CD-1's update and SGD's step in fewer passes over the weights (the fast path
of ``pretrain.train_epoch``; the same update, tested in tests/test_cd_speed_equivalence.py)."""

from __future__ import annotations

import torch

from components.models.rbm import BernoulliRBM


class FusedSGD:
    """``rbm.layer_step`` and ``optimizer.step()`` of plain SGD (momentum, weight
    decay, no dampening or Nesterov) in fewer passes over W: SGD's

        g = grad + weight_decay * p;  buf = momentum * buf + g  (buf = g at first);  p -= lr * buf

    with the CD statistics' product accumulating straight into buf (its beta
    the momentum; ``cd_gradients(into=...)``), so no gradient tensor is made
    or read. The same rule and the same momentum buffers, kept in
    ``optimizer.state`` (checkpoints, and ``optimizer.step()`` after, carry on
    from them); only the rounding of the sums may differ in the last bit."""

    def __init__(self, rbm: BernoulliRBM, optimizer: torch.optim.SGD, momentum: float, settings: list):
        self.rbm, self.optimizer, self.momentum, self.settings = rbm, optimizer, momentum, settings
        self.parameters = (rbm.W, rbm.b_v, rbm.b_h)
        self.buffers: list[torch.Tensor] | None = None

    @classmethod
    def of(cls, rbm, optimizer) -> FusedSGD | None:
        """The fused step for ``optimizer`` if it is plain SGD on exactly W, b_v and b_h
        of an RBM, with one momentum for all; None for anything else."""
        if type(optimizer) is not torch.optim.SGD or not isinstance(rbm, BernoulliRBM):
            return None
        settings, momenta = {}, set()
        for group in optimizer.param_groups:
            if group["dampening"] != 0 or group["nesterov"] or group["maximize"] or group.get("differentiable") \
                    or not all(isinstance(group[key], (int, float)) for key in ("lr", "momentum", "weight_decay")):
                return None
            momenta.add(float(group["momentum"]))
            settings.update({id(p): (float(group["lr"]), float(group["weight_decay"])) for p in group["params"]})
        parameters = (rbm.W, rbm.b_v, rbm.b_h)
        if len(momenta) != 1 or len(settings) != 3 or any(id(p) not in settings for p in parameters):
            return None
        return cls(rbm, optimizer, momenta.pop(), [settings[id(p)] for p in parameters])

    def layer_step(self, v: torch.Tensor, k: int, dtype: torch.dtype, chain: torch.Tensor | None) -> torch.Tensor:
        """``rbm.cd_gradients`` into the momentum buffers, buf = momentum * buf + grad."""
        buffers = [self.optimizer.state[p].get("momentum_buffer") for p in self.parameters]
        first = self.momentum == 0 or any(b is None for b in buffers)
        if first:
            buffers = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in self.parameters]
        self.buffers = buffers
        return self.rbm.cd_gradients(v, k, dtype, chain, into=buffers, beta=0.0 if first else self.momentum)

    @torch.no_grad()
    def step(self) -> None:
        """buf += weight_decay * p;  p -= lr * buf."""
        for p, buf, (lr, weight_decay) in zip(self.parameters, self.buffers, self.settings):
            if weight_decay:
                buf.add_(p, alpha=weight_decay)
            p.add_(buf, alpha=-lr)
            if self.momentum != 0:
                self.optimizer.state[p]["momentum_buffer"] = buf
