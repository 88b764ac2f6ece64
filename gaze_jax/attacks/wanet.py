"""WaNet's warping trigger (Nguyen & Tran, ICLR 2021) as pure, jittable JAX functions.

A faithful port of the official PyTorch code (VinAIResearch/Warping-based_Backdoor_Attack-
release, train.py), so that results are comparable with the paper:

- a k x k x 2 control field, uniform in [-1, 1] and divided by its mean absolute value, is
  upsampled to the image size with PyTorch's bicubic `interpolate(align_corners=True)`;
- the trigger grid is `clamp(identity + s * noise / size, -1, 1)` (the official code's
  `grid_rescale` multiplier is 1 in every setting it ships, and is left out);
- images are warped with `grid_sample(mode='bilinear', padding_mode='zeros',
  align_corners=True)` semantics;
- noise ("cross") mode adds fresh per-pixel uniform [-1, 1] / size to the trigger grid.

Grids follow `grid_sample`: last axis (x, y) = (column, row), both in [-1, 1], where -1 and 1
are the centres of the first and last pixels (align_corners=True). One grid unit is therefore
(size - 1) / 2 pixels, and the trigger moves pixels by about s * |noise| / 2 pixels at any
image size. Images are NHWC.
"""
import jax
import jax.numpy as jnp
import numpy as np

# Keys' cubic convolution parameter used by PyTorch's bicubic interpolation.
_CUBIC_A = -0.75


def identity_grid(size):
  """(size, size, 2) grid that samples every pixel in place: [..., 0] = x, [..., 1] = y."""
  a = jnp.linspace(-1.0, 1.0, size)
  x, y = jnp.meshgrid(a, a)  # 'xy' indexing: x varies along columns, y along rows.
  return jnp.stack([x, y], axis=-1)


def _keys_weights(t):
  """Keys' cubic weights of the taps at offsets -1, 0, 1, 2 for fractional position t."""
  a = _CUBIC_A

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _bicubic_matrix(in_size, out_size):
  """(out_size, in_size) matrix of PyTorch's bicubic, align_corners=True, along one axis."""
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  src = np.arange(out_size) * scale
  base = np.floor(src)
  weights = _keys_weights(src - base)
  taps = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3), 0, in_size - 1)
  matrix = np.zeros((out_size, in_size))
  np.add.at(matrix, (np.arange(out_size)[:, None], taps), weights)  # Clamped taps add up.
  return matrix.astype(np.float32)


def upsample_bicubic(x, size):
  """(k, k, C) -> (size, size, C) as torch `interpolate(mode='bicubic', align_corners=True)`.

  Separable, so it is two small matrix products with constant interpolation matrices.
  """
  rows = jnp.asarray(_bicubic_matrix(x.shape[0], size))
  cols = jnp.asarray(_bicubic_matrix(x.shape[1], size))
  return jnp.einsum('ia,abc,jb->ijc', rows, x, cols,
                    precision=jax.lax.Precision.HIGHEST)


def noise_grid(key, k, size):
  """WaNet's (size, size, 2) noise grid from a k x k control field normalised to mean |.| 1."""
  ins = jax.random.uniform(key, (k, k, 2), minval=-1.0, maxval=1.0)
  ins = ins / jnp.mean(jnp.abs(ins))
  return upsample_bicubic(ins, size)


def trigger_grid(identity, noise, s):
  """The fixed trigger warp: clamp(identity + s * noise / size, -1, 1)."""
  size = identity.shape[-3]
  return jnp.clip(identity + s * noise / size, -1.0, 1.0)


def cross_grid(key, grid):
  """Noise-mode grid for one sample: trigger grid + uniform [-1, 1] / size per pixel, clamped.

  Args:
    key: PRNG key of this sample (the official code draws fresh noise every step).
    grid: (H, W, 2) trigger grid.
  """
  ins = jax.random.uniform(key, grid.shape, grid.dtype, minval=-1.0, maxval=1.0)
  return jnp.clip(grid + ins / grid.shape[-3], -1.0, 1.0)


def _corners(grid, h, w):
  """(flat pixel index, bilinear weight) of each of the 4 corners of every grid point.

  A corner outside the image gets weight 0 (and an in-bounds index): grid_sample's
  padding_mode='zeros' zeroes each corner separately.
  """
  cols = (grid[..., 0] + 1.0) * (0.5 * (w - 1))
  rows = (grid[..., 1] + 1.0) * (0.5 * (h - 1))
  x0, y0 = jnp.floor(cols), jnp.floor(rows)
  fx, fy = cols - x0, rows - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  for dy, wy in ((0, 1.0 - fy), (1, fy)):
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
      y, x = y0 + dy, x0 + dx
      inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
      index = jnp.clip(y, 0, h - 1) * w + jnp.clip(x, 0, w - 1)
      yield index, jnp.where(inside, wy * wx, 0.0)


def warp(images, grid):
  """Warps NHWC `images` by a (H', W', 2) grid shared by all or a (N, H', W', 2) grid each.

  Same values as torch `grid_sample(mode='bilinear', padding_mode='zeros',
  align_corners=True)`; the output is (N, H', W', C). Gathers from a table of pixels (all
  samples' pixels side by side for a shared grid), which XLA fuses into one loop: 1.3-1.6x
  faster on CPU than `map_coordinates` per plane (benchmarks/bench_warp.py).
  """
  n, h, w, c = images.shape
  if grid.ndim == 3:
    table = jnp.transpose(images, (1, 2, 0, 3)).reshape(h * w, n * c)
    out = sum(weight[..., None] * table[index] for index, weight in _corners(grid, h, w))
    out = jnp.transpose(out.reshape(*grid.shape[:2], n, c), (2, 0, 1, 3))
  else:
    table = images.reshape(n * h * w, c)
    first = (jnp.arange(n) * (h * w))[:, None, None]  # Each sample's first row in `table`.
    out = sum(weight[..., None] * table[index + first] for index, weight in _corners(grid, h, w))
  return out.astype(images.dtype)
