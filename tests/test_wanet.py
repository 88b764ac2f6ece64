"""WaNet's warp, grids and bicubic upsampling against independent references.

References: SciPy's map_coordinates for bilinear sampling, a direct NumPy loop over Keys'
cubic kernel for PyTorch's align-corners bicubic, shifted arrays for integer translations,
and PyTorch itself where it is installed (skipped visibly otherwise).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from gaze_jax.attacks import wanet


def _random(shape, seed=0, low=0.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _scipy_warp(images, grid, mode):
  """Per-plane SciPy bilinear sampling after mapping align-corners grid units to pixels."""
  n, h, w, c = images.shape
  grid = np.broadcast_to(grid, (n,) + grid.shape[-3:])
  out = np.zeros((n,) + grid.shape[1:3] + (c,), np.float64)
  for i in range(n):
    cols = (grid[i, ..., 0] + 1) / 2 * (w - 1)
    rows = (grid[i, ..., 1] + 1) / 2 * (h - 1)
    for ch in range(c):
      out[i, ..., ch] = ndimage.map_coordinates(
          images[i, ..., ch].astype(np.float64), [rows, cols], order=1, mode=mode, cval=0.0)
  return out


def _keys(x, a=-0.75):
  x = abs(x)
  if x <= 1:
    return (a + 2) * x**3 - (a + 3) * x**2 + 1
  if x < 2:
    return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
  return 0.0


def _numpy_bicubic(x, size):
  """Direct 2-D evaluation of PyTorch's bicubic, align_corners=True, with clamped taps."""
  k0, k1, c = x.shape
  out = np.zeros((size, size, c))
  for i in range(size):
    for j in range(size):
      sy, sx = i * (k0 - 1) / (size - 1), j * (k1 - 1) / (size - 1)
      y0, x0 = int(np.floor(sy)), int(np.floor(sx))
      for dy in range(-1, 3):
        for dx in range(-1, 3):
          weight = _keys(sy - (y0 + dy)) * _keys(sx - (x0 + dx))
          out[i, j] += weight * x[min(max(y0 + dy, 0), k0 - 1), min(max(x0 + dx, 0), k1 - 1)]
  return out


def test_identity_grid_layout():
  g = np.asarray(wanet.identity_grid(5))
  assert g.shape == (5, 5, 2)
  np.testing.assert_allclose(g[0, :, 0], np.linspace(-1, 1, 5), atol=1e-7)  # x along columns
  np.testing.assert_allclose(g[:, 0, 1], np.linspace(-1, 1, 5), atol=1e-7)  # y along rows
  assert np.all(g[:, :, 0] == g[:1, :, 0]) and np.all(g[:, :, 1] == g[:, :1, 1])


def test_warp_identity_returns_input():
  images = _random((3, 16, 16, 3))
  grid = wanet.identity_grid(16)  # float32 linspace: pixel centres are off by ~1e-7.
  np.testing.assert_allclose(wanet.warp(images, grid), images, atol=1e-5)
  per_sample = jnp.broadcast_to(grid, (3, 16, 16, 2))
  np.testing.assert_allclose(wanet.warp(images, per_sample), images, atol=1e-5)


@pytest.mark.parametrize('per_sample', [False, True])
def test_warp_matches_scipy_inside_image(per_sample):
  images = _random((2, 12, 17, 3), seed=1)  # Non-square, so rows and columns cannot swap.
  shape = (2, 9, 11, 2) if per_sample else (9, 11, 2)
  grid = _random(shape, seed=2, low=-1.0, high=1.0)
  np.testing.assert_allclose(wanet.warp(images, grid), _scipy_warp(images, grid, 'constant'),
                             atol=1e-5)


@pytest.mark.parametrize('per_sample', [False, True])
def test_warp_zero_padding_outside_image(per_sample):
  # Beyond the border grid_sample blends with zeros per corner: SciPy's 'grid-constant'.
  # (SciPy's 'constant' returns cval for any point outside [0, n-1] instead.)
  images = _random((2, 10, 13, 2), seed=3)
  grid = _random((2, 10, 13, 2) if per_sample else (10, 13, 2), seed=4, low=-1.4, high=1.4)
  expected = _scipy_warp(images, grid, 'grid-constant')
  np.testing.assert_allclose(wanet.warp(images, grid), expected, atol=1e-5)
  assert np.any(np.abs(grid) > 1.2) and np.any(expected == 0)


