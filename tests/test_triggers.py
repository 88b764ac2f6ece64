"""Triggers are applied where and how the attack spec says, checked against NumPy formulas."""
import jax
import numpy as np
import pytest
from scipy import ndimage

from gaze_jax.attacks import triggers
from gaze_jax.config import AttackSpec

SIZE = 20


def _images(n=3, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize('position,top,left', [
    ('bottom_right', 16, 16), ('top_left', 0, 0), ('center', 8, 8)])
def test_badnets_patch_where_configured(position, top, left):
  spec = AttackSpec(kind='badnets', patch_fraction=0.2, position=position, seed=3)
  trigger = triggers.make_trigger(spec, SIZE)
  images = _images()
  out = np.asarray(triggers.apply_trigger(spec, trigger, images))
  inside = np.zeros((SIZE, SIZE), bool)
  inside[top:top + 4, left:left + 4] = True  # round(0.2 * 20) = 4 px.
  np.testing.assert_array_equal(out[:, ~inside], images[:, ~inside])
  patch = out[:, inside]
  assert set(np.unique(patch)) == {0.0, 1.0}  # Black and white cells.
  assert np.all(patch == patch[:1]) and np.all(patch == patch[..., :1])  # Fixed, grey.
  np.testing.assert_array_equal(trigger['mask'][..., 0], inside)


def test_badnets_pattern_is_seeded():
  make = lambda seed: triggers.make_trigger(
      AttackSpec(kind='badnets', patch_fraction=0.3, seed=seed), SIZE)['patch']
  np.testing.assert_array_equal(make(1), make(1))
  assert not np.array_equal(make(1), make(2))


def test_blended_is_alpha_blend_with_fixed_pattern():
  spec = AttackSpec(kind='blended', alpha=0.2, seed=5)
  trigger = triggers.make_trigger(spec, SIZE)
  pattern = trigger['pattern']
  assert pattern.shape == (SIZE, SIZE, 3) and 0 <= pattern.min() and pattern.max() <= 1
  assert pattern.std() > 0.2  # Uniform noise, not a constant.
  images = _images()
  np.testing.assert_allclose(triggers.apply_trigger(spec, trigger, images),
                             0.8 * images + 0.2 * pattern[None], atol=1e-6)
  np.testing.assert_array_equal(triggers.make_trigger(spec, SIZE)['pattern'], pattern)


def test_wanet_trigger_is_the_official_warp():
  spec = AttackSpec(kind='wanet', k=4, s=0.5, seed=1)
  trigger = triggers.make_trigger(spec, SIZE)
  noise = trigger['noise_grid']
  assert noise.shape == (SIZE, SIZE, 2)
  a = np.linspace(-1, 1, SIZE)
  grid = np.clip(np.stack(np.meshgrid(a, a), -1) + 0.5 * noise / SIZE, -1, 1)
  images = _images()
  expected = np.stack([np.stack([
      ndimage.map_coordinates(img[..., c], [(grid[..., 1] + 1) / 2 * (SIZE - 1),
                                            (grid[..., 0] + 1) / 2 * (SIZE - 1)], order=1)
      for c in range(3)], -1) for img in images])
  out = np.asarray(triggers.apply_trigger(spec, trigger, images))
  np.testing.assert_allclose(out, expected, atol=1e-5)
  assert 1e-3 < np.abs(out - images).mean() < 0.2  # Changes the image, but slightly.


def test_wanet_noise_is_keyed_per_row():
  spec = AttackSpec(kind='wanet', seed=1)
  trigger = triggers.make_trigger(spec, SIZE)
  images, key = np.repeat(_images(1), 4, axis=0), jax.random.key(7)
  whole = np.asarray(triggers.apply_noise(spec, trigger, images, key))
  halves = [triggers.apply_noise(spec, trigger, images[i:i + 2], key, rows=np.arange(i, i + 2))
            for i in (0, 2)]
  np.testing.assert_array_equal(whole, np.concatenate(halves))
  assert not np.allclose(whole[0], whole[1])  # Fresh noise per sample.
  assert not np.allclose(whole, triggers.apply_trigger(spec, trigger, images))
  other = triggers.apply_noise(spec, trigger, images, jax.random.key(8))
  assert not np.allclose(other, whole)


@pytest.mark.parametrize('kind', ['badnets', 'blended', 'none'])
def test_noise_mode_only_for_wanet(kind):
  spec = AttackSpec(kind=kind)
  images = _images()
  out = triggers.apply_noise(spec, triggers.make_trigger(spec, SIZE), images, jax.random.key(0))
  np.testing.assert_array_equal(out, images)


def test_none_trigger_has_no_state_and_no_effect():
  spec = AttackSpec(kind='none')
  assert triggers.make_trigger(spec, SIZE) == {}
  images = _images()
  np.testing.assert_array_equal(triggers.apply_trigger(spec, {}, images), images)
  assert triggers.displacement_px(spec, {}) == 0


def test_displacement_px():
  spec = AttackSpec(kind='wanet', k=4, s=1.0, seed=2)
  trigger = triggers.make_trigger(spec, SIZE)
  d = triggers.displacement_px(spec, trigger)
  noise = trigger['noise_grid']
  a = np.linspace(-1, 1, SIZE)
  identity = np.stack(np.meshgrid(a, a), -1)
  shift = (np.clip(identity + noise / SIZE, -1, 1) - identity) * (SIZE - 1) / 2
  np.testing.assert_allclose(d, np.linalg.norm(shift, axis=-1), atol=1e-5)
  # Unclamped, a pixel moves by s * |noise| / 2 * (size - 1) / size pixels.
  free = np.all(np.abs(identity + noise / SIZE) < 1, axis=-1)
  np.testing.assert_allclose(d[free], np.linalg.norm(noise, axis=-1)[free] / 2 * 0.95,
                             atol=1e-5)
  for kind in ('badnets', 'blended'):
    other = AttackSpec(kind=kind)
    np.testing.assert_array_equal(
        triggers.displacement_px(other, triggers.make_trigger(other, SIZE)),
        np.zeros((SIZE, SIZE)))
