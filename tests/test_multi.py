"""The many-models step (training/multi.py) equals separate single-model steps.

Tiny models (32 px, batch 8, `xla` lowering) and SGD: SGD is linear in the gradient, while
Adam's first steps are lr * sign(g), which turns float rounding in near-zero gradients
(zero-initialised BatchNorm scales) into 2 * lr jumps. vmap turns convolutions into grouped
ones and matmuls into batched ones, which XLA may sum in another order, so the models agree
to float tolerance, not bitwise: the tolerance of tests/test_train_step.py's 8-devices test.
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


def tiny_config(seed, kind='wanet'):
  config = wanet.get_config()
  config.seed = seed
  config.attack.seed = seed  # Each model its own trigger too.
  config.attack.kind = kind
  config.data.image_size = SIZE
  config.model.conv_impl = 'xla'
  config.train.batch_size = BATCH
  config.attack.pc = 0.25
  config.train.optimizer = 'sgd'
  config.train.learning_rate = 0.1
  config.train.warmup_epochs = 0
  return config


def batches(seed, count=2):
  rng = np.random.default_rng(seed)
  return [{'image': rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (BATCH, 2)).astype(np.float32)} for _ in range(count)]


def flat(state):
  """{path: leaf} of a TrainState's parameters, statistics, optimizer state and step."""
  leaves = jax.tree_util.tree_flatten_with_path(
      (state.step, state.params, state.batch_stats, state.opt_state))[0]
  return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def assert_close(actual, expected, name):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=2e-4, atol=2e-5,
                             err_msg=name)


def check_models_match_alone(runs, poisoned, flip=False):
  """Trains `runs` together (the first run's specs) for 2 steps and each alone; compares."""
  shared = runs[0]
  alone, keys, data = [], [], []
  for i, run in enumerate(runs):
    state, trigger = init.initial_state(run, steps_per_epoch=10)
    alone.append((state, trigger))
    keys.append(jax.random.key(100 + i))
    data.append(batches(i))
  trigger = alone[0][1]  # The poisoned models' trigger, unused by a control.
  stacked = multi.stack([s for s, _ in alone])
  triggers = multi.stack([t or trigger for _, t in alone])
  together = []
  for step in range(2):
    stacked, metrics = multi.p_train_steps(
        stacked, multi.stack([device.shard(d[step]) for d in data]), multi.stack(keys),
        triggers, {}, np.asarray(poisoned), shared.attack, shared.task, BATCH, flip)
    together.append(metrics)
  for i, run in enumerate(runs):
    state, trigger = alone[i]
    for step in range(2):
      state, metrics = steps.p_train_step(state, device.shard(data[i][step]), keys[i], trigger,
                                          {}, run.attack, run.task, BATCH, flip)
      for name, value in metrics.items():
        assert_close(together[step][name][i], value, f'model {i} step {step} {name}')
    ours = flat(multi.unstack(stacked, i))
    assert ours.keys() == flat(state).keys()
    for name, value in flat(state).items():
      assert_close(ours[name], value, f'model {i} {name}')


def test_seeds_and_a_clean_control_trained_together_equal_each_alone():
  """Two poisoned seeds and a clean control (attack.kind 'none' alone; the poisoned spec
  with its flag off together), with flips."""
  runs = [config_lib.validate(tiny_config(0)), config_lib.validate(tiny_config(1)),
          config_lib.validate(tiny_config(2, 'none'))]
  check_models_match_alone(runs, poisoned=[True, True, False], flip=True)
