"""The pure train step: one step on tiny data, and data parallelism equal to one device."""
import os
import subprocess
import sys

import jax
import numpy as np

from gaze_jax.configs import wanet
from gaze_jax import config as config_lib
from gaze_jax.data import device
from gaze_jax.training import init
from gaze_jax.training import steps

SCRIPT = os.path.join(os.path.dirname(__file__), 'scripts', 'steps_on_devices.py')


def tiny_config():
  config = wanet.get_config()
  config.data.image_size = 32
  config.model.conv_impl = 'xla'
  config.train.batch_size = 8
  config.attack.pc = 0.25
  return config


def test_one_step_updates_params_and_reduces_loss_on_repeated_batch():
  config = tiny_config()
  config.train.learning_rate = 1e-3
  config.train.warmup_epochs = 0
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)

  def step(state, batch, rng, trigger):
    return steps.p_train_step(state, batch, rng, trigger, run.attack, 8, False)
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
