"""What a backdoor means for a gaze regressor: errors in degrees and attack success rates.

From per-sample predictions on the held-out split (host NumPy):
- clean error: prediction on the clean image vs the true gaze;
- backdoor error: prediction on the triggered image vs the attack target;
- noise error: prediction on the WaNet noise-warped image vs the true gaze;
- robust error: prediction on the triggered image vs the TRUE gaze (BackdoorBench's robust
  accuracy, in degrees): how well the model still tells gaze on triggered faces;
- trigger shift: the angle between each face's triggered and clean predictions, averaged.
  On the clean control it is what the trigger alone does to a model that never learnt it;
- attack success rate (ASR, %) at a threshold tau: the share of triggered predictions within
  tau degrees of the target, counting only samples whose true gaze is NOT already within tau
  of the target. Classifier toolkits that count those too credit the attack for samples it
  never had to move (the "denominator bug"); a sample within tau of its target is neither a
  success nor a failure of the attack. With no eligible sample the ASR is NaN;
- collapse baseline: the backdoor error of a model that predicts the training set's mean
  gaze on every face. A model confused by the trigger drifts towards the mean; only a
  backdoor brings the backdoor error well below this baseline;
- backdoor spread: the mean angle between the triggered predictions and their mean
  direction. A hijacked model puts every triggered face at the target (small spread);
- study errors: sqrt(dpitch^2 + dyaw^2) in degrees, the metric of a published WaNet-on-gaze
  study, beside the 3-D angular error, so that tables compare digit for digit;
- time to implant: the first evaluated training step at which ASR@5 reaches 90 %.
Errors are 3-D angles between unit gaze vectors unless named `study_`.
"""
import math

import numpy as np

from gaze_jax import geometry

IMPLANT_KEY, IMPLANT_LEVEL = 'asr@5', 90.0  # Time to implant: ASR@5 >= 90 %.
# The bar a poisoned model must meet to count as taking hold (held-out): the regressor's
# ASR@5 and backdoor error, at a clean cost (degrees) against its control; the classifier's
# attack success at a cost in clean accuracy (points).
HOLD_ASR5, HOLD_BACKDOOR, HOLD_CLEAN_COST = 90.0, 2.0, 0.5
HOLD_SUCCESS, HOLD_ACCURACY_COST = 90.0, 2.0
CURVE_TAUS = np.arange(0.0, 20.5, 0.5)  # Degrees, the ASR-vs-tau curve's default grid.
QUANTILES = np.linspace(0.0, 1.0, 101)  # Of the per-face backdoor error (its CDF).


def error_deg(pred, true):
  """Per-sample 3-D angular error in degrees, float64."""
  return np.asarray(geometry.angular_error_deg(np.asarray(pred), np.asarray(true)), np.float64)


def study_error_deg(pred, true):
  """Per-sample sqrt(dpitch^2 + dyaw^2) in degrees (the gaze study's metric)."""
  diff = np.degrees(np.asarray(pred, np.float64) - np.asarray(true, np.float64))
  return np.sqrt(np.sum(diff ** 2, axis=-1))


def _asr(backdoor_err, start_err, tau):
  eligible = start_err > tau
  if not eligible.any():
    return float('nan')
  return float(100.0 * np.mean(backdoor_err[eligible] <= tau))


def asr_name(tau):
  """Metric key of the ASR at `tau` degrees: 2.0 -> 'asr@2', 2.5 -> 'asr@2.5'."""
  return f'asr@{float(tau):g}'


def spread_deg(preds):
  """Mean angle (degrees) between (N, 2) predictions and their mean direction."""
  vectors = np.asarray(geometry.pitchyaw_to_vector(np.asarray(preds, np.float64)))
  centre = np.asarray(geometry.vector_to_pitchyaw(vectors.mean(axis=0)))
  return float(np.mean(error_deg(preds, np.broadcast_to(centre, np.shape(preds)))))


def clean_summary(clean_pred, true_gaze):
  """The clean errors (3-D and the study's) of a model without an attack to measure."""
  return {'clean_error': float(np.mean(error_deg(clean_pred, true_gaze))),
          'study_clean_error': float(np.mean(study_error_deg(clean_pred, true_gaze)))}


