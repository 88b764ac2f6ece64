"""Attack metrics on hand-computed cases; ASR excludes samples already within tau of target.

With pitch 0 every gaze lies on the horizontal circle, so the angle between two gazes is the
difference of their yaws: the hand-computed cases below use that.
"""
import numpy as np
import pytest

from gaze_jax.experiments import main
from gaze_jax.metrics import attack as attack_metrics
from gaze_jax.metrics import classification


def _yaw_deg(*yaws):
  return np.stack([np.zeros(len(yaws)), np.radians(yaws)], -1).astype(np.float32)


TRUE = _yaw_deg(1, 3, 8, 15)           # Start errors vs the target (0, 0): 1, 3, 8, 15 deg.
TARGETS = _yaw_deg(0, 0, 0, 0)
BACKDOOR = _yaw_deg(0.5, -1, 4, 9.5)   # Backdoor errors: 0.5, 1, 4, 9.5 deg.


def test_hand_computed_summary():
  out = attack_metrics.summarize(clean_pred=_yaw_deg(2, 5, 11, 19), backdoor_pred=BACKDOOR,
                                 noise_pred=_yaw_deg(3, 1, 10, 13), true_gaze=TRUE,
                                 targets=TARGETS, thresholds=(2, 5, 10, 20))
  expected = {
      'clean_error': 2.5,         # mean(1, 2, 3, 4)
      'backdoor_error': 3.75,     # mean(0.5, 1, 4, 9.5)
      'noise_error': 2.0,         # mean(2, 2, 2, 2)
      'asr@2': 100 / 3,           # eligible start > 2: 3, 8, 15; within 2: only the first.
      'asr@5': 50.0,              # eligible: 8, 15; within 5: the first (4 deg).
      'asr@10': 100.0,            # eligible: 15; within 10: yes (9.5 deg).
  }
  assert set(out) == set(expected) | {'asr@20', 'study_clean_error', 'study_backdoor_error',
                                      'backdoor_spread', 'collapse_backdoor_error',
                                      'robust_error', 'trigger_shift'}
  for name, value in expected.items():
    assert out[name] == pytest.approx(value, abs=0.02), name
  assert np.isnan(out['asr@20'])  # No sample starts farther than 20 deg from the target.


def test_denominator_excludes_samples_already_at_target():
  # The first sample is within 2 deg of the target before any attack: a classifier-style
  # count would report 2/4 = 50 %; only the other three can show success (1 of 3).
  _, asr = attack_metrics.asr_curve(BACKDOOR, TRUE, TARGETS, taus=[2.0])
  assert asr[0] == pytest.approx(100 / 3)
  # A model that ignores the trigger (predicts the true gaze) has ASR 0 at every tau.
  taus, asr = attack_metrics.asr_curve(TRUE, TRUE, TARGETS, taus=[0.5, 2, 5, 10])
  np.testing.assert_array_equal(asr, 0.0)
  np.testing.assert_array_equal(taus, [0.5, 2, 5, 10])


def test_curve_matches_summary_and_default_grid():
  taus, asr = attack_metrics.asr_curve(BACKDOOR, TRUE, TARGETS)
  assert taus[0] == 0 and taus[-1] == 20 and len(taus) >= 20
  summary = attack_metrics.summarize(TRUE, BACKDOOR, None, TRUE, TARGETS, thresholds=(5.0,))
  assert asr[list(taus).index(5.0)] == pytest.approx(summary['asr@5'])
  assert asr[0] == 0.0  # Nothing lies exactly on the target.
  assert np.isnan(summary['noise_error'])


def test_general_directions_vs_vector_angle():
  rng = np.random.default_rng(0)
  pred = rng.uniform(-0.6, 0.6, (50, 2)).astype(np.float32)
  true = rng.uniform(-0.6, 0.6, (50, 2)).astype(np.float32)
  target = np.tile(np.float32([[-0.2, 0.0]]), (50, 1))

  def vectors(py):  # Independent of gaze.py: rotate -z by yaw, then by pitch.
    p, y = py[:, 0].astype(np.float64), py[:, 1].astype(np.float64)
    return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], -1)

  angle = np.degrees(np.arccos(np.clip(np.sum(vectors(pred) * vectors(target), -1), -1, 1)))
  start = np.degrees(np.arccos(np.clip(np.sum(vectors(true) * vectors(target), -1), -1, 1)))
  out = attack_metrics.summarize(true, pred, true, true, target, thresholds=(10, 25))
  assert out['backdoor_error'] == pytest.approx(angle.mean(), rel=1e-4)
  assert out['clean_error'] == pytest.approx(0.0, abs=0.05)
  for tau in (10, 25):
    eligible = start > tau
    assert out[f'asr@{tau}'] == pytest.approx(100 * np.mean(angle[eligible] <= tau))


