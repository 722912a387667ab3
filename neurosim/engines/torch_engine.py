"""Torch engine: batched Izhikevich networks on CPU or CUDA.

Design (the known means of fast SNN simulation in PyTorch, REFERENCES Part A 4.3):

- trials run along a leading batch dimension (own noise, shared weights), so one kernel
  launch serves every trial;
- the neuron update is a handful of in-place tensor operations on the whole population
  (optionally fused by ``torch.compile``), with no Python work per neuron;
- propagation is event-driven: only the rows of the weight matrix of the few cells that
  fired are gathered (``index_select``) and scattered into the synaptic current
  (``index_add_``); sparse weights are held as fixed-width padded rows ("ELL" format) so that
  a 100k-neuron reservoir with 100 synapses per cell costs 80 MB;
- spikes are recorded as (step, trial, neuron) indices, never as a dense raster.

The update order is the one documented in :mod:`neurosim.network` and matches the Brian2
engine step for step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse
import torch

from neurosim.engines import V_DIVERGED_MV, divergence_error, prepare_run, project_inputs
from neurosim.network import NetworkModel, SpikeRecord

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch sees no CUDA device")
    return dev


def _ell(weights: Any, dtype: torch.dtype, device: torch.device
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse (pre, post) weights as padded rows: targets (n, K) int64, values (n, K)."""
    csr = scipy.sparse.csr_matrix(weights, copy=True)
    csr.sum_duplicates()
    n = csr.shape[0]
    deg = np.diff(csr.indptr)
    k = max(int(deg.max()) if n else 0, 1)
    rows = np.repeat(np.arange(n), deg)
    pos = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], deg)
    cols = np.zeros((n, k), dtype=np.int64)
    vals = np.zeros((n, k), dtype=np.float64)
    cols[rows, pos] = csr.indices
    vals[rows, pos] = csr.data  # padding: weight 0 onto neuron 0, which adds exactly 0.0
    return (torch.from_numpy(cols).to(device),
            torch.from_numpy(vals).to(device=device, dtype=dtype))


def _neuron_step(v: torch.Tensor, u: torch.Tensor, i_tot: torch.Tensor, a: torch.Tensor,
                 b: torch.Tensor, dt: float, n_sub: int) -> None:
    """In place: ``n_sub`` Euler steps of v, then one step of u with the NEW v.

    Izhikevich (2003), Eq. 1-2, in the ordering of his published code (two 0.5 ms
    half-steps of v in net.m). The operations are those, in the same order, of the code
    Brian2 generates for the same equations (no fused multiply-adds), so that in float64
    both engines round identically.
    """
    h = dt / n_sub
    for _ in range(n_sub):
        dv = torch.mul(v, v).mul_(0.04).add_(i_tot).add_(torch.mul(v, 5.0))
        dv.add_(140.0).sub_(u).mul_(h)
        v.add_(dv)
    du = torch.mul(b, v).sub_(u).mul_(a).mul_(dt)
    u.add_(du)


def simulate_torch(
    model: NetworkModel,
    duration_ms: float,
    dt_ms: float | None = None,
    inputs: Any = None,
    batch: int = 1,
    device: str = "auto",
    record: tuple[str, ...] = ("spikes",),
    seed: int = 0,
    noise: bool = True,
    dtype: str = "float32",
    verbose: bool | None = None,
    check_every: int = 100,
    num_threads: int | None = None,
) -> SpikeRecord:
    """Run ``model`` with the torch engine; see :meth:`NetworkModel.run` for the arguments.

    ``check_every`` sets how often (in steps) the state is checked for a diverging membrane
    potential (one device synchronisation per check). ``num_threads`` sets torch's CPU
    threads for the run (restored afterwards); by default 1 thread when
    ``batch * n_neurons <= 100_000``: per-step tensors that small are slower when split
    across threads (measured 10x slower with 2 threads on a busy 2-core machine).
    """
    spec = prepare_run(model, duration_ms, dt_ms, inputs, batch, record)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    dev = resolve_device(device)
    if num_threads is None and dev.type == "cpu" and spec.batch * model.n_neurons <= 100_000:
        num_threads = 1
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads: expected an integer >= 1, got {num_threads!r}")
        torch.set_num_threads(int(num_threads))
    t0 = time.perf_counter()
    try:
        rec = _simulate(model, spec, dev, _DTYPES[dtype], seed, noise, verbose, check_every)
    finally:
        torch.set_num_threads(old_threads)
    rec.info = {"engine": "torch", "device": str(dev), "dtype": dtype,
                "threads": num_threads or old_threads, "wall_s": time.perf_counter() - t0}
    return rec


