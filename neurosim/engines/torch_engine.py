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
- ``kernel="cpp"`` (CPU) runs whole chunks of steps in a small C++ kernel (plain C++, no
  torch headers: compiled in seconds on first use, cached on disk, called through ctypes;
  the per-step Python and dispatch overhead of ~25 tensor operations dominates at 1k
  neurons). It performs the same floating-point operations in the same order, so its
  spikes are bit-identical to the eager path's; trials run in parallel threads when torch
  has more than one; its spikes come out already sorted (no final sort).
- ``noise_rng="xoshiro"`` (with ``kernel="cpp"``) draws the thalamic noise inside the kernel
  instead of with ``torch.randn``, which was most of the kernel's run time: xoshiro128+
  (Blackman & Vigna 2018) in 64 SIMD lanes per trial, seeded by splitmix64 of
  ``(seed, trial)`` (so a trial's stream does not depend on the batch size or the thread
  count), and the Box-Muller transform of its top 24 / 25 bits with float32 polynomial
  log / sin / cos (Cephes), vectorised (~1 ns per normal against ~10 ns for torch.randn).
  The streams differ from ``torch.randn``'s, the distribution does not (standard normal
  to float32 accuracy, tails cut at 5.6 sigma, P = 2e-8): only statistics can then be
  compared with the eager path (tests/neurosim/test_torch_kernel.py). Noise-free runs are
  unaffected (bit-identical to eager and Brian2).

With ``noise_rng="torch"`` the noise and the input current of a chunk of steps are drawn /
projected at once, so both paths see the same numbers; a run is reproducible from ``seed``
with either generator.

Defaults: fast, and what each choice guarantees
-----------------------------------------------
``kernel="auto"`` (default) runs the C++ kernel on the CPU whenever it compiles (one log
line says which path runs, once per process) and the eager path otherwise (CUDA, or no C++
compiler). ``noise_rng="auto"`` (default) is ``"xoshiro"`` with the C++ kernel and
``"torch"`` with the eager path. The guarantees:

==================================  =========================================================
``kernel``, ``noise_rng``           guarantee
==================================  =========================================================
``"eager"``, ``"torch"``            bitwise equal to Brian2 in float64 without noise, and to
                                    itself on CPU for a seed (the reference path)
``"cpp"``, ``"torch"``              bitwise equal to ``"eager", "torch"`` (with or without
                                    noise, float32 and float64): the bitwise path at C++ speed
``"cpp"``, ``"xoshiro"`` (default   noise-free runs bitwise equal to the two above (and to
on CPU)                             Brian2); with noise, the same statistics (standard normal
                                    noise, same rates and spectra) but other numbers; bitwise
                                    reproducible from ``seed`` on a machine, and a trial's
                                    stream independent of batch size and threads
==================================  =========================================================

So the default is reproducible (same seed, same spikes) on a given machine, but a machine
without a compiler falls back to the eager path and draws other noise numbers. For runs that
must match the eager path or ``torch.randn`` noise bit for bit, pass ``noise_rng="torch"``
(keeps the C++ speed of the neuron loop) or ``kernel="eager"``.

The update order is the one documented in :mod:`neurosim.network` and matches the Brian2
engine step for step.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch

