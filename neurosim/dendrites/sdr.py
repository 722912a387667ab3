"""The mathematics of sparse distributed representations (SDRs) and dendritic segments.

Closed forms after Ahmad & Hawkins (2016), "How do neurons operate on sparse distributed
representations? A mathematical theory of sparsity, neurons and active dendrites"
(arXiv:1601.00720), with the conventions of Numenta's code that produced the paper's
numbers (``numenta/htmresearch: projects/sdr_paper``):

- a population of ``n`` cells of which ``a`` are active at once (an SDR);
- a dendritic segment with ``s`` synapses onto the population;
- the segment fires an NMDA spike when at least ``theta`` of its synapses see active cells.

Every closed form is computed exactly with Python integers (``math.comb``) while that is
cheap, so it stays right at ``n = 100,000`` where ``scipy.special.comb(..., exact=False)``
overflows; the result is a correctly-rounded float (which underflows to ``0.0`` below
~1e-308: use the ``log_`` variant for such tiny values). Where the integers would be huge
(the sum's terms times their bits**1.5 above :data:`EXACT_BUDGET_BITS`, e.g. ``n = 10**7``,
``a = s = 10**5``, whose exact sum takes hours) the same hypergeometric tail is computed in
floating point: scipy's Boost hypergeometric for the probability (relative error about
1e-14 against the exact sums on the test grid), and a log-space sum of
``scipy.stats.hypergeom.logpmf`` terms for the ``log_`` variants below 1e-300 (relative
error about 1e-10). Inputs beyond ``2**53`` are refused. Monte Carlo simulators draw
explicit random SDRs and segments and count threshold crossings, so they check the
combinatorics independently; they refuse runs beyond :data:`MC_BUDGET` cell draws.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "EXACT_BUDGET_BITS",
    "MC_BUDGET",
    "MonteCarloEstimate",
    "active_count",
    "expected_union_size",
    "false_match_probability",
    "false_negative_probability",
    "log_false_match_probability",
    "log_false_negative_probability",
    "log_number_of_sdrs",
    "number_of_sdrs",
    "optimal_threshold",
    "simulate_false_match",
    "simulate_false_negative",
    "simulate_union_false_match",
    "union_false_match_probability",
    "union_size_distribution",
]


#: Exact integer sums are used while (number of terms) x (bits of the largest binomial)
#: ** 1.5 (big-integer binomials cost superlinearly in their size) stays below this
#: (a few tenths of a second); beyond it the floating-point path answers.
EXACT_BUDGET_BITS: int = 200_000_000
#: Largest ``n_trials * n`` (random cells drawn) a Monte Carlo simulator accepts.
MC_BUDGET: int = 2_000_000_000
#: Largest population for the floating-point path (integers are exact in float64).
_MAX_FLOAT_INT = 2**53
#: Cells per Monte Carlo batch (memory: the batch holds batch x n keys).
_MC_BATCH_CELLS = 2**24

# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int = 0, high: int | None = None, high_name: str = ""):
    """Return ``value`` as int after checking it is an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    if high is not None and value > high:
        bound = f"{high_name} = {high}" if high_name else str(high)
        raise ValueError(f"{name}: expected an integer <= {bound}, got {value}")
    return value


def _check_segment(n, a, s, theta) -> tuple[int, int, int, int]:
    n = _check_int("n", n, low=1)
    a = _check_int("a", a, low=0, high=n, high_name="n")
    s = _check_int("s", s, low=0, high=n, high_name="n")
    theta = _check_int("theta", theta, low=0, high=s, high_name="s")
    return n, a, s, theta


def _log2_comb(n: int, k: int) -> float:
    """Bits of ``C(n, k)``, from log-gamma (no big integers)."""
    return float(_log_comb(n, k)) / math.log(2) if 0 < k < n else 0.0


def _exact_is_cheap(n_terms: int, pop: int, draws: int) -> bool:
    """Whether summing ``n_terms`` products of binomials of ``pop`` is cheap in integers."""
    return max(n_terms, 1) * max(_log2_comb(pop, draws), 1.0) ** 1.5 <= EXACT_BUDGET_BITS


def _check_float_range(**sizes: int) -> None:
    for name, value in sizes.items():
        if value > _MAX_FLOAT_INT:
            raise ValueError(
                f"{name}: expected an integer <= 2**53 (the range where the closed form is "
                f"computed in floating point), got {value}"
            )


