"""Brian2 engine: the same network as Brian2 equations (the reference engine).

The model is a ``NeuronGroup`` with the Izhikevich (2003) equations::

    dv/dt = (0.04*v**2 + 5*v + 140 - u + I_noise + I_syn + I_in)/ms : 1
    du/dt = a*(b*v - u)/ms : 1

integrated by :class:`IzhikevichUpdater`, a Brian2 state updater that writes Izhikevich's
own ordering (``n_sub`` Euler steps of v, then u from the NEW v; then the synaptic current
decays by ``syn_decay``), a ``Synapses`` object with ``on_pre="I_syn_post += w"``, and a
``run_regularly("I_noise = sigma*randn()")`` for the thalamic noise. Brian2's schedule
(start: noise -> groups: integrate -> thresholds -> synapses -> resets) is the order of the
torch engine, so both give the same spikes for the same input (see the tests).

Modes (``device=``): ``"runtime"`` (Cython if it is installed, else numpy), ``"numpy"``,
``"cython"``, and ``"cpp_standalone"`` (the whole run compiled to C++; the code generation
and compilation time is reported apart from the run time in ``SpikeRecord.info``).
Brian2 has no batch dimension: trials run one after another, each with seed ``seed + b``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

import numpy as np
import scipy.sparse

from neurosim.engines import V_DIVERGED_MV, divergence_error, prepare_run, project_inputs
from neurosim.network import NetworkModel, SpikeRecord

logger = logging.getLogger(__name__)

MODES = ("runtime", "numpy", "cython", "cpp_standalone")

EQUATIONS = """
dv/dt = (0.04*v**2 + 5*v + 140 - u + I_noise + I_syn + I_in)/ms : 1
du/dt = a*(b*v - u)/ms : 1
I_syn : 1
I_noise : 1
I_in : 1
a : 1 (constant)
b : 1 (constant)
c : 1 (constant)
d : 1 (constant)
sigma : 1 (constant)
"""


def _updater_class() -> type:
    from brian2.stateupdaters.base import StateUpdateMethod

    class IzhikevichUpdater(StateUpdateMethod):
        """Izhikevich's published ordering: v in ``n_sub`` Euler sub-steps, then u(new v).

        Plain forward Euler (u from the old v, one step of v) is what ``method="euler"``
        would give; it changes the spike trains of the 2003 network (REFERENCES 2.1).
        """

        def __init__(self, n_sub: int) -> None:
            self.n_sub = int(n_sub)

        def can_integrate(self, equations: Any, variables: Any, method_options: Any = None
                          ) -> bool:
            return {"v", "u"} <= set(equations.diff_eq_names)

        def __call__(self, equations: Any, variables: Any = None, method_options: Any = None
                     ) -> str:
            rhs = dict(equations.get_substituted_expressions(variables))
            lines = [f"v = v + (dt/{self.n_sub})*({rhs['v']})" for _ in range(self.n_sub)]
            lines.append(f"u = u + dt*({rhs['u']})")
            lines.append("I_syn = syn_decay*I_syn")
            return "\n".join(lines)

    return IzhikevichUpdater


def _codegen_target(mode: str) -> str:
    if mode in ("numpy", "cython"):
        return mode
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "numpy"
    return "cython"


def simulate_brian2(
    model: NetworkModel,
    duration_ms: float,
    dt_ms: float | None = None,
    inputs: Any = None,
    batch: int = 1,
    device: str = "runtime",
    record: tuple[str, ...] = ("spikes",),
    seed: int = 0,
    noise: bool = True,
    dtype: str = "float64",
    verbose: bool | None = None,
    build_dir: str | None = None,
) -> SpikeRecord:
    """Run ``model`` with Brian2; see :meth:`NetworkModel.run` for the arguments.

    ``device`` is the Brian2 mode (``"runtime"``, ``"numpy"``, ``"cython"``,
    ``"cpp_standalone"``; ``"auto"`` means ``"runtime"``). Brian2 computes in float64
    whatever ``dtype`` says. ``build_dir`` is the cpp_standalone project folder (default: a
    temporary folder). ``SpikeRecord.info`` gets ``wall_s``, ``run_s`` (time of Brian2's
    ``run`` without building) and ``build_s`` (code generation and compilation).
    """
    mode = "runtime" if device == "auto" else device
    if mode not in MODES:
        raise ValueError(f"device: expected one of {MODES} for the brian2 engine, got {device!r}")
    spec = prepare_run(model, duration_ms, dt_ms, inputs, batch, record)
    import brian2 as b2

    times, neurons, trials, vs = [], [], [], []
    info: dict[str, Any] = {"engine": "brian2", "mode": mode, "wall_s": 0.0, "run_s": 0.0,
                            "build_s": 0.0}
    if mode != "cpp_standalone":
        info["codegen_target"] = _codegen_target(mode)
    old_target = b2.prefs.codegen.target
    for trial in range(spec.batch):
        t0 = time.perf_counter()
        if mode == "cpp_standalone":
            tmp = None if build_dir is not None else tempfile.TemporaryDirectory()
            directory = build_dir or tmp.name
            b2.set_device("cpp_standalone", directory=directory, build_on_run=True)
        else:
            b2.prefs.codegen.target = info["codegen_target"]
        try:
            t_step, i_idx, v_rec, v_last, run_s = _run_one(b2, model, spec, trial, seed, noise)
        finally:
            if mode == "cpp_standalone":
                b2.device.reinit()
                b2.set_device("runtime")
                if tmp is not None:
                    tmp.cleanup()
            b2.prefs.codegen.target = old_target
        wall = time.perf_counter() - t0
        info["wall_s"] += wall
        info["run_s"] += run_s
        info["build_s"] += wall - run_s
        bad = ~(v_last > -V_DIVERGED_MV)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise divergence_error(spec.dt_ms, j, trial, spec.duration_ms, float(v_last[j]))
        times.append(t_step * spec.dt_ms)
        neurons.append(i_idx)
        trials.append(np.full(i_idx.shape, trial))
        if v_rec is not None:
            vs.append(v_rec)
    t_all, n_all, tr_all = (np.concatenate(x) for x in (times, neurons, trials))
    order = np.lexsort((n_all, tr_all, t_all))
    rec = SpikeRecord(
        times_ms=t_all[order], neuron=n_all[order], trial=tr_all[order],
        n_neurons=model.n_neurons, duration_ms=spec.duration_ms, batch=spec.batch,
        dt_ms=spec.dt_ms, v=np.stack(vs) if vs else None,
    )
    rec.info = info
    return rec


def _run_one(b2: Any, model: NetworkModel, spec: Any, trial: int, seed: int, noise: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, float]:
    """Build and run one trial in the active Brian2 device."""
    from brian2 import ms

    n, dt = model.n_neurons, spec.dt_ms
    namespace: dict[str, Any] = {"syn_decay": model.syn_decay(dt), "v_peak": model.v_peak}
    if spec.inputs is not None:
        drive = project_inputs(spec.inputs[min(trial, spec.inputs.shape[0] - 1)],
                               model.input_weights)
        namespace["I_input"] = b2.TimedArray(drive, dt=dt * ms)
    b2.seed(int(seed) + trial)
    group = b2.NeuronGroup(
        n, EQUATIONS, threshold="v >= v_peak", reset="v = c\nu = u + d",
        method=_updater_class()(model.v_substeps), namespace=namespace, dt=dt * ms,
        name="izhikevich",
    )
    group.a, group.b, group.c, group.d = model.a, model.b, model.c, model.d
    group.v = model.v0
    group.u = model.b * model.v0
    objects = [group]
    if spec.inputs is not None:
        # a state variable set each step (not a function inside dv/dt, which sympy would
        # reorder, changing the rounding against the torch engine)
        objects.append(group.run_regularly("I_in = I_input(t, i)", when="start", order=1))
    if noise and np.any(model.noise_std > 0):
        group.sigma = model.noise_std
        objects.append(group.run_regularly("I_noise = sigma*randn()",
                                           dt=model.noise_interval_ms * ms, when="start"))
    syn = b2.Synapses(group, group, "w : 1", on_pre="I_syn_post += w", dt=dt * ms,
                      namespace={}, name="recurrent")
    weights = model.weights
    if scipy.sparse.issparse(weights):
        coo = scipy.sparse.coo_matrix(weights)
        syn.connect(i=coo.row.astype(np.int32), j=coo.col.astype(np.int32))
        syn.w = coo.data
    else:
        syn.connect()  # all-to-all, ordered i-major: w[i, j] in C order
        syn.w = np.asarray(weights, dtype=np.float64).ravel()
    spikes = b2.SpikeMonitor(group, record=True, name="spikes")
    objects += [syn, spikes]
    vmon = None
    if spec.record_v:
        vmon = b2.StateMonitor(group, "v", record=True, dt=dt * ms, name="vmon")
        objects.append(vmon)
    net = b2.Network(*objects)
    t0 = time.perf_counter()
    net.run(spec.duration_ms * ms, namespace={})
    run_s = time.perf_counter() - t0
    last = getattr(b2.device, "_last_run_time", None)
    if last is not None:  # cpp_standalone: time of the compiled run alone
        run_s = float(last)
    t_step = np.rint(np.asarray(spikes.t_) * 1000.0 / dt).astype(np.int64)
    i_idx = np.asarray(spikes.i[:], dtype=np.int64)
    v_rec = None if vmon is None else np.asarray(vmon.v[:]).T.copy()
    return t_step, i_idx, v_rec, np.asarray(group.v[:]), run_s
