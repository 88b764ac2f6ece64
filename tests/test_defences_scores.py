"""Detection scores and the defence effectiveness rating against brute force and by hand."""
import numpy as np
import pytest
from scipy import stats

from gaze_jax.defences import scores
from gaze_jax.errors import UserError
from gaze_jax.metrics import attack


def brute_auroc(neg, pos):
  """P(positive > negative) + 1/2 P(tie), counted over every pair."""
  wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
  return wins / (len(pos) * len(neg))


@pytest.mark.parametrize('seed', range(5))
def test_auroc_is_the_pair_count_with_ties(seed):
  rng = np.random.default_rng(seed)
  neg = rng.integers(0, 6, size=rng.integers(1, 30)).astype(float)  # Many ties.
  pos = rng.integers(2, 8, size=rng.integers(1, 30)).astype(float)
  assert scores.auroc(neg, pos) == pytest.approx(brute_auroc(neg, pos), abs=1e-12)


def test_auroc_ends_and_middle():
  assert scores.auroc([0, 1, 2], [3, 4]) == 1.0
  assert scores.auroc([3, 4], [0, 1, 2]) == 0.0
  assert scores.auroc([1, 1], [1, 1, 1]) == 0.5


def brute_fpr(neg, pos, rate):
  """The share of negatives at or above the highest threshold (among all scores) that
  flags at least `rate` of the positives."""
  best = -np.inf
  for t in np.concatenate([neg, pos]):
    if np.mean(pos >= t) >= rate:
      best = max(best, t)
  return 100.0 * np.mean(neg >= best)


@pytest.mark.parametrize('seed', range(5))
def test_fpr_at_95_against_a_threshold_scan(seed):
  rng = np.random.default_rng(seed)
  neg, pos = rng.normal(0, 1, 40), rng.normal(1, 1, rng.integers(1, 60))
  assert scores.fpr_at_detection(neg, pos) == pytest.approx(brute_fpr(neg, pos, 0.95))


def test_detection_refuses_empty_or_nan_scores():
  with pytest.raises(UserError, match='both groups'):
    scores.detection([], [1.0])
  with pytest.raises(UserError, match='finite'):
    scores.detection([np.nan], [1.0])


def test_spread_per_row_is_metrics_spread_row_by_row():
  preds = np.random.default_rng(0).normal(0, 0.3, (4, 7, 2))
  expected = [attack.spread_deg(row) for row in preds]
  np.testing.assert_allclose(scores.spread_per_row(preds), expected, rtol=1e-5)  # float32
  assert scores.spread_per_row(np.broadcast_to([0.1, -0.2], (2, 5, 2))) == pytest.approx(0)


def test_entropy_per_row_is_the_mean_shannon_entropy():
  logits = np.random.default_rng(1).normal(0, 2, (3, 5, 4))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = stats.entropy(probs, axis=-1).mean(axis=1)
  np.testing.assert_allclose(scores.entropy_per_row(logits), expected, rtol=1e-9)


def test_effectiveness_rating_by_hand():
  before = {'asr': 90.0, 'acc': 80.0}
  assert scores.effectiveness(before, {'asr': 10.0, 'acc': 80.0}) == pytest.approx(0.9)
  assert scores.effectiveness(before, {'asr': 90.0, 'acc': 80.0}) == 0.5
  assert scores.effectiveness(before, {'asr': 0.0, 'acc': 0.0}) == pytest.approx(0.55)
  assert scores.effectiveness(before, {'asr': 95.0, 'acc': 85.0}) == 0.5  # No credit.


def test_anomaly_index_is_neural_cleanses_by_hand():
  # Median 10, absolute deviations [2, 0, 1, 0, 80] -> MAD 1; (90 - 10) / (1.4826 * 1).
  assert scores.anomaly_index([8, 10, 11, 10, 90]) == pytest.approx(80 / 1.4826, rel=1e-4)
  assert scores.anomaly_index([10, 12, 14, 16]) == pytest.approx(3 / (1.4826 * 2), rel=1e-4)
  assert scores.anomaly_index([5, 5, 5]) == 0.0  # Nothing stands out.
  assert scores.anomaly_index([5, 5, 5, 9]) == float('inf')  # No spread but one outlier.
  with pytest.raises(UserError, match='3 or more'):
    scores.anomaly_index([1, 2])
