"""Sparse heterogeneous Izhikevich reservoirs with input projections.

A :class:`Reservoir` describes a recurrent network of ``n`` Izhikevich (2003) neurons with
sparse random connectivity (each ordered pair connected with probability ``p_connect``),
exponentially decaying synaptic currents, thalamic-like noise and input channels projected
onto random subsets of cells. It builds a :class:`neurosim.network.NetworkModel`, which
either engine runs; sparse weights are held as CSR (row = presynaptic cell), so 100k neurons
x 100 synapses take about 120 MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse

from neurosim.network import NetworkModel, SpikeRecord


def _bernoulli_pairs(rng: np.random.Generator, n: int, p: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (pre != post) connected independently with probability p.

    Walks the n*n pairs in row-major order with geometric gaps, so the cost is the number of
    synapses, not n^2 (100k neurons x 100 synapses: 10M draws). Returns sorted (pre, post).
    """
    total = n * n
    if p <= 0 or n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if p >= 1:
        pos = np.arange(total, dtype=np.int64)
    else:
        chunks, last = [], -1
        while last < total - 1:
            size = int(p * (total - 1 - last) * 1.02 + 6 * np.sqrt(p * total) + 100)
            pos = last + np.cumsum(rng.geometric(p, size=size), dtype=np.int64)
            chunks.append(pos[pos < total])
            last = int(pos[-1])
        pos = np.concatenate(chunks)
    pre, post = np.divmod(pos, n)
    keep = pre != post  # no autapses
    return pre[keep], post[keep]