def _hypergeom_tail(pop: int, succ: int, draws: int, k_min: int) -> tuple[float, float]:
    """``P(X >= k_min)`` and its log for ``X ~ Hypergeom(pop, succ, draws)``, floating point.

    The probability from scipy's Boost implementation; the log from it while it is a
    normal float, else a log-sum-exp of ``logpmf`` over the tail, summed from ``k_min``
    upward until the terms (log-concave in ``k``) fall 1e-20 below the largest.
    """
    hi = min(succ, draws)
    lo = max(k_min, draws - (pop - succ), 0)
    if lo > hi:
        return 0.0, -math.inf
    if lo <= max(0, draws - (pop - succ)):
        return 1.0, 0.0  # the tail is the whole support
    mode = (draws + 1) * (succ + 1) // (pop + 2)
    if lo <= mode or float(stats.hypergeom.logpmf(lo, pop, succ, draws)) > -600.0:
        p = float(stats.hypergeom.sf(lo - 1, pop, succ, draws))
        if p > 1e-300:
            return p, math.log(p)
    total, start, chunk = -math.inf, lo, 4096
    while start <= hi:
        k = np.arange(start, min(start + chunk, hi + 1))
        logp = stats.hypergeom.logpmf(k, pop, succ, draws)
        total = float(np.logaddexp(total, special.logsumexp(logp)))
        if logp[-1] < total - 46.0:  # e^-46 ~ 1e-20: the rest cannot matter
            break
        start += chunk
    return math.exp(total), total


def _log_ratio(num: int, den: int) -> float:
    """``log(num / den)`` for (possibly huge) positive Python integers; ``-inf`` if num == 0."""
    if num == 0:
        return -math.inf
    return math.log(num) - math.log(den)


# ---------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------
def active_count(n: int, sparsity: float) -> int:
    """Number of active cells ``a = round(sparsity * n)`` of an SDR with the given sparsity.

    Parameters
    ----------
    n : int
        Population size (``n >= 1``).
    sparsity : float
        Fraction of active cells, in the open interval (0, 1).
    """
    n = _check_int("n", n, low=1)
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not (
        0 < sparsity < 1
    ):
        raise ValueError(f"sparsity: expected a number in (0, 1), got {sparsity!r}")
    return max(1, round(sparsity * n))


def number_of_sdrs(n: int, a: int) -> int:
    """The number of distinct SDRs with ``a`` of ``n`` cells active, ``C(n, a)`` (exact int).

    Refused (``ValueError``) when ``C(n, a)`` has more than 2,000,000 bits (about 600,000
    digits, seconds to compute): use :func:`log_number_of_sdrs` there.
    """
    n = _check_int("n", n, low=1)
    a = _check_int("a", a, low=0, high=n, high_name="n")
    bits = _log2_comb(n, a)
    if bits > 2_000_000:
        raise ValueError(
            f"a: C(n={n}, a={a}) has about {bits * math.log10(2):.3g} digits; expected "
            "at most ~600,000 for the exact integer (use log_number_of_sdrs)"
        )
    return math.comb(n, a)


def log_number_of_sdrs(n: int, a: int) -> float:
    """Natural log of :func:`number_of_sdrs`, ``log C(n, a)`` from log-gamma (any size)."""
    n = _check_int("n", n, low=1)
    a = _check_int("a", a, low=0, high=n, high_name="n")
    return float(_log_comb(n, a))


def _false_match_counts(n: int, a: int, s: int, theta: int) -> tuple[int, int]:
    # b runs only where both binomials are non-zero: b <= a and a - b <= n - s.
    lo, hi = max(theta, a - (n - s)), min(s, a)
    num = sum(math.comb(s, b) * math.comb(n - s, a - b) for b in range(lo, hi + 1))
    return num, math.comb(n, a)


def _false_match(n: int, a: int, s: int, theta: int) -> tuple[float, float]:
    """(probability, log probability): exact integers when cheap, else floating point."""
    lo, hi = max(theta, a - (n - s)), min(s, a)
    if _exact_is_cheap(hi - lo + 1, n, a):
        num, den = _false_match_counts(n, a, s, theta)
        return num / den, _log_ratio(num, den)
    _check_float_range(n=n)
    return _hypergeom_tail(n, s, a, theta)


