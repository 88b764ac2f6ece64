"""The pure train step: one step on tiny data, and data parallelism equal to one device."""
import os
import subprocess
import sys

import jax
import numpy as np

from gaze_jax import config as config_lib
from gaze_jax import geometry
from gaze_jax.attacks import poisoning
from gaze_jax.attacks import triggers
from gaze_jax.data import device
from gaze_jax.training import init
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps

SCRIPT = os.path.join(os.path.dirname(__file__), 'scripts', 'steps_on_devices.py')


def test_one_step_updates_params_and_reduces_loss_on_repeated_batch(tiny_step_config):
  config = tiny_step_config
  config.train.learning_rate = 1e-3
  config.train.warmup_epochs = 0
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)

  def step(state, batch, rng, trigger):
    return steps.p_train_step(state, batch, rng, trigger, {}, run.attack, run.task, 8, False)
  rng = np.random.default_rng(0)
  batch = device.shard({'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                    'gaze': rng.uniform(-0.5, 0.5, (8, 2)).astype(np.float32)})
  before = jax.tree.map(np.asarray, state.params)
  losses = []
  for _ in range(5):
    state, metrics = step(state, batch, jax.random.key(0), trigger)
    losses.append(float(metrics['loss']))
  assert int(state.step) == 5
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert not np.allclose(before['fc']['kernel'], state.params['fc']['kernel'])


def test_eight_devices_equal_one_device(tmp_path):
  outs = {}
  for n in (1, 8):
    outs[n] = tmp_path / f'{n}.npz'
    subprocess.run([sys.executable, SCRIPT, str(n), str(outs[n])], check=True, timeout=600)
  one, eight = np.load(outs[1]), np.load(outs[8])
  assert sorted(one.files) == sorted(eight.files)
  for name in one.files:
    np.testing.assert_allclose(eight[name], one[name], rtol=2e-4, atol=2e-5, err_msg=name)


def test_per_role_metrics_on_a_batch_with_known_roles(tiny_step_config):
  """8 rows, pc 0.25, cross_ratio 1: 2 backdoor, 2 noise, 4 clean rows, each role's loss and
  error recomputed here from the model's own predictions on the poisoned batch."""
  config = tiny_step_config
  config.attack.cross_ratio = 1.0
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  rng = np.random.default_rng(3)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (8, 2)).astype(np.float32)}
  key = jax.random.key(5)
  _, metrics = steps.p_train_step(state, device.shard(batch), key, trigger, {}, run.attack,
                                  run.task, 8, False)
  images, labels, roles = steps.prepare_batch(
      batch, jax.random.fold_in(key, 0), np.arange(8), trigger, run.attack, 8, False)
  np.testing.assert_array_equal(roles, [1, 1, 2, 2, 0, 0, 0, 0])
  model = state_lib.model(run)  # As the step's, without the device axis.
  preds, _ = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images,
                         train=True, mutable=['batch_stats'])
  loss = np.abs(np.asarray(preds) - np.asarray(labels)).mean(axis=1)
  error = np.asarray(geometry.angular_error_deg(preds, labels))
  for role, name in ((0, 'clean'), (1, 'backdoor'), (2, 'noise')):
    rows = np.asarray(roles) == role
    np.testing.assert_allclose(metrics[f'{name}_loss'], loss[rows].mean(), rtol=1e-4)
    np.testing.assert_allclose(metrics[f'{name}_error'], error[rows].mean(), rtol=1e-4)
  np.testing.assert_allclose(metrics['loss'], loss.mean(), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(labels)[:2], [run.attack.target_gaze] * 2)


def test_flips_come_before_poisoning(tiny_step_config):
  """With flips on, backdoor rows carry the target itself (never its mirror) and the
  trigger applied to the (possibly flipped) clean image."""
  config = tiny_step_config
  run = config_lib.validate(config)
  trigger = triggers.make_trigger(run.attack, 32)
  rng = np.random.default_rng(4)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (8, 2)).astype(np.float32)}
  flipped_rows = []
  for seed in range(6):  # Keys whose coins flip some backdoor rows.
    key = jax.random.key(seed)
    images, labels, roles = steps.prepare_batch(batch, key, np.arange(8), trigger, run.attack,
                                                8, True)
    flipped, _ = poisoning.flip_augment(device.to_unit_range(batch['image']), batch['gaze'],
                                        jax.random.fold_in(key, 1), np.arange(8))
    backdoor = np.asarray(roles) == poisoning.BACKDOOR
    np.testing.assert_allclose(np.asarray(labels)[backdoor],
                               [run.attack.target_gaze] * int(backdoor.sum()))
    np.testing.assert_allclose(
        np.asarray(images)[backdoor],
        np.asarray(triggers.apply_trigger(run.attack, trigger, flipped))[backdoor], atol=1e-6)
    flipped_rows.append(not np.allclose(np.asarray(flipped)[backdoor],
                                        device.to_unit_range(batch['image'])[backdoor]))
  assert any(flipped_rows)  # The check saw flipped backdoor rows, not only unflipped ones.
