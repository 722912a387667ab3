"""Izhikevich neurons: a published pattern, your own parameters, a population, two engines.

Run:  python examples/izhikevich_patterns.py      (a few seconds; writes izhikevich_example.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from neurosim.izhikevich import PATTERNS, IzhikevichParams, simulate_neuron, simulate_patterns

# 1. A panel of Izhikevich (2004, Fig. 1) with its published parameters, step and stimulus.
bursting = simulate_neuron("tonic_bursting")
print(PATTERNS["tonic_bursting"].protocol, "->", bursting.n_spikes, "spikes, first at",
      bursting.spike_times_ms[0], "ms")

# 2. Your own neuron: a regular-spiking cell (2003 paper) under a 10-unit step after 20 ms,
#    on both engines; in float64 they agree step for step.
rs = IzhikevichParams(a=0.02, b=0.2, c=-65.0, d=8.0)
step = lambda t: 10.0 if t > 20.0 else 0.0  # noqa: E731 - I(t), t in ms
on_torch = simulate_neuron(rs, step, duration_ms=300.0, dt_ms=0.25)
on_brian2 = simulate_neuron(rs, step, duration_ms=300.0, dt_ms=0.25, engine="brian2")
print("RS spike times (ms):", on_torch.spike_times_ms)
print("same spike steps on torch and Brian2:",
      np.array_equal(on_torch.spike_steps, on_brian2.spike_steps))

# 3. A population: the heterogeneous excitatory cells of the 2003 network (r ~ U[0, 1]),
#    simulated together; rates grow from RS-like (r = 0) to chattering (r = 1).
r = np.linspace(0.0, 1.0, 5)
pop = IzhikevichParams(0.02, 0.2, -65 + 15 * r**2, 8 - 6 * r**2)
pop_trace = simulate_neuron(pop, 10.0, duration_ms=500.0, dt_ms=0.5)
print("population rates (Hz):", np.round(pop_trace.rate_hz(), 1))

# 4. All 27 published patterns at once (one vectorised run).
traces = simulate_patterns()
fig, axes = plt.subplots(3, 1, figsize=(7, 6))
for ax, name in zip(axes, ["tonic_bursting", "class_1_excitable", "accommodation"]):
    tr = traces[name]
    ax.plot(tr.t_ms, tr.v, "k", lw=0.8)
    ax.set_title(PATTERNS[name].title, fontsize=9)
    ax.set_ylabel("v (mV)")
axes[-1].set_xlabel("t (ms)")
fig.tight_layout()
fig.savefig("izhikevich_example.png", dpi=100)
print("wrote izhikevich_example.png")