def _simulate(model: NetworkModel, spec: Any, dev: torch.device, fdt: torch.dtype, seed: int,
              noise: bool, verbose: bool | None, check_every: int) -> SpikeRecord:
    n, bsz, dt = model.n_neurons, spec.batch, spec.dt_ms

    def tens(x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=fdt, device=dev)

    a, b, c, d = (tens(x) for x in (model.a, model.b, model.c, model.d))
    sparse = scipy.sparse.issparse(model.weights)
    if sparse:
        ell_cols, ell_vals = _ell(model.weights, fdt, dev)
    else:
        w_dense = torch.as_tensor(np.asarray(model.weights), device=dev).to(fdt)
    sigma = tens(model.noise_std) if noise and np.any(model.noise_std > 0) else None
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    if spec.inputs is not None:
        inp = torch.as_tensor(spec.inputs, dtype=fdt, device=dev).expand(bsz, -1, -1)
        w_in = tens(model.input_weights)
    decay = model.syn_decay(dt)

    v = torch.full((bsz, n), float(model.v0), dtype=fdt, device=dev)
    u = b * v
    i_syn = torch.zeros_like(v)
    i_noise = torch.zeros_like(v)
    vmin = v.clone()
    v_rec = (torch.empty((bsz, spec.n_steps, n), dtype=fdt, device=dev)
             if spec.record_v else None)
    steps: list[int] = []
    fired_idx: list[torch.Tensor] = []
    flat_syn = i_syn.view(-1)

    iterator = range(spec.n_steps)
    if verbose:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"{model.name} (torch, batch {bsz})")
    with torch.no_grad():
        for k in iterator:
            if sigma is not None and k % spec.noise_every == 0:
                torch.randn((bsz, n), generator=gen, dtype=fdt, device=dev, out=i_noise)
                i_noise.mul_(sigma)
            # (I_in + I_noise) + I_syn, in Brian2's order
            if spec.inputs is not None:
                i_tot = project_inputs(inp[:, k], w_in).add_(i_noise).add_(i_syn)
            else:
                i_tot = torch.add(i_noise, i_syn)
            if v_rec is not None:
                v_rec[:, k] = v
            _neuron_step(v, u, i_tot, a, b, dt, model.v_substeps)
            fired = v >= model.v_peak
            idx = fired.nonzero()
            if decay == 0.0:
                i_syn.zero_()
            else:
                i_syn.mul_(decay)
            if idx.shape[0]:
                steps.append(k)
                fired_idx.append(idx)
                trial, pre = idx[:, 0], idx[:, 1]
                if sparse:
                    tgt = (trial * n).unsqueeze(1) + ell_cols.index_select(0, pre)
                    flat_syn.index_add_(0, tgt.view(-1), ell_vals.index_select(0, pre).view(-1))
                else:
                    i_syn.index_add_(0, trial, w_dense.index_select(0, pre))
                torch.where(fired, c, v, out=v)
                u.add_(torch.where(fired, d, 0.0))
            torch.minimum(vmin, v, out=vmin)
            if (k + 1) % check_every == 0 or k == spec.n_steps - 1:
                _check(vmin, dt, k, model.v_peak)

    counts = [int(x.shape[0]) for x in fired_idx]
    if fired_idx:
        all_idx = torch.cat(fired_idx).cpu().numpy()
        step_arr = np.repeat(np.asarray(steps, dtype=np.int64), counts)
    else:
        all_idx = np.zeros((0, 2), dtype=np.int64)
        step_arr = np.zeros(0, dtype=np.int64)
    order = np.lexsort((all_idx[:, 1], all_idx[:, 0], step_arr))  # by time, trial, neuron
    return SpikeRecord(
        times_ms=step_arr[order] * dt, neuron=all_idx[order, 1], trial=all_idx[order, 0],
        n_neurons=n, duration_ms=spec.duration_ms, batch=bsz, dt_ms=dt,
        v=None if v_rec is None else v_rec.cpu().numpy(),
    )


def _check(vmin: torch.Tensor, dt: float, k: int, v_peak: float) -> None:
    ok = vmin > -V_DIVERGED_MV  # False for NaN too
    if bool(ok.all()):
        return
    bad = (~ok).nonzero()[0]
    trial, neuron = int(bad[0]), int(bad[1])
    raise divergence_error(dt, neuron, trial, (k + 1) * dt, float(vmin[trial, neuron]))
