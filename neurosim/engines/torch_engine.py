"""Torch engine: batched Izhikevich networks on CPU or CUDA.

Design (the known means of fast SNN simulation in PyTorch, REFERENCES Part A 4.3):

- trials run along a leading batch dimension (own noise, shared weights), so one kernel
  launch serves every trial;
- the neuron update is a handful of in-place tensor operations on the whole population,
  with no Python work per neuron (fused into one loop by the C++ kernel, below);
- propagation is event-driven: only the rows of the weight matrix of the few cells that
  fired are gathered (``index_select``) and scattered into the synaptic current
  (``index_add_``); sparse weights are held as fixed-width padded rows ("ELL" format) so that
  a 100k-neuron reservoir with 100 synapses per cell costs 80 MB;
- spikes are recorded as (step, trial, neuron) indices, never as a dense raster;
- ``kernel="cpp"`` (CPU) runs whole chunks of steps in a small C++ kernel compiled on first
  use with ``torch.utils.cpp_extension`` (the per-step Python and dispatch overhead of ~25
  tensor operations dominates at 1k neurons); it performs the same floating-point
  operations in the same order, so its spikes are bit-identical to the eager path's.

The noise and the input current of a chunk of steps are drawn / projected at once, so both
paths see the same numbers; a run is reproducible from ``seed``.

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
    kernel: str = "eager",
) -> SpikeRecord:
    """Run ``model`` with the torch engine; see :meth:`NetworkModel.run` for the arguments.

    ``check_every`` sets how often (in steps) the state is checked for a diverging membrane
    potential (one device synchronisation per check). ``num_threads`` sets torch's CPU
    threads for the run (restored afterwards); by default 1 thread when
    ``batch * n_neurons <= 100_000``: per-step tensors that small are slower when split
    across threads (measured 10x slower with 2 threads on a busy 2-core machine).
    ``kernel="cpp"`` (CPU only) runs the steps in a C++ kernel compiled on first use
    (about a minute, then cached by torch), several times faster at small sizes; it computes
    exactly what the default ``"eager"`` path computes.
    """
    spec = prepare_run(model, duration_ms, dt_ms, inputs, batch, record)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    dev = resolve_device(device)
    if kernel not in ("eager", "cpp"):
        raise ValueError(f"kernel: expected 'eager' or 'cpp', got {kernel!r}")
    if kernel == "cpp" and dev.type != "cpu":
        raise ValueError(f"kernel: 'cpp' runs on the CPU only, got device {str(dev)!r}")
    if num_threads is None and dev.type == "cpu" and spec.batch * model.n_neurons <= 100_000:
        num_threads = 1
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads: expected an integer >= 1, got {num_threads!r}")
        torch.set_num_threads(int(num_threads))
    t0 = time.perf_counter()
    try:
        rec = _simulate(model, spec, dev, _DTYPES[dtype], seed, noise, verbose, check_every,
                        kernel)
    finally:
        torch.set_num_threads(old_threads)
    rec.info = {"engine": "torch", "device": str(dev), "dtype": dtype,
                "threads": num_threads or old_threads, "kernel": kernel,
                "wall_s": time.perf_counter() - t0}
    return rec


_KERNEL_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>
#include <cmath>

// One chunk of steps of a batch of Izhikevich networks, the same arithmetic in the same order
// as the eager path (compiled with -ffp-contract=off: no fused multiply-adds).
// Pass A over the neurons of one trial, branch-free so that the compiler vectorises it:
// input current (I_in + I_noise) + I_syn, NSUB Euler steps of v, u from the new v, decay of
// I_syn, running minimum of v (divergence check).
template <typename T, int NSUB, bool NOISE, bool DRIVE>
inline void izh_pass(T* __restrict__ vv, T* __restrict__ uu, T* __restrict__ is,
                     T* __restrict__ vm, const T* __restrict__ nz, const T* __restrict__ dr,
                     const T* __restrict__ a, const T* __restrict__ b, T h, T dt, T decay,
                     int64_t N, int64_t nsub) {
  for (int64_t j = 0; j < N; ++j) {
    T in = NOISE ? nz[j] : (T)0;
    if (DRIVE) in = dr[j] + in;
    in = in + is[j];
    T x = vv[j], y = uu[j];
    const int64_t ns = NSUB > 0 ? NSUB : nsub;
    for (int64_t q = 0; q < ns; ++q) {
      T dv = x * x; dv = dv * (T)0.04; dv = dv + in; dv = dv + x * (T)5.0;
      dv = dv + (T)140.0; dv = dv - y; dv = dv * h; x = x + dv;
    }
    T du = b[j] * x; du = du - y; du = du * a[j]; du = du * dt; y = y + du;
    vv[j] = x; uu[j] = y;
    is[j] = decay == (T)0 ? (T)0 : is[j] * decay;
    vm[j] = (x < vm[j] || x != x) ? x : vm[j];
  }
}

template <typename T, int NSUB>
inline void izh_dispatch(T* vv, T* uu, T* is, T* vm, const T* nz, const T* dr, const T* a,
                         const T* b, T h, T dt, T decay, int64_t N, int64_t nsub) {
  if (nz && dr) izh_pass<T, NSUB, true, true>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else if (nz) izh_pass<T, NSUB, true, false>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else if (dr) izh_pass<T, NSUB, false, true>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else izh_pass<T, NSUB, false, false>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
}

template <typename T>
void chunk_impl(T* __restrict__ v, T* __restrict__ u, T* __restrict__ isyn,
                const T* __restrict__ a, const T* __restrict__ b, const T* c, const T* d,
                const T* __restrict__ noise, int64_t noise_every, const T* drive, const T* wd,
                const int64_t* ecol, const T* evals, int64_t K, T* vrec, int64_t rec_steps,
                int64_t rec_k0, T* vmin, int64_t B, int64_t N, int64_t S, int64_t k0, T dt,
                int64_t nsub, T vpeak, T decay, std::vector<std::vector<int64_t>>& out) {
  const T h = dt / (T)nsub;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int64_t> fired;
    fired.reserve(N);
    for (int64_t tr = b0; tr < b1; ++tr) {
      T* __restrict__ vv = v + tr * N;
      T* __restrict__ uu = u + tr * N;
      T* __restrict__ is = isyn + tr * N;
      T* vm = vmin + tr * N;
      auto& rec = out[tr];
      for (int64_t s = 0; s < S; ++s) {
        const T* nz = noise ? noise + ((s / noise_every) * B + tr) * N : nullptr;
        const T* dr = drive ? drive + (tr * S + s) * N : nullptr;
        if (vrec) {
          T* dst = vrec + (tr * rec_steps + rec_k0 + s) * N;
          for (int64_t j = 0; j < N; ++j) dst[j] = vv[j];
        }
        if (nsub == 1) izh_dispatch<T, 1>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
        else if (nsub == 2) izh_dispatch<T, 2>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
        else izh_dispatch<T, 0>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
        // pass B: threshold (few cells fire), propagation of their rows, reset
        fired.clear();
        for (int64_t j = 0; j < N; ++j) if (vv[j] >= vpeak) fired.push_back(j);
        for (int64_t p : fired) {
          rec.push_back(k0 + s); rec.push_back(p);
          if (wd) {
            const T* row = wd + p * N;
            for (int64_t j = 0; j < N; ++j) is[j] = is[j] + row[j];
          } else {
            const int64_t* cols = ecol + p * K; const T* vals = evals + p * K;
            for (int64_t q = 0; q < K; ++q) is[cols[q]] = is[cols[q]] + vals[q];
          }
          vv[p] = c[p]; uu[p] = uu[p] + d[p];
        }
      }
    }
  });
}

template <typename T> const T* ptr_or_null(const torch::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

std::vector<torch::Tensor> run_chunk(torch::Tensor v, torch::Tensor u, torch::Tensor isyn,
    torch::Tensor a, torch::Tensor b, torch::Tensor c, torch::Tensor d, torch::Tensor noise,
    int64_t noise_every, torch::Tensor drive, torch::Tensor wd, torch::Tensor ecol,
    torch::Tensor evals, torch::Tensor vrec, int64_t rec_k0, torch::Tensor vmin, int64_t S,
    int64_t k0, double dt, int64_t nsub, double vpeak, double decay) {
  const int64_t B = v.size(0), N = v.size(1);
  const int64_t K = ecol.numel() ? ecol.size(1) : 0;
  const int64_t rec_steps = vrec.numel() ? vrec.size(1) : 0;
  std::vector<std::vector<int64_t>> out(B);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "run_chunk", [&] {
    chunk_impl<scalar_t>(v.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
        isyn.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
        c.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(noise),
        noise_every, ptr_or_null<scalar_t>(drive), ptr_or_null<scalar_t>(wd),
        ecol.numel() ? ecol.data_ptr<int64_t>() : nullptr, ptr_or_null<scalar_t>(evals), K,
        vrec.numel() ? vrec.data_ptr<scalar_t>() : nullptr, rec_steps, rec_k0,
        vmin.data_ptr<scalar_t>(), B, N, S, k0, (scalar_t)dt, nsub, (scalar_t)vpeak,
        (scalar_t)decay, out);
  });
  std::vector<torch::Tensor> res;
  for (int64_t tr = 0; tr < B; ++tr) {
    auto t = torch::empty({(int64_t)out[tr].size() / 2, 2}, torch::kInt64);
    std::copy(out[tr].begin(), out[tr].end(), t.data_ptr<int64_t>());
    res.push_back(t);
  }
  return res;
}
"""

