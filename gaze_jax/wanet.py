"""WaNet's warping trigger (Nguyen & Tran, ICLR 2021) as pure, jittable JAX functions.

A faithful port of the official PyTorch code (VinAIResearch/Warping-based_Backdoor_Attack-
release, train.py), so that results are comparable with the paper:

- a k x k x 2 control field, uniform in [-1, 1] and divided by its mean absolute value, is
  upsampled to the image size with PyTorch's bicubic `interpolate(align_corners=True)`;
- the trigger grid is `clamp((identity + s * noise / size) * grid_rescale, -1, 1)`;
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
from jax.scipy import ndimage
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


def trigger_grid(identity, noise, s, grid_rescale=1.0):
  """The fixed trigger warp: clamp((identity + s * noise / size) * grid_rescale, -1, 1)."""
  size = identity.shape[-3]
  return jnp.clip((identity + s * noise / size) * grid_rescale, -1.0, 1.0)


def cross_grid(key, grid):
  """Noise-mode grid for one sample: trigger grid + uniform [-1, 1] / size per pixel, clamped.

  Args:
    key: PRNG key of this sample (the official code draws fresh noise every step).
    grid: (H, W, 2) trigger grid.
  """
  ins = jax.random.uniform(key, grid.shape, grid.dtype, minval=-1.0, maxval=1.0)
  return jnp.clip(grid + ins / grid.shape[-3], -1.0, 1.0)


def _warp_plane(plane, rows, cols):
  """Bilinear sample of one (H, W) plane at pixel coordinates; zero outside the image."""
  # JAX's 'constant' mode zeroes each out-of-image corner separately, as grid_sample's
  # padding_mode='zeros' does (SciPy calls this mode 'grid-constant').
  return ndimage.map_coordinates(plane, [rows, cols], order=1, mode='constant', cval=0.0)


def warp(images, grid):
  """Warps NHWC `images` by a (H', W', 2) grid shared by all or a (N, H', W', 2) grid each.

  Same values as torch `grid_sample(mode='bilinear', padding_mode='zeros',
  align_corners=True)`; the output is (N, H', W', C).
  """
  _, h, w, _ = images.shape
  cols = (grid[..., 0] + 1.0) * (0.5 * (w - 1))
  rows = (grid[..., 1] + 1.0) * (0.5 * (h - 1))
  # One 2-D gather per (sample, channel) plane: measured faster than a single 4-D gather.
  per_channel = jax.vmap(_warp_plane, in_axes=(0, None, None))
  coord_axis = None if grid.ndim == 3 else 0
  per_sample = jax.vmap(per_channel, in_axes=(0, coord_axis, coord_axis))
  out = per_sample(jnp.moveaxis(images, -1, 1), rows, cols)
  return jnp.moveaxis(out, 1, -1)
