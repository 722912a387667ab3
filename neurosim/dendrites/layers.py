"""Active-dendrite network layers: dendritic segments, dendritic gating, k-winners-take-all.

After Iyer, Grewal, Velu, Souza, Forest & Ahmad (2022), "Avoiding Catastrophe: Active
Dendrites Enable Multi-Task Learning in Dynamic Environments", Front. Neurorobot. 16:846219
(arXiv:2201.00042), and Numenta's reference code (``nupic.research`` ``dendrites`` and
``nupic.torch`` ``k_winners``). A unit computes its feed-forward activation
``y = w . x + b`` and reads a context vector ``c`` with ``n_segments`` dendritic segments
``d_j = u_j . c``; the strongest segment modulates ``y`` (paper eq. 1-2)::

    bias:          y + max_j d_j
    sigmoid gate:  y * sigmoid(max_j d_j)
    absolute max:  y * sigmoid(d_{j*}),  j* = argmax_j |d_j|   (sign kept)

A k-winners-take-all layer then keeps the ``k`` largest units (paper eq. 3) so that each
context selects a sparse sub-network.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "ActiveDendritesLayer",
    "DendriteOutput",
    "DendriticSegments",
    "KWinners",
    "dendritic_absolute_max_gate_1d",
    "dendritic_bias_1d",
    "dendritic_gate_1d",
    "kwinners",
]

VARIANTS = ("bias", "sigmoid", "absolute_max")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _check_fraction(name: str, value, low_closed: bool = True, high_closed: bool = False):
    ok_low = value >= 0 if low_closed else value > 0
    ok_high = value <= 1 if high_closed else value < 1
    if isinstance(value, bool) or not isinstance(value, int | float) or not (ok_low and ok_high):
        interval = ("[" if low_closed else "(") + "0, 1" + ("]" if high_closed else ")")
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def _fixed_sparse_mask(
    shape: tuple[int, ...], sparsity: float, generator: torch.Generator | None
) -> torch.Tensor:
    """A 0/1 mask with exactly ``round(sparsity * shape[-1])`` zeros along the last axis."""
    fan_in = shape[-1]
    n_zero = int(round(sparsity * fan_in))
    keys = torch.rand(shape, generator=generator)
    order = keys.argsort(dim=-1)
    mask = torch.ones(shape)
    if n_zero > 0:
        mask.scatter_(-1, order[..., :n_zero], 0.0)
    return mask


class DendriteOutput(NamedTuple):
    """The modulated activations and, per unit, the index of the segment that won."""

    values: torch.Tensor
    indices: torch.Tensor


def dendritic_bias_1d(y: torch.Tensor, dendrite_activations: torch.Tensor) -> DendriteOutput:
    """``y + max_j d_j`` (Iyer et al. 2022, biasing variant).

    Parameters
    ----------
    y : Tensor, shape (batch, units)
        Feed-forward activations.
    dendrite_activations : Tensor, shape (batch, units, segments)
    """
    winning, indices = dendrite_activations.max(dim=2)
    return DendriteOutput(y + winning, indices)


def dendritic_gate_1d(y: torch.Tensor, dendrite_activations: torch.Tensor) -> DendriteOutput:
    """``y * sigmoid(max_j d_j)`` (Iyer et al. 2022, eq. 2, gating variant)."""
    winning, indices = dendrite_activations.max(dim=2)
    return DendriteOutput(y * torch.sigmoid(winning), indices)


def dendritic_absolute_max_gate_1d(
    y: torch.Tensor, dendrite_activations: torch.Tensor
) -> DendriteOutput:
    """``y * sigmoid(d_{j*})`` with ``j* = argmax_j |d_j|``, sign kept (Iyer et al. 2022).

    A strongly negative segment can thus silence a unit, which the plain max cannot do.
    """
    indices = dendrite_activations.abs().argmax(dim=2)
    winning = torch.gather(dendrite_activations, 2, indices.unsqueeze(2)).squeeze(2)
    return DendriteOutput(y * torch.sigmoid(winning), indices)


_APPLY = {
    "bias": dendritic_bias_1d,
    "sigmoid": dendritic_gate_1d,
    "absolute_max": dendritic_absolute_max_gate_1d,
}


class DendriticSegments(nn.Module):
    """Per-unit dendritic segments that read a context vector, with fixed sparse weights.

    ``forward(context)`` returns ``d[b, i, j] = sum_k U[i, j, k] * M[i, j, k] * c[b, k]``
    where ``M`` is a fixed random 0/1 mask with a fraction ``sparsity`` of zeros per
    segment (Numenta's ``DendriteSegments``). Weights are Kaiming-uniform (``a = sqrt 5``)
    per unit, i.e. uniform in ``+-1/sqrt(context_dim)``.

    Parameters
    ----------
    n_units : int
        Units (neurons) that own segments.
    n_segments : int
        Segments per unit.
    context_dim : int
        Length of the context vector.
    sparsity : float
        Fraction of each segment's weights fixed at zero, in ``[0, 1)`` (``0`` = dense).
    bias : bool
        Whether each segment has a bias.
    generator : torch.Generator, optional
        Source of the mask and initial weights (for reproducibility).
    """

    def __init__(
        self,
        n_units: int,
        n_segments: int,
        context_dim: int,
        sparsity: float = 0.0,
        bias: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_units = _check_positive_int("n_units", n_units)
        self.n_segments = _check_positive_int("n_segments", n_segments)
        self.context_dim = _check_positive_int("context_dim", context_dim)
        self.sparsity = _check_fraction("sparsity", sparsity)
        bound = 1.0 / math.sqrt(context_dim)
        w = (torch.rand(n_units, n_segments, context_dim, generator=generator) * 2 - 1) * bound
        self.weights = nn.Parameter(w)
        self.biases = nn.Parameter(torch.zeros(n_units, n_segments)) if bias else None
        mask = _fixed_sparse_mask((n_units, n_segments, context_dim), sparsity, generator)
        self.register_buffer("zero_mask", mask)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Segment activations, shape (batch, n_units, n_segments), from (batch, context_dim)."""
        if context.dim() != 2 or context.shape[1] != self.context_dim:
            raise ValueError(
                f"context: expected shape (batch, {self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        out = torch.einsum("ijk,bk->bij", self.weights * self.zero_mask, context)
        if self.biases is not None:
            out = out + self.biases
        return out


class ActiveDendritesLayer(nn.Module):
    """A linear layer whose units are modulated by their strongest dendritic segment.

    ``forward(x, context) = apply(W x + b, segments(context))`` with ``apply`` one of the
    variants of Iyer et al. (2022): ``"bias"``, ``"sigmoid"`` (``dendritic_gate_1d``) or
    ``"absolute_max"``. The feed-forward weights may carry a fixed sparse mask too.

    Parameters
    ----------
    in_features, out_features : int
        Feed-forward sizes.
    n_segments : int
        Dendritic segments per unit.
    context_dim : int
        Length of the context vector.
    variant : {"bias", "sigmoid", "absolute_max"}
        How the winning segment modulates the unit.
    weight_sparsity : float
        Fraction of feed-forward weights fixed at zero, in ``[0, 1)``.
    dendrite_sparsity : float
        Fraction of segment weights fixed at zero, in ``[0, 1)``.
    generator : torch.Generator, optional
        Source of masks and initial weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_segments: int,
        context_dim: int,
        variant: str = "absolute_max",
        weight_sparsity: float = 0.0,
        dendrite_sparsity: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.in_features = _check_positive_int("in_features", in_features)
        self.out_features = _check_positive_int("out_features", out_features)
        self.weight_sparsity = _check_fraction("weight_sparsity", weight_sparsity)
        _check_fraction("dendrite_sparsity", dendrite_sparsity)  # named here, not "sparsity"
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
        )
        self.bias = nn.Parameter(
            (torch.rand(out_features, generator=generator) * 2 - 1) * bound
        )
        self.register_buffer(
            "weight_mask",
            _fixed_sparse_mask((out_features, in_features), weight_sparsity, generator),
        )
        self.segments = DendriticSegments(
            out_features, n_segments, context_dim, dendrite_sparsity, generator=generator
        )

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, return_indices: bool = False
    ) -> torch.Tensor | DendriteOutput:
        """Modulated activations, shape (batch, out_features).

        Parameters
        ----------
        x : Tensor, shape (batch, in_features)
        context : Tensor, shape (batch, context_dim)
        return_indices : bool
            Also return the winning segment of each unit (a :class:`DendriteOutput`).
        """
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"x: expected shape (batch, {self.in_features}), got {tuple(x.shape)}"
            )
        y = nn.functional.linear(x, self.weight * self.weight_mask, self.bias)
        out = _APPLY[self.variant](y, self.segments(context))
        return out if return_indices else out.values


def kwinners(
    x: torch.Tensor, duty_cycles: torch.Tensor, k: int, boost_strength: float
) -> torch.Tensor:
    """k-winners-take-all with boosting (Numenta ``nupic.torch.functions.kwinners``).

    Winners are the ``k`` largest entries of ``x * exp(beta (k/n - duty_cycle))`` per
    row; the output keeps the un-boosted ``x`` at the winners and zero elsewhere, so the
    gradient flows only through the winners.

    Parameters
    ----------
    x : Tensor, shape (batch, n)
    duty_cycles : Tensor, shape (n,)
        Running fraction of samples in which each unit won.
    k : int
        Winners per row (``1 <= k <= n``).
    boost_strength : float
        ``beta >= 0``; ``0`` disables boosting.
    """
    n = x.shape[1]
    if boost_strength > 0:
        target_density = k / n
        boosted = x.detach() * torch.exp((target_density - duty_cycles) * boost_strength)
    else:
        boosted = x.detach()
    winners = boosted.topk(k, dim=1, sorted=False).indices
    mask = torch.zeros_like(x, dtype=torch.bool).scatter_(1, winners, True)
    return x * mask


class KWinners(nn.Module):
    """k-winners-take-all layer with duty-cycle boosting (Iyer et al. 2022, eq. 3).

    Follows Numenta's ``nupic.torch.modules.KWinners``: ``k = round(n * percent_on)`` in
    training and ``min(n, int(k * k_inference_factor))`` in evaluation; boosting
    ``exp(beta (k/n - duty_cycle))`` only chooses the winners; the duty cycle is a running
    mean over ``min(duty_cycle_period, samples seen)`` samples, updated in training::

        dc <- (dc * (period - batch) + #times active in batch) / period

    Parameters
    ----------
    n : int
        Number of units.
    percent_on : float
        Fraction of units that win, in ``(0, 1]``.
    k_inference_factor : float
        Multiplier of ``k`` at evaluation (``>= 1`` in Numenta's networks).
    boost_strength : float
        Initial ``beta >= 0``.
    boost_strength_factor : float
        ``beta`` is multiplied by this in :meth:`update_boost_strength` (call per epoch).
    duty_cycle_period : int
        Horizon of the duty-cycle running mean, in samples.
    """

    def __init__(
        self,
        n: int,
        percent_on: float,
        k_inference_factor: float = 1.5,
        boost_strength: float = 1.0,
        boost_strength_factor: float = 0.9,
        duty_cycle_period: int = 1000,
    ) -> None:
        super().__init__()
        self.n = _check_positive_int("n", n)
        self.percent_on = _check_fraction("percent_on", percent_on, False, True)
        if not (math.isfinite(k_inference_factor) and k_inference_factor > 0):
            raise ValueError(
                f"k_inference_factor: expected a finite number > 0, got {k_inference_factor!r}"
            )
        if not (math.isfinite(boost_strength) and boost_strength >= 0):
            raise ValueError(
                f"boost_strength: expected a finite number >= 0, got {boost_strength!r}"
            )
        if not 0 <= boost_strength_factor <= 1:
            raise ValueError(
                f"boost_strength_factor: expected a number in [0, 1], got {boost_strength_factor!r}"
            )
        self.duty_cycle_period = _check_positive_int("duty_cycle_period", duty_cycle_period)
        self.k = max(1, int(round(n * percent_on)))
        self.k_inference = min(n, int(self.k * k_inference_factor))
        self.k_inference_factor = k_inference_factor
        self.boost_strength_factor = boost_strength_factor
        self.register_buffer("boost_strength", torch.tensor(float(boost_strength)))
        self.register_buffer("duty_cycle", torch.zeros(n))
        self.register_buffer("learning_iterations", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the ``k`` winners of each row of ``x`` (shape (batch, n)), zero the rest."""
        if x.dim() != 2 or x.shape[1] != self.n:
            raise ValueError(f"x: expected shape (batch, {self.n}), got {tuple(x.shape)}")
        k = self.k if self.training else self.k_inference
        out = kwinners(x, self.duty_cycle, k, float(self.boost_strength))
        if self.training:
            self._update_duty_cycle(out)
        return out

    @torch.no_grad()
    def _update_duty_cycle(self, out: torch.Tensor) -> None:
        batch = out.shape[0]
        self.learning_iterations += batch
        period = min(self.duty_cycle_period, int(self.learning_iterations))
        self.duty_cycle.mul_(period - batch)
        self.duty_cycle.add_((out > 0).sum(dim=0, dtype=torch.float))
        self.duty_cycle.div_(period)

    def update_boost_strength(self) -> None:
        """Decay ``beta`` by ``boost_strength_factor`` (Numenta calls this once per epoch)."""
        self.boost_strength.mul_(self.boost_strength_factor)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, percent_on={self.percent_on}, k={self.k}, "
            f"k_inference={self.k_inference}, boost_strength={float(self.boost_strength):.3g}"
        )
