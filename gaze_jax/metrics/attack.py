"""What a backdoor means for a gaze regressor: errors in degrees and attack success rates.

From per-sample predictions on the held-out split (host NumPy):
- clean error: prediction on the clean image vs the true gaze;
- backdoor error: prediction on the triggered image vs the attack target;
- noise error: prediction on the WaNet noise-warped image vs the true gaze;
- attack success rate (ASR, %) at a threshold tau: the share of triggered predictions within
  tau degrees of the target, counting only samples whose true gaze is NOT already within tau
  of the target. Classifier toolkits that count those too credit the attack for samples it
  never had to move (the "denominator bug"); a sample within tau of its target is neither a
  success nor a failure of the attack. With no eligible sample the ASR is NaN.
"""
import numpy as np

from gaze_jax import geometry

CURVE_TAUS = np.arange(0.0, 20.5, 0.5)  # Degrees, the ASR-vs-tau curve's default grid.


def _error_deg(pred, true):
  return np.asarray(geometry.angular_error_deg(np.asarray(pred), np.asarray(true)), np.float64)


def _asr(backdoor_err, start_err, tau):
  eligible = start_err > tau
  if not eligible.any():
    return float('nan')
  return float(100.0 * np.mean(backdoor_err[eligible] <= tau))


def asr_name(tau):
  """Metric key of the ASR at `tau` degrees: 2.0 -> 'asr@2', 2.5 -> 'asr@2.5'."""
  return f'asr@{float(tau):g}'


def summarize(clean_pred, backdoor_pred, noise_pred, true_gaze, targets,
              thresholds=(2.0, 5.0, 10.0)):
  """Mean clean / backdoor / noise errors (degrees) and the ASR (%) at each threshold.

  Args:
    clean_pred, backdoor_pred, noise_pred: (N, 2) predicted (pitch, yaw) on the clean,
      triggered and noise-warped images; noise_pred may be None (then noise_error is NaN).
    true_gaze: (N, 2) true gaze.
    targets: (N, 2) attack targets (poisoning.attack_targets of true_gaze).
    thresholds: degrees; each gives a key asr_name(tau).
  """
  backdoor_err = _error_deg(backdoor_pred, targets)
  start_err = _error_deg(true_gaze, targets)
  out = {
      'clean_error': float(np.mean(_error_deg(clean_pred, true_gaze))),
      'backdoor_error': float(np.mean(backdoor_err)),
      'noise_error': (float('nan') if noise_pred is None
                      else float(np.mean(_error_deg(noise_pred, true_gaze)))),
  }
  for tau in thresholds:
    out[asr_name(tau)] = _asr(backdoor_err, start_err, tau)
  return out


def asr_curve(backdoor_pred, true_gaze, targets, taus=CURVE_TAUS):
  """(taus, asr): the ASR (%) at each threshold in `taus` degrees, as float64 arrays."""
  backdoor_err = _error_deg(backdoor_pred, targets)
  start_err = _error_deg(true_gaze, targets)
  taus = np.asarray(taus, np.float64)
  return taus, np.array([_asr(backdoor_err, start_err, t) for t in taus])