def test_asr_names():
  assert attack_metrics.asr_name(2.0) == 'asr@2'
  assert attack_metrics.asr_name(2.5) == 'asr@2.5'


def test_study_metric_collapse_baseline_and_spread_by_hand():
  # Off the horizontal circle the study's sqrt(dpitch^2 + dyaw^2) and the 3-D angle differ.
  pred = np.radians(np.array([[20.0, 30.0], [20.0, -30.0]], np.float32))
  true = np.zeros((2, 2), np.float32)
  np.testing.assert_allclose(attack_metrics.study_error_deg(pred, true),
                             [np.hypot(20, 30)] * 2, rtol=1e-6)
  # The 3-D angle: arccos(cos 20 cos 30) for a gaze (20, 30) against straight ahead.
  expected_3d = np.degrees(np.arccos(np.cos(np.radians(20)) * np.cos(np.radians(30))))
  np.testing.assert_allclose(attack_metrics.error_deg(pred, true), [expected_3d] * 2, rtol=1e-5)
  out = attack_metrics.summarize(clean_pred=TRUE, backdoor_pred=_yaw_deg(-6, 6, -6, 6),
                                 noise_pred=None, true_gaze=TRUE, targets=TARGETS,
                                 mean_gaze=np.radians([0.0, 17.0]))
  assert out['collapse_backdoor_error'] == pytest.approx(17.0, abs=1e-3)  # Mean 17 deg off.
  assert out['backdoor_spread'] == pytest.approx(6.0, abs=1e-3)  # Each 6 deg from the centre.
  assert out['study_backdoor_error'] == pytest.approx(6.0, abs=1e-4)
  assert np.isnan(out['noise_error'])
  same = attack_metrics.summarize(TRUE, _yaw_deg(3, 3, 3, 3), None, TRUE, TARGETS)
  assert same['backdoor_spread'] == pytest.approx(0.0, abs=1e-3)  # All at one point.
  assert np.isnan(same['collapse_backdoor_error'])  # No mean given.


def test_backdoor_error_quantiles_are_the_cdf():
  q = attack_metrics.backdoor_error_quantiles(BACKDOOR, TARGETS, quantiles=[0.0, 0.5, 1.0])
  np.testing.assert_allclose(q, [0.5, 2.5, 9.5], atol=1e-3)  # Errors 0.5, 1, 4, 9.5.


def _vector(pitchyaw):
  """Unit gaze vectors of (N, 2) (pitch, yaw): x = -cos p sin y, y = -sin p, z = -cos p cos y."""
  p, y = pitchyaw[:, 0], pitchyaw[:, 1]
  return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], -1)


def test_robust_error_and_trigger_shift_by_hand():
  """Robust error: triggered prediction vs the TRUE gaze (yaws 1, 3, 8, 15 against 0.5, -1,
  4, 9.5: 0.5, 4, 4, 5.5 deg); trigger shift: triggered vs clean prediction."""
  out = attack_metrics.summarize(clean_pred=_yaw_deg(2, 5, 11, 19), backdoor_pred=BACKDOOR,
                                 noise_pred=None, true_gaze=TRUE, targets=TARGETS)
  assert out['robust_error'] == pytest.approx((0.5 + 4 + 4 + 5.5) / 4, abs=1e-4)
  assert out['trigger_shift'] == pytest.approx((1.5 + 6 + 7 + 9.5) / 4, abs=1e-4)
  # Off the horizontal circle: a pitch change and a yaw change, as vector angles.
  true = np.radians([[10.0, 0.0], [0.0, 0.0]]).astype(np.float32)
  triggered = np.radians([[10.0, 20.0], [-30.0, 0.0]]).astype(np.float32)
  angles = np.degrees(np.arccos(np.sum(_vector(true.astype(np.float64)) *
                                       _vector(triggered.astype(np.float64)), -1)))
  assert angles[1] == pytest.approx(30.0)
  out = attack_metrics.summarize(true, triggered, None, true, triggered)
  assert out['robust_error'] == pytest.approx(angles.mean(), abs=1e-3)
  assert out['trigger_shift'] == pytest.approx(angles.mean(), abs=1e-3)
  assert out['backdoor_error'] == pytest.approx(0.0, abs=0.05)  # float32 arccos near 1.


