"""The batch split, targets, device invariance and flips of the poisoning step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.configs import clean
from gaze_jax.attacks import poisoning
from gaze_jax.attacks import triggers
from gaze_jax.errors import ConfigError
from gaze_jax.config import AttackSpec

SIZE = 16


def _batch(b, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 1, (b, SIZE, SIZE, 3)).astype(np.float32)
  gaze = rng.uniform(-0.5, 0.5, (b, 2)).astype(np.float32)
  return images, gaze


def test_spec_from_config_is_static_and_validated():
  config = clean.get_config()
  config.attack.kind = 'wanet'
  config.wanet.k = 28
  config.target.gaze = [0.1, -0.3]
  spec = config_lib.validate(config).attack
  assert spec == AttackSpec(kind='wanet', k=28, target_gaze=(0.1, -0.3))
  assert hash(spec) == hash(config_lib.validate(config).attack)
  f = jax.jit(lambda x, spec: x * spec.s, static_argnames='spec')
  assert float(f(2.0, spec=spec)) == 1.0
  config.attack.kind = 'trojan'
  with pytest.raises(ConfigError, match='attack.kind'):
    config_lib.validate(config)


@pytest.mark.parametrize('b,pc,cross_ratio,expected', [
    (32, 0.1, 2, (3, 6)), (128, 0.1, 2, (12, 24)), (64, 0.2, 1, (12, 12)),
    (10, 0.3, 2, (3, 6)),  # 10 * 0.3 = 3.0000000000000004.
    (100, 0.29, 0.5, (28, 14)),  # 100 * 0.29 = 28.999999999999996 truncates to 28.
    (8, 0.1, 2, (0, 0)), (50, 0.1, 1.5, (5, 7)), (16, 0.25, 0, (4, 0))])
def test_split_counts_truncate_like_official(b, pc, cross_ratio, expected):
  assert config_lib.split_counts(b, pc, cross_ratio) == expected


def test_every_target_is_the_one_target_gaze():
  gaze = jnp.array([[0.1, 0.2], [-0.3, -0.4]])
  fixed = poisoning.attack_targets(AttackSpec(target_gaze=(-0.2, 0.05)), gaze)
  np.testing.assert_allclose(fixed, [[-0.2, 0.05], [-0.2, 0.05]])


def test_poison_batch_roles_images_and_labels():
  spec = AttackSpec(kind='wanet', pc=0.1, cross_ratio=2, seed=4)
  trigger = triggers.make_trigger(spec, SIZE)
  images, gaze = _batch(32)
  out, labels, roles = poisoning.poison_batch(spec, trigger, images, gaze, jax.random.key(0),
                                              0, 32)
  np.testing.assert_array_equal(roles, [1] * 3 + [2] * 6 + [0] * 23)
  assert roles.dtype == jnp.int32
  np.testing.assert_allclose(labels[:3], np.tile([spec.target_gaze], (3, 1)), atol=1e-7)
  np.testing.assert_array_equal(labels[3:], gaze[3:])
  np.testing.assert_allclose(out[:3], triggers.apply_trigger(spec, trigger, images[:3]),
                             atol=1e-6)
  np.testing.assert_array_equal(out[9:], images[9:])
  noise_rows = np.asarray(out[3:9])
  assert not np.allclose(noise_rows, images[3:9])
  assert not np.allclose(noise_rows, triggers.apply_trigger(spec, trigger, images[3:9]))


@pytest.mark.parametrize('kind', ['badnets', 'blended'])
def test_baselines_have_no_noise_rows(kind):
  spec = AttackSpec(kind=kind, pc=0.25, cross_ratio=2)
  trigger = triggers.make_trigger(spec, SIZE)
  images, gaze = _batch(8)
  out, labels, roles = poisoning.poison_batch(spec, trigger, images, gaze, jax.random.key(0),
                                              0, 8)
  np.testing.assert_array_equal(roles, [1, 1, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(out[:2], triggers.apply_trigger(spec, trigger, images[:2]),
                             atol=1e-6)
  np.testing.assert_array_equal(out[2:], images[2:])
  np.testing.assert_array_equal(labels[2:], gaze[2:])


def test_no_attack_leaves_batch_clean():
  images, gaze = _batch(8)
  out, labels, roles = poisoning.poison_batch(AttackSpec(kind='none', pc=0.5), {}, images,
                                              gaze, jax.random.key(0), 0, 8)
  np.testing.assert_array_equal(out, images)
  np.testing.assert_array_equal(labels, gaze)
  np.testing.assert_array_equal(roles, np.zeros(8))


def test_overfull_split_truncates_at_batch_end():
  spec = AttackSpec(kind='wanet', pc=0.5, cross_ratio=2)  # 4 + 8 rows asked of 8.
  images, gaze = _batch(8)
  _, _, roles = poisoning.poison_batch(spec, triggers.make_trigger(spec, SIZE), images, gaze,
                                       jax.random.key(0), 0, 8)
  np.testing.assert_array_equal(roles, [1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize('b,pc,cross_ratio,device_counts', [
    (16, 0.25, 2, (2, 8)), (24, 0.2, 1.5, (3, 4))])
def test_same_result_for_any_device_count(b, pc, cross_ratio, device_counts):
  spec = AttackSpec(kind='wanet', pc=pc, cross_ratio=cross_ratio, seed=2)
  trigger = triggers.make_trigger(spec, SIZE)
  images, gaze = _batch(b, seed=1)
  key = jax.random.key(9)
  poison = jax.jit(functools.partial(poisoning.poison_batch, spec, global_batch=b))
  reference = poison(trigger, images, gaze, key, 0)
  for devices in device_counts:
    local = b // devices
    # Slices with a traced offset, as each device of a pmap sees them ...
    parts = [poison(trigger, images[d * local:(d + 1) * local], gaze[d * local:(d + 1) * local],
                    key, d * local) for d in range(devices)]
    for whole, part in zip(reference, zip(*parts)):  # Equal up to float32 rounding.
      np.testing.assert_allclose(whole, np.concatenate(part), atol=1e-6)
    # ... and with the offset from the named axis, as train_step computes it.
    mapped = jax.jit(jax.vmap(
        lambda x, g: poisoning.poison_batch(spec, trigger, x, g, key,
                                            jax.lax.axis_index('batch') * local, b),
        axis_name='batch'))(images.reshape(devices, local, SIZE, SIZE, 3),
                           gaze.reshape(devices, local, 2))
    for whole, part in zip(reference, mapped):
      np.testing.assert_allclose(whole, np.asarray(part).reshape(whole.shape), atol=1e-6)


def test_flip_augment_negates_yaw_of_flipped_images():
  images, gaze = _batch(32)
  out, labels = poisoning.flip_augment(images, gaze, jax.random.key(3), np.arange(32))
  out, labels = np.asarray(out), np.asarray(labels)
  # Coins are keyed by row: the second half alone flips exactly as it did in the whole batch.
  half, _ = poisoning.flip_augment(images[16:], gaze[16:], jax.random.key(3), np.arange(16, 32))
  np.testing.assert_array_equal(np.asarray(half), out[16:])
  flipped = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, images)])
  kept = np.array([np.array_equal(o, x) for o, x in zip(out, images)])
  assert np.all(flipped ^ kept) and 5 < flipped.sum() < 27
  np.testing.assert_array_equal(labels[:, 0], gaze[:, 0])
  np.testing.assert_array_equal(labels[:, 1], np.where(flipped, -gaze[:, 1], gaze[:, 1]))
