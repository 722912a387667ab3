"""The 1,000-neuron network of Izhikevich (2003), on the torch engine and on Brian2.

Runs 4 independent trials of 2 s in one batched call, prints the excitatory / inhibitory
rates and the alpha and gamma peaks of the population-rate spectrum, runs one trial of the
same model on Brian2 for comparison, and saves a raster. Takes about 10-30 s on a laptop.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neurosim.network import izhikevich_2003, spectral_peak  # noqa: E402

net = izhikevich_2003(n_exc=800, n_inh=200, seed=0)  # one model description ...

rec = net.run(2000.0, batch=4, seed=1)  # ... torch engine: 4 trials at once (float32)
print(rec)
print("excitatory rate per trial (Hz):", rec.rates_hz("trial", net.exc).round(2))
print("inhibitory rate per trial (Hz):", rec.rates_hz("trial", ~net.exc).round(2))
f, pxx = rec.psd()  # Welch PSD of the population rate, one row per trial
psd = pxx.mean(axis=0)
f_alpha, f_gamma = spectral_peak(f, psd, (6, 14))[0], spectral_peak(f, psd, (25, 50))[0]
print(f"alpha peak: {f_alpha:.0f} Hz   gamma peak: {f_gamma:.0f} Hz")

ref = net.run(2000.0, engine="brian2", device="numpy", seed=1)  # ... and on Brian2
exc_b, inh_b = ref.rates_hz("trial", net.exc)[0], ref.rates_hz("trial", ~net.exc)[0]
print(f"Brian2: excitatory {exc_b:.2f} Hz, inhibitory {inh_b:.2f} Hz")

# filtered spike trains for a readout: a torch tensor (batch, n_steps, n_neurons)
r = rec.filtered(tau_ms=20.0)
print("filtered traces:", tuple(r.shape))

ax = rec.raster(exc=net.exc)
ax.set_xlim(0, 1000)
plt.savefig("izhikevich_2003_raster.png", dpi=120)
print("saved izhikevich_2003_raster.png")