from neurosim._device import resolve_device
from neurosim.engines import V_DIVERGED_MV, divergence_error, prepare_run, project_inputs
from neurosim.network import NetworkModel, SpikeRecord

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    kernel: str = "auto",
    noise_rng: str = "auto",
) -> SpikeRecord:
    """Run ``model`` with the torch engine; see :meth:`NetworkModel.run` for the arguments.

    ``check_every`` sets how often (in steps) the state is checked for a diverging membrane
    potential (one device synchronisation per check). ``num_threads`` sets torch's CPU
    threads for the run (restored afterwards); by default 1 thread when
    ``batch * n_neurons <= 100_000``: per-step tensors that small are slower when split
    across threads (measured 10x slower with 2 threads on a busy 2-core machine).
    ``kernel="cpp"`` (CPU only) runs the steps in a C++ kernel compiled on first use
    (seconds, then cached; see :func:`load_kernel`), ~20x faster at 1000 neurons; it
    computes exactly what the ``"eager"`` path computes, its trials in parallel when
    ``num_threads > 1``. ``kernel="auto"`` (default) is ``"cpp"`` on the CPU when the kernel
    compiles and ``"eager"`` otherwise (see :func:`resolve_kernel`).
    ``noise_rng`` chooses the generator of the thalamic noise: ``"torch"`` (``torch.randn``
    with a ``torch.Generator`` seeded by ``seed``, the same numbers for both kernels),
    ``"xoshiro"`` (``kernel="cpp"`` only: drawn inside the kernel, see :func:`load_kernel`;
    several times faster, same statistics, different numbers) or ``"auto"`` (default: the
    fastest for the kernel that runs, ``"xoshiro"`` with ``"cpp"``, ``"torch"`` with
    ``"eager"``). The module docstring lists what each combination guarantees; the bitwise
    path (Brian2 and eager to the last bit) is ``noise_rng="torch"`` or ``kernel="eager"``.
    ``rec.info`` records the kernel and generator that ran.
    """
    spec = prepare_run(model, duration_ms, dt_ms, inputs, batch, record)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    dev = resolve_device(device)
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}")
    if kernel == "cpp" and dev.type != "cpu":
        raise ValueError(f"kernel: 'cpp' runs on the CPU only, got device {str(dev)!r}")
    if noise_rng not in NOISE_RNGS:
        raise ValueError(f"noise_rng: expected one of {NOISE_RNGS}, got {noise_rng!r}")
    if noise_rng == "xoshiro" and kernel == "eager":
        raise ValueError(f"noise_rng: 'xoshiro' needs kernel='cpp', got kernel={kernel!r}")
    kernel = resolve_kernel(kernel, dev)
    if noise_rng == "auto":
        noise_rng = "xoshiro" if kernel == "cpp" else "torch"
    if noise_rng == "xoshiro" and kernel != "cpp":
        raise ValueError(f"noise_rng: 'xoshiro' needs kernel='cpp', got kernel={kernel!r}")
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
                        kernel, noise_rng)
    finally:
        torch.set_num_threads(old_threads)
    rec.info = {"engine": "torch", "device": str(dev), "dtype": dtype,
                "threads": num_threads or old_threads, "kernel": kernel,
                "noise_rng": noise_rng,
                "wall_s": time.perf_counter() - t0}
    return rec