def false_match_probability(n: int, a: int, s: int, theta: int) -> float:
    """Probability that a segment matches a random SDR by chance (a false positive).

    Ahmad & Hawkins (2016), eq. 4 (``P_fm``)::

        P(overlap >= theta) = sum_{b=theta}^{s} C(s, b) C(n - s, a - b) / C(n, a)

    i.e. the upper tail of a hypergeometric distribution, computed exactly with integers.

    Parameters
    ----------
    n : int
        Number of cells in the population (``n >= 1``).
    a : int
        Number of active cells in the random SDR (``0 <= a <= n``).
    s : int
        Number of synapses on the segment (``0 <= s <= n``).
    theta : int
        NMDA-spike threshold: active synapses needed (``0 <= theta <= s``).

    Returns
    -------
    float
        The probability, correctly rounded; ``0.0`` if it is below the smallest float
        (see :func:`log_false_match_probability`).

    Raises
    ------
    ValueError
        If an argument is not an integer or out of range (``a > n``, ``s > n``,
        ``theta > s``, negative sizes).
    """
    n, a, s, theta = _check_segment(n, a, s, theta)
    return _false_match(n, a, s, theta)[0]  # int / int is correctly rounded in Python


def log_false_match_probability(n: int, a: int, s: int, theta: int) -> float:
    """Natural log of :func:`false_match_probability`, exact for values far below 1e-308."""
    n, a, s, theta = _check_segment(n, a, s, theta)
    return _false_match(n, a, s, theta)[1]


def _check_noise(a, s, theta, v) -> tuple[int, int, int, int]:
    a = _check_int("a", a, low=1)
    s = _check_int("s", s, low=0, high=a, high_name="a")
    theta = _check_int("theta", theta, low=0, high=s, high_name="s")
    v = _check_int("v", v, low=0, high=a, high_name="a")
    return a, s, theta, v


def _false_negative_counts(a: int, s: int, theta: int, v: int) -> tuple[int, int]:
    # b = number of the segment's synapses among the v removed cells; the segment fails
    # when s - b < theta, i.e. b >= s - theta + 1.
    lo, hi = max(s - theta + 1, v - (a - s), 0), min(s, v)
    num = sum(math.comb(s, b) * math.comb(a - s, v - b) for b in range(lo, hi + 1))
    return num, math.comb(a, v)


def _false_negative(a: int, s: int, theta: int, v: int) -> tuple[float, float]:
    """(probability, log probability): exact integers when cheap, else floating point."""
    lo, hi = max(s - theta + 1, v - (a - s), 0), min(s, v)
    if _exact_is_cheap(hi - lo + 1, a, v):
        num, den = _false_negative_counts(a, s, theta, v)
        return num / den, _log_ratio(num, den)
    _check_float_range(a=a)
    return _hypergeom_tail(a, s, v, s - theta + 1)


def false_negative_probability(a: int, s: int, theta: int, v: int) -> float:
    """Probability that a segment misses its own pattern when ``v`` active cells are noise.

    A segment subsamples ``s`` of the ``a`` active cells of a stored SDR; then ``v`` of the
    ``a`` active cells are replaced by random other cells. The segment fails when fewer
    than ``theta`` of its synapses remain active. Ahmad & Hawkins (2016), eq. 6 (``P_fn``)::

        P_fn = sum_{b = s - theta + 1}^{s} C(s, b) C(a - s, v - b) / C(a, v)

    It does not depend on ``n``.

    Parameters
    ----------
    a : int
        Active cells in the stored pattern (``a >= 1``).
    s : int
        Synapses on the segment, all onto active cells of the pattern (``0 <= s <= a``).
    theta : int
        NMDA threshold (``0 <= theta <= s``).
    v : int
        Active cells replaced by noise (``0 <= v <= a``).

    Returns
    -------
    float
        The probability (``0.0`` if below the smallest float).
    """
    a, s, theta, v = _check_noise(a, s, theta, v)
    return _false_negative(a, s, theta, v)[0]


def log_false_negative_probability(a: int, s: int, theta: int, v: int) -> float:
    """Natural log of :func:`false_negative_probability`."""
    a, s, theta, v = _check_noise(a, s, theta, v)
    return _false_negative(a, s, theta, v)[1]


def expected_union_size(n: int, s: int, m: int) -> float:
    """Expected number of distinct synapses after storing ``m`` random ``s``-subsets.

    Ahmad & Hawkins (2016), union property: a bit stays off with probability
    ``p0 = (1 - s/n)^m``, so ``E|X| = n (1 - p0)``.
    """
    n = _check_int("n", n, low=1)
    s = _check_int("s", s, low=0, high=n, high_name="n")
    m = _check_int("m", m, low=0)
    return n * (1.0 - (1.0 - s / n) ** m)


