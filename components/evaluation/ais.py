"""The partition function of a Bernoulli RBM: exact enumeration and AIS.

The code lives in components/models/nn/ais.py, shared by the pretrain stack's
evaluation (pipelines/evaluate.py) and the zoo's ``rbm`` family; this module
re-exports it under its old name.
"""

from components.models.nn.ais import (
    BASE_RATE_EPS,
    BLOCK_DOUBLES,
    MAX_ENUMERATED,
    PAPER_PARTS,
    _binary_states,
    _checked_betas,
    _free_energy,
    _log_mean_with_bars,
    _log_sum_over_states,
    _log_weights,
    _neg_free_energy,
    _parameters,
    _tempered_gibbs,
    ais_log_partition,
    base_rate_biases,
    base_rate_log_odds,
    beta_schedule,
    exact_log_partition,
    log_likelihood,
    pseudo_log_likelihood,
    scaled_beta_schedule,
)

__all__ = [
    "BASE_RATE_EPS", "BLOCK_DOUBLES", "MAX_ENUMERATED", "PAPER_PARTS", "_binary_states", "_checked_betas",
    "_free_energy", "_log_mean_with_bars", "_log_sum_over_states", "_log_weights", "_neg_free_energy",
    "_parameters", "_tempered_gibbs", "ais_log_partition", "base_rate_biases", "base_rate_log_odds",
    "beta_schedule", "exact_log_partition", "log_likelihood", "pseudo_log_likelihood", "scaled_beta_schedule",
]