_KERNEL_SOURCE = r"""
// neurosim: C++ CPU kernel of the torch engine (plain C ABI, loaded with ctypes).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

// ---- thalamic noise: xoshiro128+ in L independent lanes, Box-Muller ------------------------
constexpr int L = 64;
struct Lanes { uint32_t s0[L], s1[L], s2[L], s3[L]; };  // one per trial

inline void next_u32(Lanes& st, uint32_t* __restrict__ out) {
  for (int l = 0; l < L; ++l) {  // xoshiro128+ (Blackman & Vigna 2018), one step per lane
    const uint32_t r = st.s0[l] + st.s3[l];
    const uint32_t t = st.s1[l] << 9;
    st.s2[l] ^= st.s0[l]; st.s3[l] ^= st.s1[l]; st.s1[l] ^= st.s2[l]; st.s0[l] ^= st.s3[l];
    st.s2[l] ^= t;
    st.s3[l] = (st.s3[l] << 11) | (st.s3[l] >> 21);
    out[l] = r;
  }
}

// 2L standard normals: Box-Muller on the top bits (xoshiro128+'s low bits are weak), with
// branch-free Cephes polynomials for log, sin and cos (float32-accurate) so that it vectorises.
inline void normals(Lanes& st, float* __restrict__ z) {
  uint32_t r1[L], r2[L];
  next_u32(st, r1);
  next_u32(st, r2);
  for (int l = 0; l < L; ++l) {
    const float u1 = (float)(int32_t)((r1[l] >> 8) + 1u) * 5.9604644775390625e-8f;  // (0, 1]
    int32_t bits = __builtin_bit_cast(int32_t, u1);
    const int32_t e0 = ((bits >> 23) & 0xff) - 126;  // u1 = m 2^e, m in [0.5, 1)
    const float m = __builtin_bit_cast(float, (bits & 0x807fffff) | 0x3f000000);
    const int32_t lo = m < 0.70710678118654752f;  // then use 2m in [1, sqrt 2) and e - 1
    const float x = (m + m * (float)lo) - 1.0f;
    const float fe = (float)(e0 - lo);
    const float zz = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f; y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f; y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f; y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f; y = y * x + 3.3333331174e-1f;
    y = y * x * zz;
    y += -2.12194440e-4f * fe;
    y += -0.5f * zz;
    const float ln = x + y + 0.693359375f * fe;  // ln(u1) <= 0 (Cephes logf)
    const float rad = std::sqrt(2.0f * std::fabs(ln));
    // angle = q pi/2 + w, q uniform in {0..3}, w uniform in [-pi/4, pi/4): uniform on the circle
    const int32_t q = (int32_t)(r2[l] >> 30);
    const float w = ((float)(int32_t)((r2[l] >> 7) & 0x7fffffu) * 1.1920928955078125e-7f - 0.5f)
                    * 1.57079632679489662f;
    const float w2 = w * w;
    const float s = ((-1.9515295891e-4f * w2 + 8.3321608736e-3f) * w2 - 1.6666654611e-1f) * w2 * w
                    + w;
    const float c = ((2.443315711809948e-5f * w2 - 1.388731625493765e-3f) * w2
                     + 4.166664568298827e-2f) * w2 * w2 - 0.5f * w2 + 1.0f;
    // rotation by q quarter turns: (c, s), (-s, c), (-c, -s), (s, -c), with bit operations
    const int32_t swap = -(q & 1);
    const int32_t cb = __builtin_bit_cast(int32_t, c), sb = __builtin_bit_cast(int32_t, s);
    const int32_t c1 = ((cb & ~swap) | (sb & swap)) ^ ((((q + 1) >> 1) & 1) << 31);
    const int32_t s1 = ((sb & ~swap) | (cb & swap)) ^ ((q >> 1) << 31);
    z[l] = rad * __builtin_bit_cast(float, c1);
    z[L + l] = rad * __builtin_bit_cast(float, s1);
  }
}

inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---- neuron update ------------------------------------------------------------------------
// The same arithmetic in the same order as the eager path (compiled with -ffp-contract=off:
// no fused multiply-adds), branch-free so that it vectorises: input current
// (I_in + I_noise) + I_syn, NSUB Euler steps of v, u from the new v, decay of I_syn, running
// minimum of v (divergence check).
template <typename T, int NSUB, bool NOISE, bool DRIVE>
void izh_pass(T* __restrict__ vv, T* __restrict__ uu, T* __restrict__ is, T* __restrict__ vm,
              const T* __restrict__ nz, const T* __restrict__ dr, const T* __restrict__ a,
              const T* __restrict__ b, T h, T dt, T decay, int64_t N, int64_t nsub) {
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
void izh_dispatch(T* vv, T* uu, T* is, T* vm, const T* nz, const T* dr, const T* a, const T* b,
                  T h, T dt, T decay, int64_t N, int64_t nsub) {
  if (nz && dr) izh_pass<T, NSUB, true, true>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else if (nz) izh_pass<T, NSUB, true, false>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else if (dr) izh_pass<T, NSUB, false, true>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
  else izh_pass<T, NSUB, false, false>(vv, uu, is, vm, nz, dr, a, b, h, dt, decay, N, nsub);
}

template <typename T>
struct Args {
  T *v, *u, *isyn;
  const T *a, *b, *c, *d;
  const T* noise; int64_t noise_every;  // pre-drawn noise (n_draws, B, N) or null
  const T* sigma; uint32_t* rng;        // in-kernel noise: std (N,), lane states (B, 4L)
  const T* drive;                       // (B, S, N) or null
  const T* wd;                          // dense weights (N, N) or null
  const int64_t* ecol; const T* evals; int64_t K;  // padded sparse rows (N, K)
  T* vrec; int64_t rec_steps, rec_k0;
  T* vmin;
  int64_t B, N, S, k0;
  T dt; int64_t nsub; T vpeak, decay;
};

template <typename T>
void run_trial(const Args<T>& A, int64_t tr, std::vector<int64_t>& rec) {
  const int64_t N = A.N, S = A.S;
  const T h = A.dt / (T)A.nsub;
  T* __restrict__ vv = A.v + tr * N;
  T* __restrict__ uu = A.u + tr * N;
  T* __restrict__ is = A.isyn + tr * N;
  T* vm = A.vmin + tr * N;
  std::vector<int64_t> fired;
  fired.reserve(256);
  std::vector<float> zf;
  std::vector<T> nzb;
  Lanes* st = nullptr;
  if (A.sigma) {
    zf.resize((N + 2 * L - 1) / (2 * L) * (2 * L));
    nzb.resize(N);
    st = reinterpret_cast<Lanes*>(A.rng + tr * 4 * L);
  }
  for (int64_t s = 0; s < S; ++s) {
    const T* nz = nullptr;
    if (A.noise) {
      nz = A.noise + ((s / A.noise_every) * A.B + tr) * N;
    } else if (A.sigma) {
      if (s % A.noise_every == 0) {
        for (int64_t j0 = 0; j0 < N; j0 += 2 * L) normals(*st, zf.data() + j0);
        const float* __restrict__ zp = zf.data();
        T* __restrict__ np_ = nzb.data();
        for (int64_t j = 0; j < N; ++j) np_[j] = A.sigma[j] * (T)zp[j];
      }
      nz = nzb.data();
    }
    const T* dr = A.drive ? A.drive + (tr * S + s) * N : nullptr;
    if (A.vrec) {
      T* dst = A.vrec + (tr * A.rec_steps + A.rec_k0 + s) * N;
      std::memcpy(dst, vv, sizeof(T) * N);
    }
    const T dt = A.dt, decay = A.decay;
    if (A.nsub == 1) izh_dispatch<T, 1>(vv, uu, is, vm, nz, dr, A.a, A.b, h, dt, decay, N, 1);
    else if (A.nsub == 2) izh_dispatch<T, 2>(vv, uu, is, vm, nz, dr, A.a, A.b, h, dt, decay, N, 2);
    else izh_dispatch<T, 0>(vv, uu, is, vm, nz, dr, A.a, A.b, h, dt, decay, N, A.nsub);
    // threshold: a vectorised any() per block of 64 cells, then a scan of the blocks with hits
    fired.clear();
    const T vpeak = A.vpeak;
    for (int64_t j0 = 0; j0 < N; j0 += 64) {
      const int64_t j1 = std::min<int64_t>(N, j0 + 64);
      int hit = 0;
      for (int64_t j = j0; j < j1; ++j) hit |= (vv[j] >= vpeak);
      if (hit) for (int64_t j = j0; j < j1; ++j) if (vv[j] >= vpeak) fired.push_back(j);
    }
    // event-driven propagation: add the rows of the cells that fired, then reset them
    const int64_t nf = (int64_t)fired.size();
    if (A.wd) {
      // 8 (then 4) rows per pass over I_syn (more memory streams, less I_syn traffic);
      // each element still adds the rows one by one in firing order: the same rounding
      int64_t f = 0;
      for (; f + 8 <= nf; f += 8) {
        const T* __restrict__ r0 = A.wd + fired[f] * N;
        const T* __restrict__ r1 = A.wd + fired[f + 1] * N;
        const T* __restrict__ r2 = A.wd + fired[f + 2] * N;
        const T* __restrict__ r3 = A.wd + fired[f + 3] * N;
        const T* __restrict__ r4 = A.wd + fired[f + 4] * N;
        const T* __restrict__ r5 = A.wd + fired[f + 5] * N;
        const T* __restrict__ r6 = A.wd + fired[f + 6] * N;
        const T* __restrict__ r7 = A.wd + fired[f + 7] * N;
        for (int64_t j = 0; j < N; ++j) {
          T x = is[j];
          x = x + r0[j]; x = x + r1[j]; x = x + r2[j]; x = x + r3[j];
          x = x + r4[j]; x = x + r5[j]; x = x + r6[j]; x = x + r7[j];
          is[j] = x;
        }
      }
      for (; f + 4 <= nf; f += 4) {
        const T* __restrict__ r0 = A.wd + fired[f] * N;
        const T* __restrict__ r1 = A.wd + fired[f + 1] * N;
        const T* __restrict__ r2 = A.wd + fired[f + 2] * N;
        const T* __restrict__ r3 = A.wd + fired[f + 3] * N;
        for (int64_t j = 0; j < N; ++j) is[j] = (((is[j] + r0[j]) + r1[j]) + r2[j]) + r3[j];
      }
      for (; f < nf; ++f) {
        const T* __restrict__ row = A.wd + fired[f] * N;
        for (int64_t j = 0; j < N; ++j) is[j] = is[j] + row[j];
      }
    } else {
      for (int64_t p : fired) {
        const int64_t* cols = A.ecol + p * A.K; const T* vals = A.evals + p * A.K;
        for (int64_t q = 0; q < A.K; ++q) is[cols[q]] = is[cols[q]] + vals[q];
      }
    }
    for (int64_t p : fired) {
      rec.push_back(A.k0 + s); rec.push_back(p);
      vv[p] = A.c[p]; uu[p] = uu[p] + A.d[p];
    }
  }
}

template <typename T>
int64_t run_chunk(const Args<T>& A, int64_t n_threads, int64_t** out) {
  std::vector<std::vector<int64_t>> rec(A.B);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(n_threads, A.B));
  if (nt == 1) {
    for (int64_t tr = 0; tr < A.B; ++tr) run_trial(A, tr, rec[tr]);
  } else {
    std::vector<std::thread> pool;
    for (int64_t w = 0; w < nt; ++w)
      pool.emplace_back([&, w] {
        for (int64_t tr = w; tr < A.B; tr += nt) run_trial(A, tr, rec[tr]);
      });
    for (auto& t : pool) t.join();
  }
  // merge into (step, trial, neuron) rows ordered by step, trial, neuron
  int64_t total = 0;
  for (auto& r : rec) total += (int64_t)r.size() / 2;
  int64_t* o = (int64_t*)std::malloc(sizeof(int64_t) * 3 * std::max<int64_t>(total, 1));
  std::vector<size_t> cur(A.B, 0);
  int64_t n = 0;
  for (int64_t s = 0; s < A.S && n < total; ++s) {
    for (int64_t tr = 0; tr < A.B; ++tr) {
      const auto& r = rec[tr];
      size_t i = cur[tr];
      while (i < r.size() && r[i] == A.k0 + s) {
        o[3 * n] = r[i]; o[3 * n + 1] = tr; o[3 * n + 2] = r[i + 1]; ++n; i += 2;
      }
      cur[tr] = i;
    }
  }
  *out = o;
  return total;
}

}  // namespace

#define NEUROSIM_EXPORT(NAME, T)                                                              \
  extern "C" int64_t NAME(T* v, T* u, T* isyn, const T* a, const T* b, const T* c, const T* d, \
      const T* noise, int64_t noise_every, const T* sigma, uint32_t* rng, const T* drive,      \
      const T* wd, const int64_t* ecol, const T* evals, int64_t K, T* vrec, int64_t rec_steps, \
      int64_t rec_k0, T* vmin, int64_t B, int64_t N, int64_t S, int64_t k0, double dt,         \
      int64_t nsub, double vpeak, double decay, int64_t n_threads, int64_t** out) {            \
    Args<T> A{v, u, isyn, a, b, c, d, noise, noise_every, sigma, rng, drive, wd, ecol, evals,  \
              K, vrec, rec_steps, rec_k0, vmin, B, N, S, k0, (T)dt, nsub, (T)vpeak, (T)decay}; \
    return run_chunk<T>(A, n_threads, out);                                                    \
  }

NEUROSIM_EXPORT(neurosim_izh_chunk_f32, float)
NEUROSIM_EXPORT(neurosim_izh_chunk_f64, double)

extern "C" void neurosim_free(int64_t* p) { std::free(p); }

// Lane states of the noise generator of trials [t0, t0 + B): splitmix64 of (seed, trial), so
// that trial b's stream depends on the seed and b only (not on the batch size or threads).
extern "C" void neurosim_seed(uint32_t* state, int64_t t0, int64_t B, uint64_t seed) {
  for (int64_t tr = 0; tr < B; ++tr) {
    uint64_t x = seed * 0xD1B54A32D192ED03ull ^ (uint64_t)(t0 + tr) * 0x9E3779B97F4A7C15ull;
    for (int w = 0; w < 4 * L; w += 2) {
      const uint64_t z = splitmix64(x);
      state[tr * 4 * L + w] = (uint32_t)z;
      state[tr * 4 * L + w + 1] = (uint32_t)(z >> 32);
    }
  }
}
"""