def union_size_distribution(n: int, s: int, m: int) -> np.ndarray:
    """Exact distribution of the size of the union of ``m`` random ``s``-subsets of ``n``.

    A Markov chain over the union size ``u``: adding an independent random ``s``-subset
    grows it by ``j`` new cells with hypergeometric probability
    ``C(n - u, j) C(u, s - j) / C(n, s)`` (computed in float64 via log-gamma).

    Returns
    -------
    ndarray of float, shape (min(n, m * s) + 1,)
        ``p[u] = P(|union| = u)``.

    Raises
    ------
    ValueError
        If the chain's table (``(min(n, m s) + 1) x (s + 1)`` entries) exceeds 2e7
        entries or its ``m`` steps exceed 5e8 operations (minutes and gigabytes): use the
        ``"expected"`` method of :func:`union_false_match_probability` there.
    """
    n = _check_int("n", n, low=1)
    s = _check_int("s", s, low=0, high=n, high_name="n")
    m = _check_int("m", m, low=1)
    u_max = min(n, m * s)
    table = (u_max + 1) * (s + 1)
    if table > 20_000_000 or (m - 1) * table > 500_000_000:
        raise ValueError(
            f"m: the exact union distribution for n={n}, s={s}, m={m} needs a "
            f"{u_max + 1} x {s + 1} table over {m} steps; expected at most 2e7 entries and "
            "5e8 operations (use method='expected')"
        )
    u = np.arange(u_max + 1)[:, None]
    j = np.arange(s + 1)[None, :]
    # log C(n-u, j) + log C(u, s-j) - log C(n, s), where both binomials are defined
    valid = (j <= n - u) & (s - j <= u)
    log_w = (_log_comb(n - u, np.where(valid, j, 0)) + _log_comb(u, np.where(valid, s - j, 0))
             - _log_comb(n, s))
    w = np.where(valid, np.exp(log_w), 0.0)  # w[u, j]: P(j new cells | union size u)
    p = np.zeros(u_max + 1)
    p[s] = 1.0
    for _ in range(m - 1):
        nxt = np.zeros_like(p)
        for jj in range(s + 1):
            nxt[jj:] += p[: u_max + 1 - jj] * w[: u_max + 1 - jj, jj]
        p = nxt / nxt.sum()
    return p


def _log_comb(N, K):
    """``log C(N, K)`` elementwise via log-gamma (valid for 0 <= K <= N)."""
    N, K = np.asarray(N, dtype=float), np.asarray(K, dtype=float)
    return special.gammaln(N + 1) - special.gammaln(K + 1) - special.gammaln(N - K + 1)


def union_false_match_probability(
    n: int, a: int, s: int, theta: int, m: int, method: str = "expected"
) -> float:
    """False-match probability of a segment that stores the union of ``m`` patterns.

    Ahmad & Hawkins (2016), section "Union property": each of ``m`` patterns contributes
    ``s`` synapses to one segment; a random SDR falsely matches when ``theta`` of the
    union's synapses are active.

    Parameters
    ----------
    n, a, s, theta : int
        As in :func:`false_match_probability` (``s`` is synapses per stored pattern).
    m : int
        Number of stored patterns (``m >= 1``).
    method : {"expected", "exact"}
        ``"expected"`` (the paper's and Numenta's formula): ``P_fm`` with ``s`` replaced by
        ``round(n (1 - (1 - s/n)^m))``. ``"exact"``: average of ``P_fm(n, a, u, theta)``
        over the exact distribution of the union size ``u``
        (:func:`union_size_distribution`).

    Returns
    -------
    float
    """
    n, a, s, theta = _check_segment(n, a, s, theta)
    m = _check_int("m", m, low=1)
    if method == "expected":
        size = min(n, round(expected_union_size(n, s, m)))
        return 0.0 if theta > size else false_match_probability(n, a, size, theta)
    if method == "exact":
        p = union_size_distribution(n, s, m)
        u = np.flatnonzero(p > 0)
        u = u[u >= theta]
        return float(np.sum(p[u] * stats.hypergeom.sf(theta - 1, n, u, a)))
    raise ValueError(f"method: expected 'expected' or 'exact', got {method!r}")