class Reservoir:
    """A sparse recurrent network of heterogeneous Izhikevich neurons.

    Follows the scikit-learn convention: ``__init__`` only stores its arguments; ``build()``
    validates them and draws the network (``model_``, ``exc_``, ``input_neurons_``);
    ``run()`` builds on first use.

    Parameters
    ----------
    n : int
        Number of neurons; the first ``round(exc_fraction * n)`` are excitatory.
    exc_fraction : float
        Fraction of excitatory cells, in [0, 1].
    p_connect : float
        Probability of each ordered pair (pre, post), drawn independently, no autapses: the
        out-degree is ``Binomial(n - 1, p_connect)``.
    heterogeneity : "izhikevich2003" or mapping
        ``"izhikevich2003"``: the parameter spread of Izhikevich (2003) (excitatory
        ``c = -65 + 15 r^2, d = 8 - 6 r^2``, RS to CH; inhibitory ``a = 0.02 + 0.08 r,
        b = 0.25 - 0.05 r``, FS to LTS). A mapping ``{"exc": {"RS": 0.8, "CH": 0.2},
        "inh": {"FS": 1.0}}`` mixes cell classes of :data:`neurosim.izhikevich.PATTERNS`
        with the given proportions.
    w_exc, w_inh : float
        Largest excitatory (> 0) and inhibitory (< 0) synaptic jump of ``I_syn``; weights
        are ``w * U(0, 1)``. The defaults give 2003-like activity for about 100 synapses per
        cell; scale them by ``100 / (p_connect * n)`` for other in-degrees.
    tau_syn_ms : float
        Decay time constant of the synaptic current (ms).
    n_inputs : int
        Number of input channels.
    input_fraction : float
        Fraction of cells each input channel projects onto (an independent random subset per
        channel).
    input_scale : float
        Input weights are ``input_scale * U(0.5, 1.5)`` on the chosen cells.
    noise_std : tuple of float
        Standard deviation of the thalamic noise current of excitatory and inhibitory cells,
        redrawn every ms (Izhikevich 2003: (5, 2)).
    dt_ms : float
        Default time step (ms).
    v_substeps : int
        Euler sub-steps of v per step.
    seed : int
        Seed of all the random draws of the network (not of the noise: see ``run``).
    """

    def __init__(
        self,
        n: int = 1000,
        exc_fraction: float = 0.8,
        p_connect: float = 0.1,
        heterogeneity: str | Mapping[str, Mapping[str, float]] = "izhikevich2003",
        w_exc: float = 1.0,
        w_inh: float = -2.0,
        tau_syn_ms: float = 5.0,
        n_inputs: int = 0,
        input_fraction: float = 0.2,
        input_scale: float = 10.0,
        noise_std: tuple[float, float] = (5.0, 2.0),
        dt_ms: float = 0.5,
        v_substeps: int = 1,
        seed: int = 0,
    ) -> None:
        self.n = n
        self.exc_fraction = exc_fraction
        self.p_connect = p_connect
        self.heterogeneity = heterogeneity
        self.w_exc = w_exc
        self.w_inh = w_inh
        self.tau_syn_ms = tau_syn_ms
        self.n_inputs = n_inputs
        self.input_fraction = input_fraction
        self.input_scale = input_scale
        self.noise_std = noise_std
        self.dt_ms = dt_ms
        self.v_substeps = v_substeps
        self.seed = seed

    def _validate(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        def finite(x: Any) -> bool:
            try:
                return bool(np.all(np.isfinite(np.asarray(x, dtype=float))))
            except (TypeError, ValueError):
                return False

        check("n", isinstance(self.n, int | np.integer) and self.n >= 1, "an integer >= 1")
        check("exc_fraction", finite(self.exc_fraction) and 0 <= self.exc_fraction <= 1,
              "a number in [0, 1]")
        check("p_connect", finite(self.p_connect) and 0 <= self.p_connect <= 1,
              "a number in [0, 1]")
        check("w_exc", finite(self.w_exc) and self.w_exc >= 0, "a finite number >= 0")
        check("w_inh", finite(self.w_inh) and self.w_inh <= 0, "a finite number <= 0")
        check("tau_syn_ms", finite(self.tau_syn_ms) and self.tau_syn_ms > 0, "a number > 0")
        check("n_inputs", isinstance(self.n_inputs, int | np.integer) and self.n_inputs >= 0,
              "an integer >= 0")
        check("input_fraction", finite(self.input_fraction) and 0 < self.input_fraction <= 1,
              "a number in (0, 1]")
        check("input_scale", finite(self.input_scale), "a finite number")
        check("noise_std", finite(self.noise_std) and np.shape(self.noise_std) == (2,)
              and min(self.noise_std) >= 0, "two numbers >= 0 (excitatory, inhibitory)")

    def _cell_params(self, rng: np.random.Generator, n_exc: int, n_inh: int
                     ) -> tuple[np.ndarray, ...]:
        het = self.heterogeneity
        if isinstance(het, str):
            if het != "izhikevich2003":
                raise ValueError(
                    f"heterogeneity: expected 'izhikevich2003' or a mapping like "
                    f"{{'exc': {{'RS': 0.8, 'CH': 0.2}}, 'inh': {{'FS': 1.0}}}}, got {het!r}"
                )
            re, ri = rng.random(n_exc), rng.random(n_inh)
            a = np.concatenate([np.full(n_exc, 0.02), 0.02 + 0.08 * ri])
            b = np.concatenate([np.full(n_exc, 0.2), 0.25 - 0.05 * ri])
            c = np.concatenate([-65 + 15 * re**2, np.full(n_inh, -65.0)])
            d = np.concatenate([8 - 6 * re**2, np.full(n_inh, 2.0)])
            return a, b, c, d
        if not isinstance(het, Mapping) or set(het) - {"exc", "inh"}:
            raise ValueError(f"heterogeneity: expected keys 'exc' and 'inh', got {het!r}")
        from neurosim.izhikevich import STANDARD_QUADRATIC, get_pattern

        parts = []
        for pop, size in (("exc", n_exc), ("inh", n_inh)):
            mix = dict(het.get(pop, {}))
            if size and not mix:
                raise ValueError(f"heterogeneity[{pop!r}]: expected a mapping of pattern "
                                 f"names to proportions, got {mix!r}")
            if not mix:
                continue
            names = list(mix)
            probs = np.asarray([mix[k] for k in names], dtype=float)
            if not (np.all(np.isfinite(probs)) and np.all(probs >= 0) and probs.sum() > 0):
                raise ValueError(f"heterogeneity[{pop!r}]: expected proportions >= 0 with a "
                                 f"positive sum, got {mix!r}")
            pats = [get_pattern(k) for k in names]
            for p in pats:
                if tuple(p.quadratic) != tuple(STANDARD_QUADRATIC):
                    raise ValueError(
                        f"heterogeneity[{pop!r}]: pattern {p.name!r} uses a non-standard "
                        f"quadratic {p.quadratic}; a network uses 0.04 v^2 + 5 v + 140"
                    )
            which = rng.choice(len(names), size=size, p=probs / probs.sum())
            table = np.asarray([p.params.as_arrays(1) for p in pats])[:, :, 0]  # (k, 4)
            parts.append(table[which])
        abcd = np.concatenate(parts) if parts else np.zeros((0, 4))
        return tuple(abcd[:, i].copy() for i in range(4))

    def build(self) -> Reservoir:
        """Validate the parameters and draw the network. Returns self."""
        self._validate()
        n = int(self.n)
        rng = np.random.default_rng(self.seed)
        n_exc = int(round(self.exc_fraction * n))
        n_inh = n - n_exc
        a, b, c, d = self._cell_params(rng, n_exc, n_inh)
        pre, post = _bernoulli_pairs(rng, n, float(self.p_connect))
        w = rng.random(pre.size)
        w *= np.where(pre < n_exc, self.w_exc, self.w_inh)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=n))])
        weights = scipy.sparse.csr_matrix((w, post, indptr), shape=(n, n))
        exc = np.arange(n) < n_exc
        input_weights = None
        self.input_neurons_ = []
        if self.n_inputs:
            input_weights = np.zeros((int(self.n_inputs), n))
            k = max(int(round(self.input_fraction * n)), 1)
            for ch in range(int(self.n_inputs)):
                cells = np.sort(rng.choice(n, size=k, replace=False))
                input_weights[ch, cells] = self.input_scale * rng.uniform(0.5, 1.5, size=k)
                self.input_neurons_.append(cells)
        self.exc_ = exc
        self.model_ = NetworkModel(
            a=a, b=b, c=c, d=d, weights=weights, exc=exc,
            noise_std=np.where(exc, self.noise_std[0], self.noise_std[1]),
            noise_interval_ms=1.0, tau_syn_ms=float(self.tau_syn_ms),
            v_substeps=int(self.v_substeps), dt_ms=float(self.dt_ms),
            input_weights=input_weights, name=f"reservoir_N{n}",
        ).validate()
        return self

    def run(self, duration_ms: float, **kwargs: Any) -> SpikeRecord:
        """Build if needed, then run; see :meth:`neurosim.network.NetworkModel.run`."""
        if not hasattr(self, "model_"):
            self.build()
        return self.model_.run(duration_ms, **kwargs)