_KERNEL: Any = None
_KERNEL_ERROR: str | None = None  # why the kernel did not compile (kernel="auto" asks once)
_AUTO_LOGGED = False
KERNELS = ("auto", "eager", "cpp")
NOISE_RNGS = ("auto", "torch", "xoshiro")


def resolve_kernel(kernel: str, dev: torch.device) -> str:
    """The path ``kernel`` stands for on ``dev``: ``"auto"`` -> ``"cpp"`` or ``"eager"``.

    ``"auto"`` is ``"cpp"`` on the CPU whenever the C++ kernel compiles (or is cached) and
    ``"eager"`` on CUDA or when it does not compile (no compiler, a failed build); the first
    resolution in a process logs one line saying which path runs and why.
    """
    global _AUTO_LOGGED, _KERNEL_ERROR
    if kernel != "auto":
        return kernel
    if dev.type != "cpu":
        chosen, why = "eager", f"device {dev.type}"
    elif _KERNEL_ERROR is not None:
        chosen, why = "eager", _KERNEL_ERROR
    else:
        try:
            lib = load_kernel()
            chosen, why = "cpp", f"C++ kernel {lib.path.name}"
        except (RuntimeError, OSError) as err:
            _KERNEL_ERROR = str(err).splitlines()[0]
            chosen, why = "eager", _KERNEL_ERROR
    if not _AUTO_LOGGED:
        _AUTO_LOGGED = True
        level = logging.WARNING if chosen == "eager" and dev.type == "cpu" else logging.INFO
        logger.log(level, "torch engine kernel='auto': %s path (%s)", chosen, why)
    return chosen
