"""The binned regressor (task.kind 'binned', L2CS-Net's head): per-angle equal-count bins,
the softmax expectation as the gaze, its loss against NumPy by hand, one learning step, and
the regressor's metrics applied to its expectation."""
import math

import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.data import classes
from gaze_jax.errors import ConfigError
from gaze_jax.metrics import attack
from gaze_jax.training import evaluate
from gaze_jax.training import init
from gaze_jax.training import steps


def _gaze(seed=0, n=900):
  rng = np.random.default_rng(seed)
  return np.stack([rng.uniform(-0.6, 0.3, n), rng.normal(0.0, 0.25, n)], -1)


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize('bins', [3, 6, 12, 30])
def test_fit_per_angle_bins_hold_equal_counts_and_their_means(bins):
  gaze = _gaze()
  fitted = classes.fit(gaze, bins)
  index = np.asarray(classes.bin_index(gaze, fitted))
  for axis, name in ((0, 'pitch'), (1, 'yaw')):
    reference = np.digitize(gaze[:, axis], fitted[f'{name}_edges'][1:-1])
    np.testing.assert_array_equal(index[:, axis], reference)
    np.testing.assert_array_equal(np.bincount(reference, minlength=bins),
                                  [900 // bins] * bins)
    np.testing.assert_allclose(fitted[f'{name}_centres'],
                               [gaze[reference == b, axis].mean() for b in range(bins)],
                               rtol=1e-5, atol=1e-7)
  assert fitted['centres'].shape == (bins * bins, 2) and classes.num_classes(fitted) == bins ** 2


def test_empty_bin_centre_is_its_middle():
  """Tied training values leave a bin empty: its centre is the middle of its edges."""
  gaze = np.array([[0.0, 0.0]] * 6 + [[1.0, 1.0]] * 3, np.float64)
  fitted = classes.fit(gaze, 3)
  index = np.digitize(gaze[:, 0], fitted['pitch_edges'][1:-1])
  assert len(set(index)) < 3  # Some pitch bin is empty.
  for b in range(3):
    members = gaze[index == b, 0]
    middle = (fitted['pitch_edges'][b] + fitted['pitch_edges'][b + 1]) / 2
    expected = members.mean() if len(members) else middle
    assert fitted['pitch_centres'][b] == pytest.approx(expected)


def test_expectation_of_a_known_softmax_by_hand():
  fitted = {'pitch_centres': np.array([-0.3, 0.0, 0.4], np.float32),
            'yaw_centres': np.array([-0.2, 0.1, 0.7], np.float32)}
  # Pitch probabilities 0.2, 0.3, 0.5; yaw uniform (equal logits, any offset).
  outputs = np.concatenate([np.log([0.2, 0.3, 0.5]), [4.0, 4.0, 4.0]])[None].astype(np.float32)
  gaze = np.asarray(classes.expected_gaze(outputs, fitted))
  np.testing.assert_allclose(gaze, [[0.2 * -0.3 + 0.3 * 0.0 + 0.5 * 0.4,
                                     (-0.2 + 0.1 + 0.7) / 3]], rtol=1e-6)


@pytest.mark.parametrize('weight', [0.0, 1.0, 2.5])
def test_binned_loss_is_cross_entropy_plus_weighted_l1_by_hand(weight):
  bins = 6
  fitted = classes.fit(_gaze(), bins)
  rng = np.random.default_rng(2)
  outputs = rng.normal(0, 2, (5, 2 * bins)).astype(np.float32)
  labels = _gaze(seed=3, n=5).astype(np.float32)
  labels[0] = (2.0, -2.0)  # Beyond the training range: the outer bins.
  task = config_lib.TaskSpec(kind='binned', bins=bins, binned_weight=weight, loss='l1')
  per_sample, pred = steps.binned_losses(outputs, labels, fitted, task)

  logits = outputs.astype(np.float64).reshape(5, 2, bins)  # Pitch's bins first, then yaw's.
  probs = _softmax(logits)
  expected_ce, expected_l1 = np.zeros(5), np.zeros(5)
  for a, name in enumerate(('pitch', 'yaw')):
    target = np.digitize(labels[:, a], fitted[f'{name}_edges'][1:-1])
    expected_ce += -np.log(probs[np.arange(5), a, target]) / 2
    expectation = probs[:, a] @ fitted[f'{name}_centres'].astype(np.float64)
    expected_l1 += np.abs(expectation - labels[:, a]) / 2
  assert np.digitize(labels[0], fitted['pitch_edges'][1:-1])[0] == bins - 1
  np.testing.assert_allclose(per_sample, expected_ce + weight * expected_l1, rtol=1e-5)
  np.testing.assert_allclose(pred, np.stack([probs[:, a] @ fitted[f'{n}_centres']
                                             for a, n in enumerate(('pitch', 'yaw'))], -1),
                             rtol=1e-5)


def test_binned_task_in_the_config(tiny_step_config):
  config = tiny_step_config
  config.task.kind = 'binned'
  config.task.bins = 30
  run = config_lib.validate(config)
  assert run.task.outputs() == 60 and run.task.predicts_gaze()
  assert config_lib.TaskSpec(kind='classification', bins=30).outputs() == 900
  assert not config_lib.TaskSpec(kind='classification').predicts_gaze()
  for field, value in (('bins', 31), ('bins', 1), ('binned_weight', -1.0), ('kind', 'bins')):
    with pytest.raises(ConfigError, match=f'task.{field}'):
      config_lib.validate(config_lib.apply_overrides(config, {f'task.{field}': value}))


def test_one_binned_step_learns_a_repeated_batch(tiny_step_config, train_on_one_batch):
  config = tiny_step_config
  config.train.warmup_epochs = 0
  config.task.kind = 'binned'
  config.task.bins = 6
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  assert state.params['fc']['kernel'].shape == (512, 12)
  fitted = classes.fit(_gaze(2), 6)
  losses, metrics = train_on_one_batch(run, state, trigger, fitted,
                                       _gaze(1, 8).astype(np.float32))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert {'backdoor_error', 'clean_error', 'noise_error'} <= set(metrics)


def test_summary_scores_the_expectation_as_a_gaze():
  """evaluate.summarize on the binned head's logits: the regressor's metrics of the
  expectation computed here with NumPy."""
  bins = 3
  fitted = classes.fit(_gaze(), bins)
  rng = np.random.default_rng(4)
  logits = {k: rng.normal(0, 3, (6, 2 * bins)).astype(np.float32)
            for k in ('clean_pred', 'backdoor_pred', 'noise_pred')}
  true = _gaze(seed=5, n=6).astype(np.float32)
  target = np.tile([[-0.2, 0.35]], (6, 1)).astype(np.float32)
  preds = dict(logits, gaze=true, target=target)
  task = config_lib.TaskSpec(kind='binned', bins=bins)
  out = evaluate.summarize(preds, (5.0,), np.zeros(2), fitted, task)

  def expectation(x):
    p = _softmax(x.astype(np.float64).reshape(-1, 2, bins))
    return np.stack([p[:, 0] @ fitted['pitch_centres'], p[:, 1] @ fitted['yaw_centres']], -1)

  clean, backdoor = expectation(logits['clean_pred']), expectation(logits['backdoor_pred'])
  assert out['clean_error'] == pytest.approx(attack.error_deg(clean, true).mean(), rel=1e-5)
  assert out['backdoor_error'] == pytest.approx(attack.error_deg(backdoor, target).mean(),
                                                rel=1e-5)
  assert out['robust_error'] == pytest.approx(attack.error_deg(backdoor, true).mean(),
                                              rel=1e-5)
  assert {'asr@5', 'cell_asr', 'cell_accuracy', 'trigger_shift'} <= set(out)
  assert math.isfinite(out['noise_error'])