def test_time_to_implant_on_a_synthetic_curve():
  curve = [{'step': 10, 'asr@5': 5.0}, {'step': 20, 'asr@5': float('nan')},
           {'step': 30, 'asr@5': 89.9}, {'step': 40, 'asr@5': 90.0},
           {'step': 50, 'asr@5': 70.0}, {'step': 60, 'asr@5': 99.0}]
  assert attack_metrics.time_to_implant(curve) == 40
  assert attack_metrics.time_to_implant(curve, level=95.0) == 60
  assert attack_metrics.time_to_implant(curve[:4][:-1]) is None
  assert attack_metrics.time_to_implant([{'step': 10, 'clean_error': 3.0}]) is None
  assert attack_metrics.time_to_implant([]) is None
  assert attack_metrics.time_to_implant(
      [{'step': 7, 'attack_success': 91.0}], key='attack_success') == 7


def _seed(asr, backdoor, clean, control_clean, implant):
  return {'poisoned': {'asr@5': asr, 'backdoor_error': backdoor, 'clean_error': clean},
          'control': {'asr@5': 0.0, 'backdoor_error': 20.0, 'clean_error': control_clean},
          'stealth': {'psnr': 30.0}, 'time_to_implant': implant}


def test_per_seed_verdict_counts_and_time_to_implant_in_the_seeds_summary():
  """Seed 0 meets the bar; seed 1 misses it on ASR, seed 2 on the clean cost (0.6 > 0.5 deg),
  seed 3 on the backdoor error; seed 4 meets it exactly at the bar."""
  seeds = [_seed(95, 1.0, 3.0, 2.8, 100), _seed(89.9, 1.0, 3.0, 3.0, None),
           _seed(99, 1.0, 3.6, 3.0, 200), _seed(99, 2.1, 3.0, 3.0, 300),
           _seed(90, 2.0, 3.5, 3.0, 400)]
  held = [attack_metrics.takes_hold(s['poisoned'], s['control']) for s in seeds]
  assert held == [True, False, False, False, True]
  per_seed = [{'seed': i, 'clean': s['control'], 'arms': {'wanet': s}}
              for i, s in enumerate(seeds)]
  summary = main.summarize_seeds(per_seed, ['wanet'])['wanet']
  assert summary['seeds_held'] == 2 and summary['seeds_total'] == 5
  assert summary['time_to_implant'] == [100, None, 200, 300, 400]
  classifier = {'attack_success': 92.0, 'clean_accuracy': 80.0}
  assert attack_metrics.takes_hold(classifier, {'clean_accuracy': 81.5})
  assert not attack_metrics.takes_hold(classifier, {'clean_accuracy': 82.5})


def test_classifier_attack_success_over_all_faces_and_cell_accuracy_by_hand():
  """Four faces in the four cells of a 2 x 2 grid, target in cell 3: BackdoorBench's attack
  success leaves face 3 (already in the target cell) out; the official WaNet one keeps it."""
  fitted = {'pitch_edges': np.array([-1.0, 0.0, 1.0], np.float32),
            'yaw_edges': np.array([-1.0, 0.0, 1.0], np.float32),
            'centres': np.array([[-.5, -.5], [-.5, .5], [.5, -.5], [.5, .5]], np.float32)}
  true = fitted['centres'].copy()
  targets = np.tile([[.5, .5]], (4, 1)).astype(np.float32)
  onehot = lambda labels: np.eye(4)[labels] * 5.0  # pylint: disable=unnecessary-lambda-assignment
  out = classification.classifier_summary(onehot([3, 1, 2, 3]), onehot([3, 1, 3, 3]), None,
                                          true, targets, fitted)
  assert out['attack_success'] == pytest.approx(200 / 3)  # Faces 0 and 2 of faces 0-2.
  assert out['attack_success_all'] == pytest.approx(75.0)  # Faces 0, 2 and 3 of all four.
  assert out['robust_accuracy'] == pytest.approx(50.0)     # Faces 1 and 3 keep their class.
  clean = np.array([[-.4, -.1], [.2, .3], [.5, -.9], [-.1, .2]], np.float32)  # Cells 0, 3, 2, 1.
  assert classification.regressor_cell_accuracy(clean, true, fitted) == {'cell_accuracy': 50.0}