_KERNEL_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math",
                 "-fno-math-errno", "-std=c++17", "-fPIC", "-shared", "-pthread"]
# steps per chunk: the pre-drawn noise of a chunk has about this many elements
_CHUNK_ELEMENTS = 1 << 22
_LANES = 64  # lanes of the in-kernel noise generator (L in the C++ source)


class _Kernel:
    """The compiled kernel (a shared library without torch headers, called through ctypes)."""

    def __init__(self, path: Path) -> None:
        import ctypes

        lib = ctypes.CDLL(str(path))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        for name in ("neurosim_izh_chunk_f32", "neurosim_izh_chunk_f64"):
            fn = getattr(lib, name)
            fn.restype = i64
            fn.argtypes = ([p] * 8 + [i64] + [p] * 6 + [i64, p, i64, i64, p] + [i64] * 4
                           + [ctypes.c_double, i64, ctypes.c_double, ctypes.c_double, i64,
                              ctypes.POINTER(ctypes.POINTER(i64))])
        lib.neurosim_free.argtypes = [p]
        lib.neurosim_seed.argtypes = [p, i64, i64, ctypes.c_uint64]
        self.lib, self.path, self._ct = lib, path, ctypes

    def seed(self, batch: int, seed: int) -> torch.Tensor:
        """Lane states (batch, 4 * lanes) of the noise generator; trial b's depend on (seed, b)."""
        state = torch.empty((batch, 4 * _LANES), dtype=torch.int32)
        self.lib.neurosim_seed(state.data_ptr(), 0, batch, int(seed) % (1 << 64))
        return state

    def run_chunk(self, tensors: dict[str, torch.Tensor | None], ints: dict[str, Any]
                  ) -> torch.Tensor:
        """Run ``ints["S"]`` steps in place; spikes (n, 3): step, trial, neuron, sorted."""
        ct = self._ct

        def ptr(name: str) -> int | None:
            t = tensors.get(name)
            if t is None or t.numel() == 0:
                return None
            if not t.is_contiguous():
                raise RuntimeError(f"kernel argument {name} is not contiguous")
            return t.data_ptr()

        v = tensors["v"]
        fn = (self.lib.neurosim_izh_chunk_f64 if v.dtype == torch.float64
              else self.lib.neurosim_izh_chunk_f32)
        out = ct.POINTER(ct.c_int64)()
        n = fn(ptr("v"), ptr("u"), ptr("isyn"), ptr("a"), ptr("b"), ptr("c"), ptr("d"),
               ptr("noise"), ints["noise_every"], ptr("sigma"), ptr("rng"), ptr("drive"),
               ptr("wd"), ptr("ecol"), ptr("evals"), ints["K"], ptr("vrec"),
               ints["rec_steps"], ints["rec_k0"], ptr("vmin"), v.shape[0], v.shape[1],
               ints["S"], ints["k0"], ints["dt"], ints["nsub"], ints["vpeak"], ints["decay"],
               ints["threads"], ct.byref(out))
        try:
            arr = (np.ctypeslib.as_array(out, shape=(n, 3)).copy() if n
                   else np.zeros((0, 3), dtype=np.int64))
        finally:
            self.lib.neurosim_free(out)
        return torch.from_numpy(arr)