@pytest.mark.parametrize('dy,dx', [(0, 3), (2, 0), (-1, 2), (-4, -5)])
def test_integer_translation_is_a_shift_with_zero_fill(dy, dx):
  h, w = 12, 16
  images = _random((2, h, w, 3), seed=5)
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  grid = np.stack([(cols + dx) * 2 / (w - 1) - 1, (rows + dy) * 2 / (h - 1) - 1], -1)
  expected = np.zeros_like(images)
  src = images[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
  expected[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = src
  np.testing.assert_allclose(wanet.warp(images, grid.astype(np.float32)), expected, atol=1e-5)


@pytest.mark.parametrize('k,size', [(4, 16), (3, 7), (5, 32), (4, 4)])
def test_upsample_bicubic_matches_numpy_keys_kernel(k, size):
  x = _random((k, k, 2), seed=k + size, low=-2.0, high=2.0)
  np.testing.assert_allclose(wanet.upsample_bicubic(x, size), _numpy_bicubic(x, size),
                             atol=1e-5)


def test_upsample_bicubic_exact_at_control_points():
  x = _random((4, 4, 2), seed=6, low=-3.0, high=3.0)
  up = np.asarray(wanet.upsample_bicubic(x, 31))  # Control points at 0, 10, 20, 30.
  np.testing.assert_allclose(up[::10, ::10], x, atol=1e-6)


def test_noise_grid_is_normalised_control_field():
  key = jax.random.key(3)
  ins = np.asarray(jax.random.uniform(key, (4, 4, 2), minval=-1.0, maxval=1.0))
  expected = ins / np.mean(np.abs(ins))
  grid = np.asarray(wanet.noise_grid(key, 4, 31))
  assert grid.shape == (31, 31, 2)
  np.testing.assert_allclose(grid[::10, ::10], expected, atol=1e-5)
  np.testing.assert_allclose(np.mean(np.abs(grid[::10, ::10])), 1.0, atol=1e-6)


def test_trigger_grid_formula_and_clamping():
  size = 16
  identity = np.asarray(wanet.identity_grid(size))
  noise = _random((size, size, 2), seed=7, low=-20.0, high=20.0)
  for s in (0.5, 4.0):
    grid = np.asarray(wanet.trigger_grid(identity, noise, s))
    raw = identity + s * noise / size
    assert np.any(np.abs(raw) > 1)  # The case exercises the clamp.
    np.testing.assert_allclose(grid, np.clip(raw, -1, 1), atol=1e-6)
    assert grid.min() >= -1 and grid.max() <= 1


def test_cross_grid_adds_bounded_fresh_noise():
  size = 16
  grid = wanet.trigger_grid(wanet.identity_grid(size),
                            wanet.noise_grid(jax.random.key(0), 4, size), 0.5)
  a = np.asarray(wanet.cross_grid(jax.random.key(1), grid))
  b = np.asarray(wanet.cross_grid(jax.random.key(2), grid))
  assert a.min() >= -1 and a.max() <= 1
  inside = np.abs(np.asarray(grid)) < 1 - 1 / size
  diff = (a - np.asarray(grid))[inside] * size  # Unclamped noise, in [-1, 1].
  assert np.all(np.abs(diff) <= 1 + 1e-4) and diff.std() > 0.4
  assert not np.allclose(a, b)


def test_warp_gradients_finite_and_adjoint():
  images = jnp.asarray(_random((2, 10, 10, 3), seed=8))
  grid = jnp.asarray(_random((2, 10, 10, 2), seed=9, low=-0.95, high=0.95))
  weights = jnp.asarray(_random((2, 10, 10, 3), seed=10))
  loss = lambda x, g: jnp.sum(wanet.warp(x, g) * weights)
  g_images, g_grid = jax.grad(loss, argnums=(0, 1))(images, grid)
  assert np.all(np.isfinite(g_images)) and np.all(np.isfinite(g_grid))
  # The warp is linear in the images: <grad, v> = loss(v) for any v.
  v = jnp.asarray(_random((2, 10, 10, 3), seed=11))
  np.testing.assert_allclose(jnp.sum(g_images * v), loss(v, grid), rtol=1e-5)
  # Grid gradient vs a central difference along a random direction.
  d = jnp.asarray(_random((2, 10, 10, 2), seed=12, low=-1, high=1)) * 1e-3
  numeric = (loss(images, grid + d) - loss(images, grid - d)) / 2
  np.testing.assert_allclose(jnp.sum(g_grid * d), numeric, rtol=2e-2)


def test_jit_and_vmap_agree_with_eager():
  images = _random((2, 16, 16, 3), seed=13)
  keys = jax.random.split(jax.random.key(0), 3)
  noises = jax.vmap(lambda k: wanet.noise_grid(k, 4, 16))(keys)
  np.testing.assert_allclose(noises[1], wanet.noise_grid(keys[1], 4, 16), atol=1e-6)
  grid = wanet.trigger_grid(wanet.identity_grid(16), noises[0], 0.5)
  np.testing.assert_allclose(jax.jit(wanet.warp)(images, grid), wanet.warp(images, grid),
                             atol=1e-6)


def test_matches_pytorch():
  torch = pytest.importorskip('torch')
  f = torch.nn.functional
  x = _random((4, 4, 2), seed=14, low=-2, high=2)
  expected = f.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=24, mode='bicubic',
                           align_corners=True)[0].permute(1, 2, 0).numpy()
  np.testing.assert_allclose(wanet.upsample_bicubic(x, 24), expected, atol=1e-5)
  images = _random((2, 12, 15, 3), seed=15)
  grid = _random((2, 7, 9, 2), seed=16, low=-1.3, high=1.3)
  expected = f.grid_sample(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(grid),
                           mode='bilinear', padding_mode='zeros',
                           align_corners=True).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(wanet.warp(images, grid), expected, atol=1e-5)
  # The official identity grid: meshgrid 'ij' of linspace, stacked as (y, x).
  a = torch.linspace(-1, 1, steps=16)
  xx, yy = torch.meshgrid(a, a, indexing='ij')
  np.testing.assert_allclose(wanet.identity_grid(16), torch.stack((yy, xx), 2).numpy(),
                             atol=1e-6)
