"""The pure train step: one step on tiny data, data parallelism equal to one device, and
bfloat16 compute equal to float32 to bfloat16's precision."""
import copy
import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax import geometry
from gaze_jax.attacks import poisoning
from gaze_jax.attacks import triggers
from gaze_jax.data import device
from gaze_jax.data import pipeline
from gaze_jax.training import evaluate
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
    return steps.make_train_step(run)(state, batch, rng, trigger, {})
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
  outs = {n: tmp_path / f'{n}.npz' for n in (1, 8)}
  procs = [subprocess.Popen([sys.executable, SCRIPT, str(n), str(out)])  # Side by side.
           for n, out in outs.items()]
  assert [p.wait(timeout=600) for p in procs] == [0, 0]
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
  _, sums = steps.make_train_step(run)(state, device.shard(batch), key, trigger, {})
  metrics = steps.interval_means(jax.device_get(sums))
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


def _sgd_step_grads(config, dtype, noise=0.0):
  """(loss, gradients, new batch statistics) of one train step (32 px, batch 8, im2col) in
  model.dtype `dtype`, read back from an SGD step with learning rate 1 and no decay: params
  - new params, whose dtypes it checks are kept. With `noise`, every parameter is first
  scaled by 1 + noise * N(0, 1)."""
  config = copy.deepcopy(config)
  config.model.dtype, config.model.conv_impl = dtype, 'im2col'
  config.train.optimizer, config.train.learning_rate = 'sgd', 1.0
  config.train.weight_decay, config.train.warmup_epochs = 0.0, 0
  config.train.schedule, config.train.decay_fraction = 'wsd', 0.0  # A constant rate.
  run = config_lib.validate(config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  # Nonzero last BatchNorm scales (zero at init), so every residual branch has gradients.
  state = state.replace(params=jax.tree_util.tree_map_with_path(
      lambda p, v: v + 0.5 if 'bn2' in jax.tree_util.keystr(p) and 'scale' in
      jax.tree_util.keystr(p) else v, state.params))
  if noise:
    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(11), len(leaves))
    state = state.replace(params=jax.tree.unflatten(treedef, [
        v * (1 + noise * jax.random.normal(k, v.shape)) for v, k in zip(leaves, keys)]))
  rng = np.random.default_rng(7)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'gaze': rng.uniform(-0.5, 0.5, (8, 2)).astype(np.float32)}
  new, metrics = steps.make_train_step(run)(state, device.shard(batch), jax.random.key(0),
                                            trigger, {})
  assert jax.tree.map(lambda p: p.dtype, new.params) == jax.tree.map(lambda p: p.dtype,
                                                                     state.params)
  grads = jax.tree.map(lambda old, p: np.asarray(old) - np.asarray(p), state.params, new.params)
  return float(metrics['loss']), grads, new.batch_stats


def _relative_l2(tree, reference):
  """|tree - reference| / |reference| over all leaves together (float64)."""
  flat = [np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(t)])
          for t in (tree, reference)]
  return float(np.linalg.norm(flat[0] - flat[1]) / np.linalg.norm(flat[1]))


def test_bfloat16_step_matches_float32(tiny_step_config):
  """model.dtype=bfloat16 (float32 parameters and optimizer, bfloat16 activations and
  matmuls accumulated in float32; the CPU lowering computes most convolutions as such
  matmuls) trains on float32's loss and gradients, to bfloat16's precision.

  bfloat16 rounds every value to 8 significant bits (relative error <= u = 2^-9). This tiny
  network's gradient is that sensitive at float32: scaling every parameter by
  1 + u * N(0, 1) moves it by ~20% (relative L2; BatchNorm over 8 images and ReLU/max-pool
  switches amplify). The bfloat16 step, which rounds the activations of every layer both
  ways, is allowed twice that change (measured: 26% vs 20%), with the loss within 1%
  (measured 0.6%) and the gradient pointing the same way (cosine > 0.9; measured 0.97).
  Lowering bugs fail this by far; the lowering's exactness is tests/test_lowering.py's.
  """
  loss32, grads32, stats32 = _sgd_step_grads(tiny_step_config, 'float32')
  _, grads_noise, _ = _sgd_step_grads(tiny_step_config, 'float32', noise=2.0**-9)
  loss16, grads16, stats16 = _sgd_step_grads(tiny_step_config, 'bfloat16')
  np.testing.assert_allclose(loss16, loss32, rtol=1e-2)
  error, float32_sensitivity = _relative_l2(grads16, grads32), _relative_l2(grads_noise, grads32)
  assert error < 2 * float32_sensitivity, (error, float32_sensitivity)
  a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (grads16, grads32))
  assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9
  assert _relative_l2(stats16, stats32) < 0.02  # Statistics of bfloat16 activations.


def test_release_compiled_drops_every_step(tiny_step_config):
  """An experiment releases each seed's compiled steps (steps.release_compiled): the cached
  train and eval steps are gone, and the next request builds them anew."""
  run = config_lib.validate(tiny_step_config)
  train_step, eval_step = steps.make_train_step(run), steps.make_eval_step(run.attack)
  assert steps.make_eval_step(run.attack) is eval_step
  steps.release_compiled()
  assert steps.make_eval_step.cache_info().currsize == 0
  assert steps._pmapped_train_step.cache_info().currsize == 0  # pylint: disable=protected-access
  assert steps.make_eval_step(run.attack) is not eval_step
  assert steps.make_train_step(run) is not train_step


def _memory_maps():
  with open('/proc/self/maps', encoding='ascii') as f:
    return sum(1 for _ in f)


@pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason='counts Linux memory maps')
def test_release_compiled_unloads_the_programs(tiny_step_config):
  """Each loaded program holds memory maps until JAX drops it: one more eval step (a new
  attack seed, as each seed of an experiment has) adds hundreds here. After
  steps.release_compiled the process is back where it was, so an experiment that releases
  after each seed does not accumulate them (a population that did crashed at the kernel's
  limit on memory maps)."""
  run = config_lib.validate(tiny_step_config)
  state, trigger = init.initial_state(run, steps_per_epoch=10)
  inference, batch = steps.inference_state(state), device.shard(pipeline.step_template(8, 32))

  def load(seed):  # A distinct program per attack seed, loaded by calling it.
    step = steps.make_eval_step(dataclasses.replace(run.attack, seed=seed))
    jax.block_until_ready(step(inference, batch, evaluate.eval_key(0), trigger))

  load(0)
  steps.release_compiled()
  before = _memory_maps()
  load(1)
  one_program = _memory_maps() - before
  assert one_program > 50, one_program  # The effect the release must undo is there.
  for seed in (1, 2, 3):
    steps.release_compiled()
    load(seed)
  steps.release_compiled()
  assert _memory_maps() - before < one_program / 2