def _cache_dir() -> Path:
    env = os.environ.get("NEUROSIM_KERNEL_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("neurosim")) / "kernels"


def load_kernel(verbose: bool = False) -> _Kernel:
    """Compile (first call, a few seconds; cached on disk) and return the C++ CPU kernel.

    The kernel is plain C++ (no torch headers, so it compiles in seconds with the system
    ``c++``, or ``$CXX``), called through ``ctypes`` on the tensors' memory. It runs chunks of
    steps of the whole batch, trials in parallel threads, with the arithmetic of the eager
    path. The library is cached in ``$NEUROSIM_KERNEL_CACHE`` (default: the user cache
    directory), keyed by the source, the flags and the CPU.
    """
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    cxx = os.environ.get("CXX", "c++")
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu += next((ln for ln in fh if ln.startswith("flags")), "")
    except OSError:
        pass
    key = hashlib.sha1("\n".join([_KERNEL_SOURCE, cxx, *_KERNEL_FLAGS, cpu]).encode()
                       ).hexdigest()[:16]
    cache = _cache_dir()
    lib = cache / f"neurosim_izh_{key}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src = Path(tmp) / "kernel.cpp"
            src.write_text(_KERNEL_SOURCE)
            tmp_lib = Path(tmp) / "kernel.so"
            cmd = [cxx, *_KERNEL_FLAGS, str(src), "-o", str(tmp_lib)]
            if verbose:
                logger.info("compiling the neurosim kernel: %s", " ".join(cmd))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            except FileNotFoundError as err:
                raise RuntimeError(
                    f"kernel='cpp' needs a C++ compiler: {cxx!r} not found (set $CXX)") from err
            if proc.returncode != 0:
                raise RuntimeError(f"compiling the neurosim kernel failed:\n{proc.stderr}")
            os.replace(tmp_lib, lib)  # atomic: concurrent processes see a whole library
    _KERNEL = _Kernel(lib)
    return _KERNEL


def _simulate(model: NetworkModel, spec: Any, dev: torch.device, fdt: torch.dtype, seed: int,
              noise: bool, verbose: bool | None, check_every: int, kernel: str,
              noise_rng: str = "torch") -> SpikeRecord:
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
        w_dense = torch.as_tensor(np.asarray(model.weights), device=dev).to(fdt).contiguous()
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
    in_kernel_rng = kernel == "cpp" and noise_rng == "xoshiro"
    if kernel == "cpp" and spec.inputs is None and (sigma is None or in_kernel_rng):
        chunk = ne * max(1, 1024 // ne)  # nothing drawn per chunk: long chunks, few calls
    else:
        chunk = ne * max(1, min(256, _CHUNK_ELEMENTS // (bsz * n)) // ne)

    v = torch.full((bsz, n), float(model.v0), dtype=fdt, device=dev)
    u = b * v
    i_syn = torch.zeros_like(v)
    vmin = v.clone()
    v_rec = (torch.empty((bsz, spec.n_steps, n), dtype=fdt, device=dev)
             if spec.record_v else None)
    spikes: list[torch.Tensor] = []  # (n, 3): step, trial, neuron
    kern = load_kernel(bool(verbose)) if kernel == "cpp" else None
    rng_state = None
    if kern is not None and in_kernel_rng and sigma is not None:
        rng_state = kern.seed(bsz, seed)

    starts = range(0, spec.n_steps, chunk)
    if verbose:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"{model.name} (torch {kernel}, batch {bsz})")
    with torch.no_grad():
        for k0 in starts:
            n_chunk = min(chunk, spec.n_steps - k0)
            noise_c = drive_c = None
            if sigma is not None and rng_state is None:
                noise_c = torch.randn(((n_chunk + ne - 1) // ne, bsz, n), generator=gen,
                                      dtype=fdt, device=dev).mul_(sigma)
            if spec.inputs is not None:
                drive_c = project_inputs(inp[:, k0:k0 + n_chunk], w_in).contiguous()
            if kern is not None:
                out = kern.run_chunk(
                    dict(v=v, u=u, isyn=i_syn, a=a, b=b, c=c, d=d, noise=noise_c,
                         sigma=sigma if rng_state is not None else None, rng=rng_state,
                         drive=drive_c, wd=w_dense, ecol=ell_cols, evals=ell_vals,
                         vrec=v_rec, vmin=vmin),
                    dict(noise_every=ne, K=ell_cols.shape[1] if sparse else 0,
                         rec_steps=spec.n_steps, rec_k0=k0, S=n_chunk, k0=k0, dt=dt,
                         nsub=model.v_substeps, vpeak=model.v_peak, decay=decay,
                         threads=torch.get_num_threads()))
                if out.shape[0]:
                    spikes.append(out)  # sorted by step, trial, neuron
            else:
                _eager_chunk(v, u, i_syn, a, b, c, d, noise_c, ne, drive_c, w_dense, ell_cols,
                             ell_vals, sparse, v_rec, vmin, k0, n_chunk, dt, model.v_substeps,
                             model.v_peak, decay, spikes, check_every)
            _check(vmin, dt, k0 + n_chunk - 1, model.v_peak)

    if spikes:
        arr = torch.cat([x.cpu() for x in spikes]).numpy()
    else:
        arr = np.zeros((0, 3), dtype=np.int64)
    if kern is None:  # the kernel's chunks come sorted
        arr = arr[np.lexsort((arr[:, 2], arr[:, 1], arr[:, 0]))]  # by time, trial, neuron
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
