"""Training: the only package that talks to Ray (Ray Train jobs, checkpoints, progress)."""

from components.training.finetune import finetune_autoencoder, unroll
from components.training.pretrain import pretrain_stack

__all__ = ["finetune_autoencoder", "pretrain_stack", "unroll"]