_KERNEL = None
# steps per chunk: the noise of a chunk has about this many elements
_CHUNK_ELEMENTS = 1 << 22


def load_kernel(verbose: bool = False) -> Any:
    """Compile (first call; cached on disk by torch) and return the C++ CPU kernel module.

    The kernel runs chunks of steps of the whole batch in C++ (one Python call per chunk
    instead of ~25 tensor operations per step), with the arithmetic of the eager path.
    """
    global _KERNEL
    if _KERNEL is None:
        from torch.utils.cpp_extension import load_inline

        _KERNEL = load_inline(
            name="neurosim_izhikevich_kernel", cpp_sources=_KERNEL_SOURCE,
            functions=["run_chunk"], verbose=bool(verbose),
            extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math"],
        )
    return _KERNEL


def _simulate(model: NetworkModel, spec: Any, dev: torch.device, fdt: torch.dtype, seed: int,
              noise: bool, verbose: bool | None, check_every: int, kernel: str
              ) -> SpikeRecord:
    n, bsz, dt = model.n_neurons, spec.batch, spec.dt_ms

    def tens(x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=fdt, device=dev)

    a, b, c, d = (tens(x) for x in (model.a, model.b, model.c, model.d))
    sparse = scipy.sparse.issparse(model.weights)
    empty = torch.empty(0, dtype=fdt, device=dev)
    ell_cols, ell_vals, w_dense = torch.empty(0, dtype=torch.int64), empty, empty
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
    ne = spec.noise_every
    # chunks of whole noise intervals; the noise and input of a chunk are drawn / projected
    # at once (the same numbers whichever path runs the chunk)
    chunk = ne * max(1, min(256, _CHUNK_ELEMENTS // (bsz * n)) // ne)

    v = torch.full((bsz, n), float(model.v0), dtype=fdt, device=dev)
    u = b * v
    i_syn = torch.zeros_like(v)
    vmin = v.clone()
    v_rec = (torch.empty((bsz, spec.n_steps, n), dtype=fdt, device=dev)
             if spec.record_v else None)
    spikes: list[torch.Tensor] = []  # (n, 3): step, trial, neuron
    kern = load_kernel(bool(verbose)) if kernel == "cpp" else None

    starts = range(0, spec.n_steps, chunk)
    if verbose:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"{model.name} (torch {kernel}, batch {bsz})")
    with torch.no_grad():
        for k0 in starts:
            n_chunk = min(chunk, spec.n_steps - k0)
            noise_c = drive_c = None
            if sigma is not None:
                noise_c = torch.randn(((n_chunk + ne - 1) // ne, bsz, n), generator=gen,
                                      dtype=fdt, device=dev).mul_(sigma)
            if spec.inputs is not None:
                drive_c = project_inputs(inp[:, k0:k0 + n_chunk], w_in).contiguous()
            if kern is not None:
                out = kern.run_chunk(
                    v, u, i_syn, a, b, c, d, empty if noise_c is None else noise_c, ne,
                    empty if drive_c is None else drive_c, w_dense, ell_cols, ell_vals,
                    empty if v_rec is None else v_rec, k0, vmin, n_chunk, k0, dt,
                    model.v_substeps, model.v_peak, decay)
                for trial, st_nr in enumerate(out):
                    if st_nr.shape[0]:
                        spikes.append(torch.cat([st_nr[:, :1], torch.full_like(st_nr[:, :1],
                                                 trial), st_nr[:, 1:]], dim=1))
            else:
                _eager_chunk(v, u, i_syn, a, b, c, d, noise_c, ne, drive_c, w_dense, ell_cols,
                             ell_vals, sparse, v_rec, vmin, k0, n_chunk, dt, model.v_substeps,
                             model.v_peak, decay, spikes, check_every)
            _check(vmin, dt, k0 + n_chunk - 1, model.v_peak)

    if spikes:
        arr = torch.cat([x.cpu() for x in spikes]).numpy()
    else:
        arr = np.zeros((0, 3), dtype=np.int64)
    order = np.lexsort((arr[:, 2], arr[:, 1], arr[:, 0]))  # by time, trial, neuron
    arr = arr[order]
    return SpikeRecord(
        times_ms=arr[:, 0] * dt, neuron=arr[:, 2], trial=arr[:, 1],
        n_neurons=n, duration_ms=spec.duration_ms, batch=bsz, dt_ms=dt,
        v=None if v_rec is None else v_rec.cpu().numpy(),
    )


def _eager_chunk(v, u, i_syn, a, b, c, d, noise_c, ne, drive_c, w_dense, ell_cols, ell_vals,
                 sparse, v_rec, vmin, k0, n_chunk, dt, n_sub, v_peak, decay, spikes,
                 check_every) -> None:
    """``n_chunk`` steps with whole-population tensor operations (CPU or CUDA)."""
    n = v.shape[1]
    flat_syn = i_syn.view(-1)
    for s in range(n_chunk):
        k = k0 + s
        # (I_in + I_noise) + I_syn, in Brian2's order
        i_tot = torch.zeros_like(v) if noise_c is None else noise_c[s // ne].clone()
        if drive_c is not None:
            i_tot = torch.add(drive_c[:, s], i_tot)
        i_tot.add_(i_syn)
        if v_rec is not None:
            v_rec[:, k] = v
        _neuron_step(v, u, i_tot, a, b, dt, n_sub)
        fired = v >= v_peak
        idx = fired.nonzero()
        if decay == 0.0:
            i_syn.zero_()
        else:
            i_syn.mul_(decay)
        if idx.shape[0]:
            spikes.append(torch.cat([torch.full_like(idx[:, :1], k), idx], dim=1))
            trial, pre = idx[:, 0], idx[:, 1]
            if sparse:
                tgt = (trial * n).unsqueeze(1) + ell_cols.index_select(0, pre)
                flat_syn.index_add_(0, tgt.view(-1), ell_vals.index_select(0, pre).view(-1))
            else:
                i_syn.index_add_(0, trial, w_dense.index_select(0, pre))
            torch.where(fired, c, v, out=v)
            u.add_(torch.where(fired, d, 0.0))
        torch.minimum(vmin, v, out=vmin)
        if (s + 1) % check_every == 0:
            _check(vmin, dt, k, v_peak)


def _check(vmin: torch.Tensor, dt: float, k: int, v_peak: float) -> None:
    ok = vmin > -V_DIVERGED_MV  # False for NaN too
    if bool(ok.all()):
        return
    bad = (~ok).nonzero()[0]
    trial, neuron = int(bad[0]), int(bad[1])
    raise divergence_error(dt, neuron, trial, (k + 1) * dt, float(vmin[trial, neuron]))
