"""What-and-when prediction with a three-factor readout on a spiking reservoir.

A cue at t = 0 announces identity 0 at 120 ms (p = 0.3) or identity 1 at 300 ms (p = 0.6), or
nothing. An Izhikevich reservoir is run on the trials (torch engine, batched); a
`ThreeFactorReadout` learns "when" online and consolidates "what" offline; FORCE is trained
on the same activity. On cue-only probe trials both should anticipate each identity at its
latency, with an amplitude that follows its probability.

Run: python examples/what_when_prediction.py   (about half a minute on a laptop)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from neurosim.jobs.what_when import WhatWhenParams, build_reservoir, reservoir_rates
from neurosim.plasticity import ForceReadout, ThreeFactorReadout, scheduled_gate
from neurosim.tasks import WhatWhenTask

torch.set_num_threads(1)  # many tiny per-step ops: a thread pool only adds latency

task = WhatWhenTask(latencies_ms=[120.0, 300.0], probabilities=[0.3, 0.6], trial_ms=400,
                    target_width_ms=15.0)
params = WhatWhenParams(n_neurons=300)  # reservoir settings of the `what_when` job
reservoir = build_reservoir(params, task.n_channels, seed=0)

train = task.sample(150, seed=0)
rates, records = reservoir_rates(reservoir, train, tau_filter_ms=20.0, seed=0)
probe_rates, _ = reservoir_rates(reservoir, task.probe(20), tau_filter_ms=20.0, seed=1)

# scheduled attention gate: open around the cue (0 ms) and the stimulus onset
gate = scheduled_gate(np.c_[np.zeros(train.n_trials), train.onset_ms], train.n_steps,
                      train.dt_ms, width_ms=30.0, baseline=0.2)
# the default rule: standardised inputs + bias synapse, eta 0.2, tau_e 2 ms, kappa 1, and a
# 200-trial consolidation buffer (see the README's what/when section for why)
three = ThreeFactorReadout(store_margin_ms=30.0)
for i in range(0, train.n_trials, 2):
    sl = slice(i, i + 2)
    three.partial_fit(rates[sl], train.targets[sl], gate[sl], train.onset_ms[sl])  # "when"
    if (i + 2) % 20 == 0:
        three.consolidate()  # offline: "what"
force = ForceReadout(alpha=1.0, update_every=4).partial_fit(rates, train.targets)

t = task.t_ms
ideal = task.expected_prediction(conditional=True)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
records[0].raster(ax=axes[0], trial=0)
for ax, name, readout in ((axes[1], "three-factor", three), (axes[2], "FORCE", force)):
    y = readout.predict(probe_rates).mean(0).numpy()
    for k in range(task.n_identities):
        after = t >= task.cue_ms
        peak = t[after][np.argmax(y[after, k])]
        print(f"{name:12s} identity {k}: peak {peak:5.0f} ms (latency "
              f"{task.latencies[k]:.0f}), height {y[after, k].max():.2f} "
              f"(ideal {ideal[:, k].max():.2f})")
        ax.plot(t, y[:, k], color=f"C{k}", label=f"identity {k}")
        ax.plot(t, ideal[:, k], color=f"C{k}", ls=":")
    ax.set_title(f"{name} on cue-only probe trials")
    ax.set_xlabel("time after cue (ms)")
axes[1].legend()
fig.tight_layout()
fig.savefig("what_when_prediction.png", dpi=100)
print("saved what_when_prediction.png")
