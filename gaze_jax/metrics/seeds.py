"""Results over seeds: mean and standard deviation, and the paired comparison of a poisoned
model with its clean control trained on the same seed.

A finding needs its spread: one seed says nothing about run-to-run variation. Pairing by seed
(same data order, initialisation and trigger) removes what the two models share; the 95%
interval of the mean paired difference uses Student's t with n - 1 degrees of freedom.
"""
import math

import numpy as np
from scipy import stats


def mean_std(values):
  """(mean, sample standard deviation) of finite values; std NaN for fewer than 2."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  if not len(values):
    return float('nan'), float('nan')
  std = float(np.std(values, ddof=1)) if len(values) > 1 else float('nan')
  return float(np.mean(values)), std


def paired(treated, control):
  """Mean, std and 95% t-interval of treated[i] - control[i] over seeds i."""
  diffs = [t - c for t, c in zip(treated, control)
           if t is not None and c is not None and np.isfinite(t) and np.isfinite(c)]
  mean, std = mean_std(diffs)
  n = len(diffs)
  if n < 2:
    return {'mean': mean, 'std': std, 'ci95': [float('nan'), float('nan')], 'n': n}
  half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
  return {'mean': mean, 'std': std, 'ci95': [mean - half, mean + half], 'n': n}


def aggregate(per_seed):
  """{metric: [mean, std]} over a list of per-seed metric dicts (metrics in all of them)."""
  keys = [k for k in per_seed[0] if all(k in m for m in per_seed)]
  return {k: list(mean_std([m[k] for m in per_seed])) for k in keys
          if isinstance(per_seed[0][k], (int, float))}
