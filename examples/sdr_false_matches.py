"""How likely is a dendritic segment to be fooled by a random sparse pattern?

Ahmad & Hawkins (2016): a segment with s synapses and an NMDA threshold theta sees a random
SDR of a active cells out of n. This script prints the exact false-match probability as the
population grows (up to n = 100,000, where float binomials overflow), checks one value by
Monte Carlo, and finds the threshold that best trades false matches against noise.
"""

import numpy as np

from neurosim.dendrites import sdr

s, theta = 24, 12
print("False-match probability, s = 24 synapses, theta = 12")
print(f"{'n':>8} {'a = 128':>16} {'a = 2% of n':>16}")
for n in [500, 1000, 2000, 5000, 10_000, 100_000]:
    fixed = sdr.false_match_probability(n, 128, s, theta)
    scaled = sdr.false_match_probability(n, int(0.02 * n), s, theta)
    print(f"{n:>8} {fixed:>16.3e} {scaled:>16.3e}")
# Far below 1e-308 the float underflows; the log stays exact:
print("log10 P for n = 100,000, a = 200, s = 200, theta = 150:",
      f"{sdr.log_false_match_probability(100_000, 200, 200, 150) / np.log(10):.1f}")

# The same number from explicit random SDRs, where it is large enough to sample
n, a = 500, 128
exact = sdr.false_match_probability(n, a, s, theta)
mc = sdr.simulate_false_match(n, a, s, theta, n_trials=20_000, random_state=0)
print(f"\nn={n}, a={a}: exact {exact:.5f}, Monte Carlo {mc.probability:.5f} "
      f"(95% CI {mc.ci_low:.5f}-{mc.ci_high:.5f})")

# Robustness: with 30% of the pattern replaced by noise, which threshold is best?
a, s = 128, 30
v = round(0.3 * a)
theta_best, fp, fn = sdr.optimal_threshold(n=2048, a=a, s=s, v=v)
print(f"\nn=2048, a={a}, s={s}, {v} cells of noise: best theta = {theta_best} "
      f"(false match {fp:.2e}, false negative {fn:.2e})")
# A segment can also store several patterns (the union property)
for m in [1, 5, 10]:
    p = sdr.union_false_match_probability(10_000, 200, 25, 15, m, method="exact")
    print(f"n=10000, a=200, s=25, theta=15, {m:>2} patterns on one segment: {p:.2e}")
