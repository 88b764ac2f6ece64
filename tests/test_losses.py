"""The regression losses (train.loss: L1, squared error, Huber) against NumPy by hand, in the
loss function the train step calls and through one real train step."""
import math

import jax
import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.data import device
from gaze_jax.errors import ConfigError
from gaze_jax.training import init
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps

DELTA = math.radians(2.0)
PRED = np.array([[0.01, -0.10], [0.30, 0.02], [-0.20, 0.50]], np.float32)
LABELS = np.array([[0.0, 0.0], [0.25, 0.0], [0.30, 0.49]], np.float32)


def _reference(diff, loss, delta=DELTA):
  """The per-angle loss of differences `diff`, written out from each loss's definition."""
  a = np.abs(np.asarray(diff, np.float64))
  if loss == 'l1':
    return a
  if loss == 'l2':
    return a ** 2
  return np.where(a <= delta, 0.5 * a ** 2, delta * (a - 0.5 * delta))


def test_huber_reference_by_hand():
  """The reference itself on numbers worked on paper (delta 2 deg = 0.0349 rad)."""
  d = DELTA
  np.testing.assert_allclose(_reference([0.01, 0.1], 'huber'),
                             [0.5 * 0.01 ** 2, d * 0.1 - d * d / 2], rtol=1e-12)


@pytest.mark.parametrize('loss', ['l1', 'l2', 'huber'])
def test_loss_per_angle_and_per_sample_against_numpy(loss):
  task = config_lib.TaskSpec(loss=loss, huber_delta=DELTA)
  expected = _reference(PRED - LABELS, loss)
  np.testing.assert_allclose(steps.regression_loss(PRED, LABELS, task), expected, rtol=1e-5,
                             atol=1e-9)
  per_sample, metrics = steps._losses(PRED, LABELS, {}, task)  # pylint: disable=protected-access
  np.testing.assert_allclose(per_sample, expected.mean(axis=1), rtol=1e-5, atol=1e-9)
  assert metrics['error'].shape == (3,)
  # The three losses differ on these numbers: each option really changes the loss.
  others = {o: _reference(PRED - LABELS, o).mean() for o in ('l1', 'l2', 'huber') if o != loss}
  assert all(abs(v - expected.mean()) > 1e-3 for v in others.values())


def test_huber_delta_is_configured_in_degrees(tiny_step_config):
  config = tiny_step_config
  config.train.loss = 'huber'
  config.train.huber_delta_deg = 5.0
  run = config_lib.validate(config)
  assert run.task.loss == 'huber' and run.task.huber_delta == pytest.approx(math.radians(5.0))
  for field, value in (('loss', 'mse'), ('huber_delta_deg', 0.0)):
    bad = config_lib.apply_overrides(config, {f'train.{field}': value})
    with pytest.raises(ConfigError, match=f'train.{field}'):
      config_lib.validate(bad)


def test_train_step_loss_is_the_configured_loss(tiny_step_config):
  """One clean step's reported loss against NumPy of the model's own outputs on the batch
  (Huber, the loss that is furthest from the default L1)."""
  loss = 'huber'
  config = tiny_step_config
  config.attack.kind = 'none'
  config.train.loss = loss
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  rng = np.random.default_rng(1)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (8, 2)).astype(np.float32)}
  _, sums = steps.make_train_step(run)(state, device.shard(batch), jax.random.key(0), trigger,
                                       {})
  metrics = steps.interval_means(jax.device_get(sums))
  preds, _ = state_lib.model(run).apply(
      {'params': state.params, 'batch_stats': state.batch_stats},
      device.to_unit_range(batch['image']), train=True, mutable=['batch_stats'])
  expected = _reference(np.asarray(preds) - batch['gaze'], loss)
  np.testing.assert_allclose(metrics['loss'], expected.mean(), rtol=1e-4)
  np.testing.assert_allclose(metrics['clean_loss'], expected.mean(), rtol=1e-4)
