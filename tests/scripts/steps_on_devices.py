"""Runs two WaNet-poisoned train steps on a fixed global batch; saves the parameters.

Usage: python steps_on_devices.py NUM_DEVICES OUT.npz (the device count is set through
XLA_FLAGS before JAX starts, so it must be a separate process).
"""
import os
import sys

os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={sys.argv[1]}'
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import traverse_util  # pylint: disable=g-import-not-at-top,wrong-import-position

from gaze_jax.configs import wanet  # pylint: disable=g-import-not-at-top,wrong-import-position
from gaze_jax import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from gaze_jax.data import device  # pylint: disable=g-import-not-at-top,wrong-import-position
from gaze_jax.training import init  # pylint: disable=g-import-not-at-top,wrong-import-position
from gaze_jax.training import steps  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  assert jax.local_device_count() == int(sys.argv[1])
  config = wanet.get_config()
  config.data.image_size = 32
  config.model.conv_impl = 'xla'
  config.train.batch_size = 16
  config.attack.pc = 0.25
  # SGD is linear in the gradient; Adam's first steps are lr * sign(g), which turns float
  # rounding in near-zero gradients (zero-initialised BatchNorm scales) into 2 * lr jumps.
  config.train.optimizer = 'sgd'
  config.train.learning_rate = 0.1
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)

  def step(state, batch, rng, trigger):
    return steps.make_train_step(run)(state, batch, rng, trigger, {})
  rng = np.random.default_rng(0)
  rngkey = jax.random.key(1)
  for _ in range(2):
    batch = {'image': rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             'gaze': rng.uniform(-0.5, 0.5, (16, 2)).astype(np.float32)}
    state, metrics = step(state, device.shard(batch), rngkey, trigger)
  flat = traverse_util.flatten_dict({'params': state.params, 'batch_stats': state.batch_stats},
                                    sep='/')
  np.savez(sys.argv[2], loss=np.asarray(metrics['loss']),
           **{k: np.asarray(v) for k, v in flat.items()})


if __name__ == '__main__':
  main()