def optimal_threshold(
    n: int, a: int, s: int, v: int, fp_weight: float = 1.0
) -> tuple[int, float, float]:
    """The NMDA threshold that minimises false positives plus false negatives.

    Ahmad & Hawkins (2016), section "Robustness to noise": a low threshold tolerates
    noise but matches random patterns; a high one is selective but brittle. The theta
    minimising ``fp_weight * P_fm(n, a, s, theta) + P_fn(a, s, theta, v)`` is the paper's
    prediction for the NMDA-spike threshold (8-20 coincident synapses for s ~ 20-40).

    Parameters
    ----------
    n, a, s : int
        Population size, active cells, synapses per segment (``s <= a <= n``).
    v : int
        Active cells replaced by noise (``0 <= v <= a``).
    fp_weight : float
        Relative cost of a false positive (``> 0``).

    Returns
    -------
    theta : int
        The best threshold (the smallest one on ties).
    p_false_match, p_false_negative : float
        The two error probabilities at that threshold.
    """
    n, a, s, _ = _check_segment(n, a, s, 0)
    a, s, _, v = _check_noise(a, s, 0, v)
    if not (isinstance(fp_weight, numbers.Real) and fp_weight > 0):
        raise ValueError(f"fp_weight: expected a positive number, got {fp_weight!r}")
    if s == 0:
        raise ValueError("s: expected at least 1 synapse to choose a threshold, got 0")
    if _exact_is_cheap(s * min(s, a), n, a):
        best = None
        for theta in range(1, s + 1):
            fp = false_match_probability(n, a, s, theta)
            fn = false_negative_probability(a, s, theta, v)
            cost = fp_weight * fp + fn
            if best is None or cost < best[0]:
                best = (cost, theta, fp, fn)
        _, theta, fp, fn = best
        return theta, fp, fn
    # large segments: both error curves at once from the two pmfs (float64), tails
    # summed from the small end so tiny probabilities keep their digits
    _check_float_range(n=n)
    if min(s, a) > 10_000_000:
        raise ValueError(f"s: expected at most 1e7 synapses (min(s, a)) here, got {min(s, a)}")
    # (log-gamma pmfs: relative error ~1e-8 at n = 1e7, ample for choosing theta)
    b = np.arange(min(s, a) + 1)
    tail_fm = np.cumsum(np.exp(stats.hypergeom.logpmf(b, n, s, a))[::-1])[::-1]
    bv = np.arange(min(s, v) + 1)
    tail_fn = np.cumsum(np.exp(stats.hypergeom.logpmf(bv, a, s, v))[::-1])[::-1]
    thetas = np.arange(1, s + 1)
    fp = np.where(thetas < tail_fm.size, tail_fm[np.minimum(thetas, tail_fm.size - 1)], 0.0)
    k = s - thetas + 1  # the segment fails when at least k of its synapses are removed
    fn = np.where(k < tail_fn.size, tail_fn[np.minimum(k, tail_fn.size - 1)], 0.0)
    i = int(np.argmin(fp_weight * fp + fn))
    return int(thetas[i]), float(fp[i]), float(fn[i])


# ---------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarloEstimate:
    """A Monte Carlo probability with its exact (Clopper-Pearson) 95% interval."""

    probability: float
    n_hits: int
    n_trials: int
    ci_low: float
    ci_high: float

    def contains(self, p: float) -> bool:
        """Whether ``p`` lies in the confidence interval."""
        return self.ci_low <= p <= self.ci_high


def _estimate(hits: int, trials: int, confidence: float = 0.95) -> MonteCarloEstimate:
    ci = stats.binomtest(hits, trials).proportion_ci(confidence_level=confidence)
    return MonteCarloEstimate(hits / trials, hits, trials, float(ci.low), float(ci.high))


def _random_subsets(rng: np.random.Generator, batch: int, n: int, k: int) -> np.ndarray:
    """``batch`` independent uniform random ``k``-subsets of ``range(n)``, shape (batch, k)."""
    if k == 0:
        return np.zeros((batch, 0), dtype=np.int64)
    keys = rng.random((batch, n), dtype=np.float32)
    return np.argpartition(keys, k - 1, axis=1)[:, :k]


def _batches(n_trials: int, batch_size: int):
    done = 0
    while done < n_trials:
        b = min(batch_size, n_trials - done)
        yield b
        done += b


