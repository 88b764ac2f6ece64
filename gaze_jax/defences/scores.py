"""Scores of a defence: detection AUROC and FPR at 95 % detection, the spread and entropy
of perturbed predictions, Neural Cleanse's anomaly index and BackdoorBench's defence
effectiveness rating (host NumPy).

Detection scores are oriented so that HIGHER means "triggered" (or "backdoored"); a
detector whose natural statistic is low for triggered inputs (STRIP's spread or entropy)
is negated before it is scored.
"""
import numpy as np
from scipy import stats

from gaze_jax import geometry
from gaze_jax.errors import UserError

DETECTION_RATE = 0.95  # The share of triggered inputs a detector must catch for its FPR.


def _two_groups(negatives, positives):
  """Finite float64 1-D copies of the two score groups; UserError if one is empty or not
  finite."""
  neg, pos = (np.asarray(s, np.float64).ravel() for s in (negatives, positives))
  if not len(neg) or not len(pos):
    raise UserError(f'detection scores need both groups: got {len(neg)} clean and '
                    f'{len(pos)} triggered scores')
  if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
    raise UserError('detection scores must be finite numbers')
  return neg, pos


def auroc(negatives, positives):
  """Area under the ROC curve of scores (higher = positive), by the rank formula.

  AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives'
  ranks among all scores, ties given their average rank: the probability that a random
  positive scores above a random negative, a tie counting 1/2 (Mann-Whitney U).
  """
  neg, pos = _two_groups(negatives, positives)
  ranks = stats.rankdata(np.concatenate([neg, pos]))  # Average ranks for ties.
  r_pos = ranks[len(neg):].sum()
  return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fpr_at_detection(negatives, positives, rate=DETECTION_RATE):
  """The false-positive rate (%) at a fixed detection rate.

  False-positive rate (%) at the highest threshold that flags at least `rate` of the
  positives: the share of negatives scoring at or above the ceil(rate * n_pos)-th highest
  positive score."""
  neg, pos = _two_groups(negatives, positives)
  k = int(np.ceil(rate * len(pos)))
  threshold = np.sort(pos)[::-1][k - 1]
  return float(100.0 * np.mean(neg >= threshold))


def detection(negatives, positives):
  """{'auroc', 'fpr@95' (%), 'clean_mean', 'triggered_mean'} of oriented scores."""
  neg, pos = _two_groups(negatives, positives)
  return {'auroc': auroc(neg, pos), 'fpr@95': fpr_at_detection(neg, pos),
          'clean_mean': float(neg.mean()), 'triggered_mean': float(pos.mean()),
          'n_clean': len(neg), 'n_triggered': len(pos)}


def spread_per_row(preds):
  """The spread, in degrees, of each row's gaze predictions.

  (N,) spread in degrees of (N, M, 2) gaze predictions: for each row, the mean angle of
  its M predictions to their mean direction (metrics.attack.spread_deg, row by row)."""
  vectors = np.asarray(geometry.pitchyaw_to_vector(np.asarray(preds, np.float64)), np.float64)
  centre = vectors.mean(axis=1, keepdims=True)
  centre /= np.linalg.norm(centre, axis=-1, keepdims=True)
  cos = np.clip(np.sum(vectors * centre, axis=-1), -1.0, 1.0)
  return np.degrees(np.arccos(cos)).mean(axis=1)


def entropy_per_row(logits):
  """The mean STRIP entropy of each row's predictions.

  (N,) STRIP entropy of (N, M, C) logits: the mean over the M predictions of each row of
  the Shannon entropy (nats) of its softmax."""
  logits = np.asarray(logits, np.float64)
  logp = logits - logits.max(axis=-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(axis=-1, keepdims=True))
  return -(np.exp(logp) * logp).sum(axis=-1).mean(axis=1)


NC_THRESHOLD = 2.0  # Neural Cleanse flags a model whose anomaly index exceeds 2.


def anomaly_index(per_class):
  """Neural Cleanse's anomaly index of the most extreme class, oriented so high = backdoored.

  (max - median) / (1.4826 x median absolute deviation) over the per-class values, where a
  value is high for a class the network is easy to flip to (here the flip rate, %, of a
  budgeted trigger; Neural Cleanse uses the negated mask norm). A model scoring above
  NC_THRESHOLD is flagged; the score needs no population of clean models."""
  values = np.asarray(per_class, np.float64).ravel()
  if len(values) < 3 or not np.isfinite(values).all():
    raise UserError(f'the anomaly index needs 3 or more finite per-class values, got {values}')
  mad = stats.median_abs_deviation(values, scale='normal')  # x 1.4826: the normal's sd.
  excess = values.max() - np.median(values)
  if mad == 0:
    return float('inf') if excess > 0 else 0.0
  return float(excess / mad)


def effectiveness(before, after):
  """BackdoorBench's defence effectiveness rating (DER, in [0, 1]) and its parts.

  DER = (max(0, dASR) - max(0, dACC) + 1) / 2 with dASR = ASR_before - ASR_after and
  dACC = ACC_before - ACC_after as fractions (Wu et al., BackdoorBench, NeurIPS 2022 D&B):
  1 removes the whole backdoor at no clean cost, 0.5 changes nothing (or trades clean
  accuracy one for one against attack success), 0 costs all clean accuracy and removes
  nothing. `before` and `after` hold 'asr' and 'acc' in %: for the classifier its attack
  success and clean accuracy; for the regressor ASR@5° and the clean accuracy at 5° (the
  share of clean faces predicted within 5° of their true gaze).
  """
  d_asr = (before['asr'] - after['asr']) / 100.0
  d_acc = (before['acc'] - after['acc']) / 100.0
  return float((max(0.0, d_asr) - max(0.0, d_acc) + 1.0) / 2.0)
