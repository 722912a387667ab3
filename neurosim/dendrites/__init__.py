"""Sparse distributed representations and active dendrites.

- :mod:`~neurosim.dendrites.sdr`: exact false-match / false-negative / union probabilities
  of dendritic segments (Ahmad & Hawkins 2016) and Monte Carlo checks;
- :mod:`~neurosim.dendrites.layers`: ``DendriticSegments``, ``ActiveDendritesLayer``,
  ``KWinners`` (Iyer et al. 2022) as torch modules;
- :mod:`~neurosim.dendrites.continual`: the permuted-digits continual-learning experiment;
- :mod:`~neurosim.dendrites.spiking`: a spiking neuron whose segments fire NMDA spikes.
"""

from neurosim.dendrites.layers import ActiveDendritesLayer, DendriticSegments, KWinners
from neurosim.dendrites.sdr import (
    false_match_probability,
    false_negative_probability,
    log_false_match_probability,
    optimal_threshold,
    simulate_false_match,
    simulate_false_negative,
    simulate_union_false_match,
    union_false_match_probability,
)
from neurosim.dendrites.spiking import DendriticNeuron

__all__ = [
    "ActiveDendritesLayer",
    "DendriticNeuron",
    "DendriticSegments",
    "KWinners",
    "false_match_probability",
    "false_negative_probability",
    "log_false_match_probability",
    "optimal_threshold",
    "simulate_false_match",
    "simulate_false_negative",
    "simulate_union_false_match",
    "union_false_match_probability",
]