def _check_trials(n_trials, batch_size, n: int) -> int:
    """Validate the Monte Carlo sizes; the batch actually used (memory-bounded)."""
    n_trials = _check_int("n_trials", n_trials, low=1)
    batch_size = _check_int("batch_size", batch_size, low=1)
    if n_trials * n > MC_BUDGET:
        raise ValueError(
            f"n_trials: {n_trials} trials of n={n} cells draw {n_trials * n:.3g} random "
            f"cells; expected at most MC_BUDGET={MC_BUDGET:.0e} (fewer trials, or the closed "
            "form)"
        )
    return max(1, min(batch_size, _MC_BATCH_CELLS // n))


def simulate_false_match(
    n: int,
    a: int,
    s: int,
    theta: int,
    n_trials: int = 10_000,
    random_state: int | np.random.Generator | None = None,
    batch_size: int = 1024,
) -> MonteCarloEstimate:
    """Monte Carlo estimate of :func:`false_match_probability`.

    Each trial draws a random segment (``s`` distinct cells) and a random SDR (``a``
    distinct active cells) as explicit index sets and tests ``|overlap| >= theta``.
    Memory and time scale as ``batch_size * n`` per batch.
    """
    n, a, s, theta = _check_segment(n, a, s, theta)
    batch_size = _check_trials(n_trials, batch_size, n)
    rng = np.random.default_rng(random_state)
    hits = 0
    for b in _batches(n_trials, batch_size):
        segment = np.zeros((b, n), dtype=bool)
        np.put_along_axis(segment, _random_subsets(rng, b, n, s), True, axis=1)
        active = _random_subsets(rng, b, n, a)
        overlap = np.take_along_axis(segment, active, axis=1).sum(axis=1)
        hits += int(np.count_nonzero(overlap >= theta))
    return _estimate(hits, n_trials)


def simulate_union_false_match(
    n: int,
    a: int,
    s: int,
    theta: int,
    m: int,
    n_trials: int = 10_000,
    random_state: int | np.random.Generator | None = None,
    batch_size: int = 1024,
) -> MonteCarloEstimate:
    """Monte Carlo estimate of :func:`union_false_match_probability` (``method="exact"``).

    Each trial stores ``m`` random ``s``-subsets on one segment (their union) and tests a
    random ``a``-of-``n`` SDR against ``theta``.
    """
    n, a, s, theta = _check_segment(n, a, s, theta)
    m = _check_int("m", m, low=1)
    batch_size = _check_trials(n_trials, batch_size, n * m)
    rng = np.random.default_rng(random_state)
    hits = 0
    for b in _batches(n_trials, batch_size):
        segment = np.zeros((b, n), dtype=bool)
        for _ in range(m):
            np.put_along_axis(segment, _random_subsets(rng, b, n, s), True, axis=1)
        active = _random_subsets(rng, b, n, a)
        overlap = np.take_along_axis(segment, active, axis=1).sum(axis=1)
        hits += int(np.count_nonzero(overlap >= theta))
    return _estimate(hits, n_trials)


def simulate_false_negative(
    a: int,
    s: int,
    theta: int,
    v: int,
    n: int | None = None,
    n_trials: int = 10_000,
    random_state: int | np.random.Generator | None = None,
    batch_size: int = 1024,
) -> MonteCarloEstimate:
    """Monte Carlo estimate of :func:`false_negative_probability`.

    Each trial stores a random ``a``-of-``n`` pattern, grows a segment onto ``s`` random
    active cells, then moves ``v`` random active cells to random inactive cells and tests
    whether ``theta`` of the segment's synapses are still active. ``n`` defaults to
    ``4 a``; the answer does not depend on it (the closed form has no ``n``).
    """
    a, s, theta, v = _check_noise(a, s, theta, v)
    n = 4 * a if n is None else _check_int("n", n, low=a + v)
    batch_size = _check_trials(n_trials, batch_size, n)
    rng = np.random.default_rng(random_state)
    hits = 0
    rows = None
    for b in _batches(n_trials, batch_size):
        rows = np.arange(b)[:, None]
        pattern = np.zeros((b, n), dtype=bool)
        active = _random_subsets(rng, b, n, a)
        pattern[rows, active] = True
        synapses = np.take_along_axis(active, _random_subsets(rng, b, a, s), axis=1)
        # noise: switch off v active cells, switch on v cells that were inactive
        removed = np.take_along_axis(active, _random_subsets(rng, b, a, v), axis=1)
        inactive = np.argsort(pattern, axis=1, kind="stable")[:, : n - a]
        added = np.take_along_axis(inactive, _random_subsets(rng, b, n - a, v), axis=1)
        pattern[rows, removed] = False
        pattern[rows, added] = True
        overlap = np.take_along_axis(pattern, synapses, axis=1).sum(axis=1)
        hits += int(np.count_nonzero(overlap < theta))
    return _estimate(hits, n_trials)