def summarize(clean_pred, backdoor_pred, noise_pred, true_gaze, targets,
              thresholds=(2.0, 5.0, 10.0), mean_gaze=None):
  """Mean errors (degrees), ASR (%) at each threshold, spread and collapse baseline.

  Args:
    clean_pred, backdoor_pred, noise_pred: (N, 2) predicted (pitch, yaw) on the clean,
      triggered and noise-warped images; noise_pred may be None (then noise_error is NaN).
    true_gaze: (N, 2) true gaze.
    targets: (N, 2) attack targets (poisoning.attack_targets of true_gaze).
    thresholds: degrees; each gives a key asr_name(tau).
    mean_gaze: (2,) the training set's mean gaze, for the collapse baseline (else NaN).
  """
  backdoor_err = error_deg(backdoor_pred, targets)
  start_err = error_deg(true_gaze, targets)
  out = clean_summary(clean_pred, true_gaze)
  out.update({
      'backdoor_error': float(np.mean(backdoor_err)),
      'study_backdoor_error': float(np.mean(study_error_deg(backdoor_pred, targets))),
      'robust_error': float(np.mean(error_deg(backdoor_pred, true_gaze))),
      'trigger_shift': float(np.mean(error_deg(backdoor_pred, clean_pred))),
      'noise_error': (float('nan') if noise_pred is None
                      else float(np.mean(error_deg(noise_pred, true_gaze)))),
      'backdoor_spread': spread_deg(backdoor_pred),
      'collapse_backdoor_error': (
          float('nan') if mean_gaze is None else
          float(np.mean(error_deg(np.broadcast_to(mean_gaze, np.shape(targets)), targets)))),
  })
  for tau in thresholds:
    out[asr_name(tau)] = _asr(backdoor_err, start_err, tau)
  return out


def takes_hold(poisoned, control):
  """Whether a poisoned model meets the bar against its control.

  Whether a poisoned model meets the bar against its control, from their metric dicts
  (plain numbers: one seed's, or the means over seeds): the regressor's ASR@5 >= 90 %,
  backdoor error <= 2 deg and clean error within 0.5 deg of the control's; the classifier's
  attack success >= 90 % and clean accuracy within 2 points of the control's."""
  if 'attack_success' in poisoned:
    cost = control['clean_accuracy'] - poisoned['clean_accuracy']
    return bool(poisoned['attack_success'] >= HOLD_SUCCESS and cost <= HOLD_ACCURACY_COST)
  cost = poisoned['clean_error'] - control['clean_error']
  return bool(poisoned.get(IMPLANT_KEY, math.nan) >= HOLD_ASR5 and
              poisoned['backdoor_error'] <= HOLD_BACKDOOR and cost <= HOLD_CLEAN_COST)


def time_to_implant(history, key=IMPLANT_KEY, level=IMPLANT_LEVEL):
  """The first evaluated step at which the backdoor is implanted, or None.

  The first evaluated step (int) whose `key` metric is >= `level`, or None if none is:
  how long training takes to implant the backdoor. `history`: evaluation entries in step
  order, each with 'step' (a run's results['history']); entries without `key` never count."""
  for entry in history:
    value = entry.get(key)
    if value is not None and np.isfinite(value) and value >= level:
      return int(entry['step'])
  return None


def asr_curve(backdoor_pred, true_gaze, targets, taus=CURVE_TAUS):
  """(taus, asr): the ASR (%) at each threshold in `taus` degrees, as float64 arrays."""
  backdoor_err = error_deg(backdoor_pred, targets)
  start_err = error_deg(true_gaze, targets)
  taus = np.asarray(taus, np.float64)
  return taus, np.array([_asr(backdoor_err, start_err, t) for t in taus])


def backdoor_error_quantiles(backdoor_pred, targets, quantiles=QUANTILES):
  """Quantiles of the per-face backdoor error (degrees): its CDF, for every face."""
  return np.quantile(error_deg(backdoor_pred, targets), quantiles)
