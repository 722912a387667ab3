"""Readout plasticity: an error-modulated, attention-gated three-factor rule, and FORCE.

Both readouts read the exponentially filtered spike trains ``r(t)`` of a reservoir, given as a
tensor ``(batch, n_steps, n_neurons)`` (batch = independent trials run side by side), and
learn batched over trials. They do not feed back into the reservoir, so one reservoir run
can train several readouts on exactly the same activity (a fair comparison), and the
reservoir can be simulated first, with any engine.

- `ThreeFactorReadout`: local learning (no matrix inverse, no backpropagation through
  time) after the ingredients of Yamada & Chao (2025, arXiv:2510.14382): eligibility traces,
  an error signal, an attention gate, online learning of "when" and offline consolidation
  of "what".
- `ForceReadout`: recursive least squares (FORCE; Sussillo & Abbott 2009, Neuron 63:544;
  Nicola & Clopath 2017, Nat. Commun. 8:2208), ``P0 = I / alpha``, an update every few steps,
  and `ForceReadout.reset_P` for change points.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque

import numpy as np
import torch

from neurosim._checks import check_finite
from neurosim._device import resolve_device

__all__ = ["ForceReadout", "ThreeFactorReadout", "scheduled_gate"]


@contextlib.contextmanager
def _few_threads(n_elements: int):
    """One intra-op thread for loops of tiny per-step tensor ops.

    Waking a thread pool for a (batch x neurons) product costs more than the product; on a
    loaded CPU it made the step loop ~100x slower. Large problems keep the pool.
    """
    before = torch.get_num_threads()
    if n_elements < 2_000_000 and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_rates(rates, name: str = "rates") -> torch.Tensor:
    r = torch.as_tensor(rates)
    if r.ndim != 3:
        raise ValueError(
            f"{name}: expected a tensor (batch, n_steps, n_neurons), got shape {tuple(r.shape)}"
        )
    if not torch.isfinite(r).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return r


def _check_targets(targets, rates: torch.Tensor, n_outputs: int | None) -> torch.Tensor:
    y = torch.as_tensor(targets)
    if y.ndim != 3 or y.shape[:2] != rates.shape[:2]:
        raise ValueError(
            f"targets: expected shape (batch, n_steps, n_outputs) = ({rates.shape[0]}, "
            f"{rates.shape[1]}, K) like rates, got {tuple(y.shape)}"
        )
    if n_outputs is not None and y.shape[2] != n_outputs:
        raise ValueError(
            f"targets: the readout has n_outputs={n_outputs} units but the targets have "
            f"{y.shape[2]} (one per task identity); build the readout with "
            f"n_outputs={y.shape[2]}"
        )
    if not torch.isfinite(y).all():
        raise ValueError("targets: expected finite values, got NaN or inf")
    return y


def scheduled_gate(
    event_ms,
    n_steps: int,
    dt_ms: float,
    width_ms: float = 30.0,
    baseline: float = 0.2,
) -> torch.Tensor:
    """The scheduled attention gate ``G(t)``, open around salient events.

    ``G(t) = g0 + (1 - g0) * max_e exp(-(t - t_e)^2 / (2 w^2))`` with ``g0 = baseline`` and
    ``w = width_ms``: 1 at the cue and at the stimulus onset, ``g0`` far from them.

    Parameters
    ----------
    event_ms : array-like, shape (batch, n_events)
        Times of the salient events of each trial (ms after the cue); NaN = no event (e.g. a
        trial without stimulus).
    n_steps : int
    dt_ms : float
    width_ms : float
        Standard deviation ``w`` of the opening (ms).
    baseline : float
        ``g0`` in [0, 1].

    Returns
    -------
    torch.Tensor, float32, shape (batch, n_steps)
    """
    ev = torch.as_tensor(np.asarray(event_ms, dtype=np.float64))
    if ev.ndim != 2:
        raise ValueError(f"event_ms: expected shape (batch, n_events), got {tuple(ev.shape)}")
    if not 0.0 <= baseline <= 1.0:
        raise ValueError(f"baseline: expected a value in [0, 1], got {baseline!r}")
    check_finite("width_ms", width_ms, gt=0)  # NaN would give a closed gate (zeros)
    check_finite("dt_ms", dt_ms, gt=0)
    t = torch.arange(n_steps, dtype=torch.float64) * dt_ms
    bumps = torch.exp(-0.5 * ((t[None, :, None] - ev[:, None, :]) / width_ms) ** 2)
    bumps = torch.nan_to_num(bumps, nan=0.0).amax(dim=2) if ev.shape[1] else t[None] * 0
    return (baseline + (1.0 - baseline) * bumps).float()


class ThreeFactorReadout:
    r"""Error-modulated, attention-gated three-factor readout of "what" and "when".

    Readout unit k (one per stimulus identity) has two weight vectors on the reservoir's
    filtered spike trains ``r_j(t)``: a "when" vector learned online and a "what" vector
    learned offline by consolidation. Its prediction is their product,

    .. math::

        s_k(t) = \sum_j W^{when}_{kj} r_j(t), \quad
        a_k(t) = \sum_j W^{what}_{kj} r_j(t), \quad
        y_k(t) = a_k(t)\, s_k(t),

    so ``s_k`` carries the timing (a bump at the expected latency) and ``a_k`` the
    expectation that k occurs (its probability).

    Learning (design after Yamada & Chao 2025, whose methods are not public; equations ours):

    0. Input conditioning (``standardize``, default): each synapse reads its presynaptic
       cell's rate standardised by that cell's own running mean and standard deviation,
       ``x_j = (r_j - mu_j) / sd_j``, and each unit has a bias synapse from a constant unit
       (``x_0 = 1``). Positive rates share a large common mode that dominates ``|e|^2`` and
       makes the normalised rule learn the informative directions slowly (on the job's
       reservoir the top eigenvalue of the rate correlation holds 2/3 of its trace);
       standardised inputs learn them about 3x faster. The statistics are per synapse, so the
       rule stays local. Below, ``r`` means ``x`` when standardised.
    1. Eligibility trace (filtered presynaptic activity times the postsynaptic factor
       ``phi'(u) = 1`` of the linear unit), time constant ``tau_e``:
       ``tau_e de_j/dt = -e_j + r_j(t) phi'``.
    2. Error (third factor, signed): ``M_k(t) = o_k (T_k(t) - s_k(t))`` with ``T_k`` the
       target bump at the onset of identity k and ``o_k = 1`` on trials where k occurred, 0
       otherwise (a timing error exists only when the stimulus is observed).
    3. Attention gate ``G(t)`` in [0, 1], *scheduled* (not learned): open around the cue and
       the stimulus onset, ``g0`` elsewhere (`scheduled_gate`). Passed in per trial.
    4. Online update, every time step, averaged over the batch of trials:
       ``dW^{when}_{kj} = eta_t G(t) M_k(t) e_j(t)``, with ``eta_t = eta`` or, if
       ``normalize``, ``eta / <|e|^2>`` (normalised LMS; Widrow & Hoff): a scalar that makes
       ``eta`` independent of the reservoir's size and rate (with ``standardize`` the bias
       synapse counts in the norm: ``<|e|^2> + 1``; the bias learns by the same rule with
       the constant trace 1).
    5. Offline consolidation between blocks (`consolidate`): the traces ``e(t)`` of the last
       ``buffer_trials`` trials are stored (every ``store_every_ms``, until the stimulus
       onset plus ``store_margin_ms``: the anticipatory phase) with the trial outcomes
       ``o_k``; consolidation replays them ``n_replay`` times with the delta rule
       ``dW^{what}_{kj} = kappa_t <(o_k - a_k) e_j>`` (``kappa_t`` normalised like ``eta_t``).
       It changes only ``W^{what}``, so the timing (``s_k``) is untouched.

    Every update is an outer product of a postsynaptic error with a presynaptic trace: local,
    no matrix inverse, no backpropagation through time. A batch of B trials runs side by side
    and its updates are averaged, so per trial it learns about B times slower than trials fed
    one after another: keep batches small (2 in the ``what_when`` job) or raise ``eta``
    cautiously (the normalised rule is stable for ``eta`` well below 1 per step).

    The readout does not feed back into the reservoir; the reservoir can be run first.

    Parameters
    ----------
    n_outputs : int, optional
        K, the number of readout units; checked against the targets (default: taken from them).
    eta : float
        Online learning rate for ``W^{when}`` (dimensionless if ``normalize``).
    tau_e_ms : float
        Eligibility time constant (ms).
    dt_ms : float
        Time step of the rates (ms).
    kappa : float
        Consolidation rate for ``W^{what}``.
    n_replay : int
        Replay passes per `consolidate` call.
    buffer_trials : int
        How many recent trials the consolidation buffer keeps.
    store_every_ms : float
        Sampling interval of the stored traces (ms).
    store_margin_ms : float
        Traces are stored until this long after the stimulus onset (ms).
    normalize : bool
        Divide the learning rates by the batch-mean squared trace norm.
    standardize : bool
        Standardise each presynaptic rate by its running mean and sd and add a bias synapse
        (step 0 above).
    device : str
        "auto", "cpu" or "cuda".
    verbose : bool or None
        Unused beyond API symmetry (MNE-like).

    Attributes
    ----------
    W_when_, W_what_ : torch.Tensor, shape (n_outputs, n_neurons)
    bias_when_, bias_what_ : torch.Tensor, shape (n_outputs,)
        Bias synapses (zero unless ``standardize``).
    mean_, scale_ : torch.Tensor, shape (n_neurons,)
        Running per-neuron mean and standard deviation of the rates (0 and 1 unless
        ``standardize``).
    n_features_in_ : int
    n_trials_seen_ : int
    n_consolidations_ : int

    References
    ----------
    Yamada Y, Chao ZC (2025). Joint encoding of "what" and "when" predictions through
    error-modulated plasticity in reservoir spiking networks. arXiv:2510.14382.
    Gerstner W et al. (2018). Eligibility traces and plasticity on behavioral time scales.
    Front. Neural Circuits 12:53 (three-factor rules).
    """

    def __init__(
        self,
        n_outputs: int | None = None,
        eta: float = 0.2,
        tau_e_ms: float = 2.0,
        dt_ms: float = 1.0,
        kappa: float = 1.0,
        n_replay: int = 50,
        buffer_trials: int = 200,
        store_every_ms: float = 5.0,
        store_margin_ms: float = 30.0,
        normalize: bool = True,
        standardize: bool = True,
        device: str = "cpu",
        verbose: bool | None = None,
    ) -> None:
        self.n_outputs = n_outputs
        self.eta = eta
        self.tau_e_ms = tau_e_ms
        self.dt_ms = dt_ms
        self.kappa = kappa
        self.n_replay = n_replay
        self.buffer_trials = buffer_trials
        self.store_every_ms = store_every_ms
        self.store_margin_ms = store_margin_ms
        self.normalize = normalize
        self.standardize = standardize
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _validate(self) -> None:
        for name in ("eta", "kappa"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        for name in ("tau_e_ms", "dt_ms", "store_every_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
        for name in ("n_replay", "buffer_trials"):
            v = getattr(self, name)
            if int(v) != v or v < 0 or (name == "buffer_trials" and v < 1):
                raise ValueError(f"{name}: expected a non-negative integer, got {v!r}")
        if not (math.isfinite(self.store_margin_ms) and self.store_margin_ms >= 0):
            raise ValueError(
                f"store_margin_ms: expected a finite number >= 0, got {self.store_margin_ms!r}")
        if self.n_outputs is not None and (int(self.n_outputs) != self.n_outputs
                                           or self.n_outputs < 1):
            raise ValueError(f"n_outputs: expected an integer >= 1, got {self.n_outputs!r}")

    def _initialize(self, n_neurons: int, n_outputs: int) -> None:
        self._validate()
        dev = resolve_device(self.device)
        self.W_when_ = torch.zeros(n_outputs, n_neurons, device=dev)
        self.W_what_ = torch.zeros(n_outputs, n_neurons, device=dev)
        self.bias_when_ = torch.zeros(n_outputs, device=dev)
        self.bias_what_ = torch.zeros(n_outputs, device=dev)
        self.mean_ = torch.zeros(n_neurons, device=dev)
        self.scale_ = torch.ones(n_neurons, device=dev)
        self._moments = [0, torch.zeros(n_neurons, dtype=torch.float64, device=dev),
                         torch.zeros(n_neurons, dtype=torch.float64, device=dev)]
        self.n_features_in_ = n_neurons
        self.n_trials_seen_ = 0
        self.n_consolidations_ = 0
        self._buffer: deque = deque(maxlen=int(self.buffer_trials))

    def _update_statistics(self, r: torch.Tensor) -> None:
        """Fold a batch into the running per-neuron mean and sd (all steps seen so far)."""
        if not self.standardize:
            return
        m = self._moments
        r64 = r.double()
        m[0] += r.shape[0] * r.shape[1]
        m[1] += r64.sum(dim=(0, 1))
        m[2] += (r64 * r64).sum(dim=(0, 1))
        mean = m[1] / m[0]
        var = (m[2] / m[0] - mean * mean).clamp_min(0.0)
        self.mean_ = mean.float()
        # a silent cell (sd 0) keeps scale 1: its standardised input is 0, it learns nothing
        self.scale_ = torch.where(var > 1e-12, var.sqrt(), torch.ones_like(var)).float()

    def _inputs(self, r: torch.Tensor) -> torch.Tensor:
        """What the synapses read: the rates, standardised when ``standardize``."""
        if not self.standardize:
            return r
        return (r - self.mean_) / self.scale_

    def _check_fitted_shape(self, r: torch.Tensor) -> None:
        if r.shape[2] != self.n_features_in_:
            raise ValueError(
                f"rates: expected {self.n_features_in_} neurons (as first fitted), got {r.shape[2]}"
            )

    # ------------------------------------------------------------------ learning
    def partial_fit(self, rates, targets, gate=None, onset_ms=None) -> ThreeFactorReadout:
        """Learn "when" online from one batch of trials and store traces for consolidation.

        Parameters
        ----------
        rates : tensor, shape (batch, n_steps, n_neurons)
            Filtered spike trains of the reservoir.
        targets : tensor, shape (batch, n_steps, n_outputs)
            Target bump of the identity that occurred (zeros for the others).
        gate : tensor, shape (batch, n_steps), optional
            Attention gate ``G(t)`` (default 1 everywhere).
        onset_ms : array, shape (batch,), optional
            Stimulus onset (ms; NaN for none): stored traces stop there. Default: the
            whole trial is stored.
        """
        r = _check_rates(rates)
        y = _check_targets(targets, r, self.n_outputs)
        if not hasattr(self, "W_when_"):
            self._initialize(r.shape[2], y.shape[2])
        self._check_fitted_shape(r)
        if y.shape[2] != self.W_when_.shape[0]:
            raise ValueError(
                f"targets: expected {self.W_when_.shape[0]} outputs (as first fitted), "
                f"got {y.shape[2]}"
            )
        B, T, N = r.shape
        dev = self.W_when_.device
        r = r.to(dev, torch.float32)
        y = y.to(dev, torch.float32)
        if gate is None:
            g = torch.ones(B, T, device=dev)
        else:
            g = torch.as_tensor(gate, dtype=torch.float32).to(dev)
            if g.shape != (B, T):
                raise ValueError(f"gate: expected shape ({B}, {T}), got {tuple(g.shape)}")
            if not torch.isfinite(g).all() or (g < 0).any() or (g > 1).any():
                raise ValueError("gate: expected values in [0, 1]")
        occurred = (y.amax(dim=1) > 0).float()  # o_k, (B, K)
        onset = (np.full(B, np.nan) if onset_ms is None
                 else np.asarray(onset_ms, dtype=float).reshape(-1))
        if onset.shape != (B,):
            raise ValueError(f"onset_ms: expected shape ({B},), got {onset.shape}")

        self._update_statistics(r)
        x = self._inputs(r)
        bias_norm = 1.0 if self.standardize else 0.0  # the bias synapse's trace is 1
        decay = math.exp(-self.dt_ms / self.tau_e_ms)
        e = torch.zeros(B, N, device=dev)
        every = max(1, int(round(self.store_every_ms / self.dt_ms)))
        stored = []
        with _few_threads(B * N):
            for t in range(T):
                e = decay * e + (1.0 - decay) * x[:, t]  # exact exponential filter of x * phi'
                s = x[:, t] @ self.W_when_.T + self.bias_when_  # (B, K)
                gm = g[:, t, None] * occurred * (y[:, t] - s)  # G(t) * M_k(t)
                if self.eta > 0:
                    lr = self.eta / B
                    if self.normalize:
                        norm = float((e * e).sum(dim=1).mean()) + bias_norm
                        lr = lr / max(norm, 1e-12)
                    self.W_when_.add_(gm.T @ e, alpha=lr)
                    if self.standardize:
                        self.bias_when_.add_(gm.sum(dim=0), alpha=lr)
                if t % every == 0:
                    stored.append(e)
        E = torch.stack(stored, dim=1)  # (B, S, N)
        ts = np.arange(0, T, every) * self.dt_ms
        pre = ~(ts[None, :] >= onset[:, None] + self.store_margin_ms)  # NaN onset: all
        pre_t = torch.as_tensor(pre, device=dev)
        for b in range(B):
            self._buffer.append((E[b][pre_t[b]].clone(), occurred[b].clone()))
        self.n_trials_seen_ += B
        return self

    def consolidate(self) -> ThreeFactorReadout:
        """Offline consolidation: replay stored traces into the "what" weights.

        ``n_replay`` passes of ``dW_what = kappa_t <(o_k - a_k) e>`` over the buffer of
        the last ``buffer_trials`` trials (see the class docstring). ``W_when_`` is not
        touched, so the timing of the prediction does not change.
        """
        if not hasattr(self, "W_what_") or len(self._buffer) == 0:
            raise ValueError("consolidate: nothing stored yet; call partial_fit first")
        E = torch.cat([e for e, _ in self._buffer])  # (S, N)
        O = torch.cat([o[None].expand(e.shape[0], -1) for e, o in self._buffer])  # (S, K)
        if E.shape[0] == 0:
            return self
        lr = self.kappa / E.shape[0]
        if self.normalize:
            norm = float((E * E).sum(dim=1).mean()) + (1.0 if self.standardize else 0.0)
            lr = lr / max(norm, 1e-12)
        with _few_threads(E.shape[0] * E.shape[1] // 8):  # thin (S x N) @ (N x K) products
            for _ in range(int(self.n_replay)):
                err = O - E @ self.W_what_.T - self.bias_what_
                self.W_what_.add_(err.T @ E, alpha=lr)
                if self.standardize:
                    self.bias_what_.add_(err.sum(dim=0), alpha=lr)
        self.n_consolidations_ += 1
        return self

    # ------------------------------------------------------------------ output
    def predict(self, rates, component: str = "object") -> torch.Tensor:
        """Readout output, shape (batch, n_steps, n_outputs).

        ``component``: "object" (``y = a * s``, the prediction), "when" (``s``) or
        "what" (``a``).
        """
        if not hasattr(self, "W_when_"):
            raise ValueError("predict: the readout is not fitted; call partial_fit first")
        r = _check_rates(rates)
        self._check_fitted_shape(r)
        x = self._inputs(r.to(self.W_when_.device, torch.float32))
        if component == "when":
            return x @ self.W_when_.T + self.bias_when_
        if component == "what":
            return x @ self.W_what_.T + self.bias_what_
        if component == "object":
            return (x @ self.W_what_.T + self.bias_what_) * (x @ self.W_when_.T + self.bias_when_)
        raise ValueError(
            f"component: expected 'object', 'when' or 'what', got {component!r}"
        )


class ForceReadout:
    r"""FORCE readout: recursive least squares on reservoir activity.

    Sussillo & Abbott (2009, Neuron 63:544, eqs. 4-5) and Nicola & Clopath (2017, Nat.
    Commun. 8:2208) for spiking reservoirs. With ``r`` the filtered spike trains and
    ``z = W r`` the output, every ``update_every`` steps (a priori error ``e = z - f``):

    .. math::

        P \leftarrow P - \frac{P r r^T P}{1 + r^T P r}, \qquad
        W \leftarrow W - e\,(P r)^T, \qquad P_0 = I / \alpha.

    ``P`` tracks the inverse of the regularised correlation matrix
    ``(alpha I + sum r r^T)^-1``, so after ``n`` updates ``W`` is exactly the ridge solution
    (penalty ``alpha``) over all samples seen. Its gain shrinks like 1/n: this is why FORCE
    re-adapts slowly after a change point unless ``P`` is reset (`reset_P`). A batch of B
    trials is folded in at once with the Woodbury identity (the same result as B sequential
    updates).

    Parameters
    ----------
    n_outputs : int, optional
        Number of outputs; checked against the targets.
    alpha : float
        Regularisation; ``P0 = I / alpha``.
    update_every : int
        Update every this many time steps (Nicola & Clopath update every 20 steps of 0.04 ms).
    dtype : str
        "float64" (default; P loses symmetry in float32 over long runs) or "float32".
    device : str
        "auto", "cpu" or "cuda".
    verbose : bool or None

    Attributes
    ----------
    W_ : torch.Tensor, shape (n_outputs, n_neurons)
    P_ : torch.Tensor, shape (n_neurons, n_neurons)
    n_updates_ : int
    """

    def __init__(
        self,
        n_outputs: int | None = None,
        alpha: float = 1.0,
        update_every: int = 2,
        dtype: str = "float64",
        device: str = "cpu",
        verbose: bool | None = None,
    ) -> None:
        self.n_outputs = n_outputs
        self.alpha = alpha
        self.update_every = update_every
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    def _initialize(self, n_neurons: int, n_outputs: int) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha: expected a finite number > 0, got {self.alpha!r}")
        if int(self.update_every) != self.update_every or self.update_every < 1:
            raise ValueError(f"update_every: expected an integer >= 1, got {self.update_every!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        if self.n_outputs is not None and n_outputs != self.n_outputs:
            raise ValueError(
                f"targets: the readout has n_outputs={self.n_outputs} units but the targets "
                f"have {n_outputs}"
            )
        self._dt = getattr(torch, self.dtype)
        dev = resolve_device(self.device)
        self.W_ = torch.zeros(n_outputs, n_neurons, dtype=self._dt, device=dev)
        self.n_features_in_ = n_neurons
        self.n_updates_ = 0
        self.reset_P()

    def reset_P(self) -> ForceReadout:
        """Reset ``P`` to ``I / alpha`` (a change point): the learning gain is restored."""
        if not hasattr(self, "W_"):
            raise ValueError("reset_P: the readout is not initialised; call partial_fit first")
        n = self.W_.shape[1]
        self.P_ = torch.eye(n, dtype=self._dt, device=self.W_.device) / self.alpha
        return self

    def _update(self, r: torch.Tensor, f: torch.Tensor) -> None:
        # Block RLS (Woodbury): K = P R^T (I + R P R^T)^-1, P -= K R P, W -= E K^T.
        PR = self.P_ @ r.T  # (N, B)
        S = torch.eye(r.shape[0], dtype=r.dtype, device=r.device) + r @ PR
        if r.shape[0] == 1:
            Kg = PR / S  # the classic rank-one update (S is 1 x 1)
        else:
            Kg = torch.linalg.solve(S, PR.T).T  # (N, B); S is symmetric
        err = r @ self.W_.T - f  # a priori error (B, K)
        self.W_ -= err.T @ Kg.T
        self.P_ -= Kg @ PR.T
        self.P_ = 0.5 * (self.P_ + self.P_.T)  # keep symmetric against round-off
        self.n_updates_ += 1

    def step(self, r, target, update: bool = True) -> torch.Tensor:
        """One time step: output ``z = W r`` (before the update) and, if ``update``, RLS.

        ``r``: (batch, n_neurons) or (n_neurons,); ``target``: (batch, n_outputs) or
        (n_outputs,). Used for closed-loop FORCE, where ``z`` feeds back into the network.
        """
        r = torch.as_tensor(r)
        f = torch.as_tensor(target)
        squeeze = r.ndim == 1
        r2, f2 = r.reshape(-1, r.shape[-1]), f.reshape(-1, f.shape[-1])
        if not hasattr(self, "W_"):
            self._initialize(r2.shape[1], f2.shape[1])
        if r2.shape[1] != self.n_features_in_ or f2.shape != (r2.shape[0], self.W_.shape[0]):
            raise ValueError(
                f"step: expected r (batch, {self.n_features_in_}) and target "
                f"(batch, {self.W_.shape[0]}), got {tuple(r.shape)} and {tuple(f.shape)}"
            )
        r2 = r2.to(self.W_.device, self._dt)
        f2 = f2.to(self.W_.device, self._dt)
        z = r2 @ self.W_.T
        if update:
            self._update(r2, f2)
        return z[0] if squeeze else z

    def partial_fit(self, rates, targets, mask=None) -> ForceReadout:
        """RLS over a batch of trials, every ``update_every`` steps.

        ``rates`` (batch, n_steps, n_neurons); ``targets`` (batch, n_steps, n_outputs);
        ``mask`` (batch, n_steps) bool, optional: steps that are learned from.
        """
        r = _check_rates(rates)
        y = _check_targets(targets, r, self.n_outputs)
        if not hasattr(self, "W_"):
            self._initialize(r.shape[2], y.shape[2])
        if r.shape[2] != self.n_features_in_:
            raise ValueError(
                f"rates: expected {self.n_features_in_} neurons (as first fitted), got {r.shape[2]}"
            )
        if y.shape[2] != self.W_.shape[0]:
            raise ValueError(
                f"targets: expected {self.W_.shape[0]} outputs (as first fitted), got {y.shape[2]}"
            )
        r = r.to(self.W_.device, self._dt)
        y = y.to(self.W_.device, self._dt)
        m = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        if m is not None and m.shape != r.shape[:2]:
            raise ValueError(f"mask: expected shape {tuple(r.shape[:2])}, got {tuple(m.shape)}")
        with _few_threads(self.P_.numel()):
            for t in range(0, r.shape[1], int(self.update_every)):
                rt, yt = r[:, t], y[:, t]
                if m is not None:
                    rt, yt = rt[m[:, t]], yt[m[:, t]]
                    if rt.shape[0] == 0:
                        continue
                self._update(rt, yt)
        return self

    def predict(self, rates) -> torch.Tensor:
        """Output ``z = W r``, shape (batch, n_steps, n_outputs)."""
        if not hasattr(self, "W_"):
            raise ValueError("predict: the readout is not fitted; call partial_fit first")
        r = _check_rates(rates)
        if r.shape[2] != self.n_features_in_:
            raise ValueError(
                f"rates: expected {self.n_features_in_} neurons (as first fitted), got {r.shape[2]}"
            )
        return (r.to(self.W_.device, self._dt) @ self.W_.T).float()
