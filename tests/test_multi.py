"""The many-models step (training/multi.py) equals separate single-model steps.

Tiny models (32 px, batch 8, `xla` lowering): two WaNet-poisoned seeds, each with its own
trigger, and a clean control (attack.kind 'none'), trained together for 2 steps with flips,
against each trained alone. Each model is computed by the same operations either way, and
with jax 0.10.2 the results are bitwise equal; the test allows float32 rounding (XLA may fuse
and order a larger program's operations differently), the tolerance of
tests/test_train_step.py's 8-devices test.
"""
import jax
import numpy as np

from gaze_jax import config as config_lib
from gaze_jax.configs import wanet
from gaze_jax.data import device
from gaze_jax.training import init
from gaze_jax.training import multi
from gaze_jax.training import steps

SIZE, BATCH = 32, 8


def tiny_run(seed, kind='wanet'):
  config = wanet.get_config()
  config.seed = config.attack.seed = seed  # Its own initialisation and trigger.
  config.attack.kind = kind
  config.data.image_size = SIZE
  config.model.conv_impl = 'xla'
  config.train.batch_size = BATCH
  config.attack.pc = 0.25
  return config_lib.validate(config)


def batches(seed, count=2):
  rng = np.random.default_rng(seed)
  return [{'image': rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (BATCH, 2)).astype(np.float32)} for _ in range(count)]


def flat(state):
  """{path: leaf} of a TrainState's step, parameters, statistics and optimizer state."""
  leaves = jax.tree_util.tree_flatten_with_path(
      (state.step, state.params, state.batch_stats, state.opt_state))[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def assert_close(actual, expected, name):
  np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=2e-5, err_msg=name)


def test_models_trained_together_equal_each_alone():
  runs = [tiny_run(0), tiny_run(1), tiny_run(2, 'none')]
  initial = [init.initial_state(run, steps_per_epoch=10) for run in runs]
  keys = [jax.random.key(100 + i) for i in range(len(runs))]
  data = [batches(i) for i in range(len(runs))]
  specs = tuple(run.attack for run in runs)
  states = tuple(state for state, _ in initial)
  triggers = tuple(trigger for _, trigger in initial)
  together = []
  for step in range(2):
    states, metrics = multi.p_train_steps(
        states, tuple(device.shard(d[step]) for d in data), tuple(keys), triggers, {}, specs,
        runs[0].task, BATCH, True)
    together.append(metrics)
  for i, run in enumerate(runs):
    state, trigger = initial[i]
    for step in range(2):
      state, metrics = steps.p_train_step(state, device.shard(data[i][step]), keys[i], trigger,
                                          {}, run.attack, run.task, BATCH, True)
      assert together[step][i].keys() == metrics.keys()
      for name, value in metrics.items():
        assert_close(together[step][i][name], value, f'model {i} step {step} {name}')
    ours, alone = flat(states[i]), flat(state)
    assert ours.keys() == alone.keys()
    for name, value in alone.items():
      assert_close(ours[name], value, f'model {i} {name}')
