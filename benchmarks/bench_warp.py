"""Throughput of WaNet's warp: gaze_jax.wanet.warp vs torch grid_sample (if installed).

Batch 64 at 64 and 224 px, float32, median of repeated runs after compilation / warm-up.
'trigger' warps every image with one grid; the torch column repeats it to (N, H, W, 2) as
the official train.py does. 'noise' uses a different grid per image (WaNet's noise mode).
A second table gives the time of `poisoning.poison_batch` on one device for the default
attack (pc 0.1, cross_ratio 2) and a global batch of 32, to set against the train step.

  python -m benchmarks.bench_warp [--runs 50]   (from the repository root)
"""
import argparse
import time

import jax
import numpy as np

from gaze_jax.attacks import poisoning
from gaze_jax.config import AttackSpec
from gaze_jax.attacks import triggers
from gaze_jax.attacks import wanet

BATCH = 64
TRAIN_BATCH = 32


def _median_seconds(fn, runs):
  fn()  # Compile / warm up.
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _grids(size):
  key_noise, key_cross = jax.random.split(jax.random.key(0))
  grid = wanet.trigger_grid(wanet.identity_grid(size), wanet.noise_grid(key_noise, 4, size), 0.5)
  keys = jax.random.split(key_cross, BATCH)
  return {'trigger': grid, 'noise': jax.vmap(wanet.cross_grid, in_axes=(0, None))(keys, grid)}


def _torch_seconds(torch, images, grid, runs):
  """grid_sample as the official train.py calls it: the grid repeated to (N, H, W, 2)."""
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  g = torch.from_numpy(np.array(grid))

  def torch_warp():
    grids = g[None].repeat(BATCH, 1, 1, 1) if g.ndim == 3 else g
    with torch.no_grad():
      torch.nn.functional.grid_sample(x, grids, align_corners=True)

  return _median_seconds(torch_warp, runs)


def main():
  """Times the JAX and PyTorch warps and `poison_batch`, and prints the tables."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', type=int, default=50)
  args = parser.parse_args()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  warp = jax.jit(wanet.warp)
  cases = [(size, name, grid,
            np.random.default_rng(0).uniform(0, 1, (BATCH, size, size, 3)).astype(np.float32))
           for size in (64, 224) for name, grid in _grids(size).items()]
  # All JAX timings first: PyTorch's OpenMP threads keep spinning after a call and would
  # slow down a JAX measurement that follows it.
  t_jax = []
  for _, _, grid, images in cases:
    images = jax.device_put(images)
    t_jax.append(_median_seconds(lambda: warp(images, grid).block_until_ready(), args.runs))
  t_poison = {size: _poison_seconds(size, args.runs) for size in (64, 224)}
  print(f'devices: {jax.devices()}; torch: {torch.__version__ if torch else "not installed"}')
  print('| px | grid | JAX img/s | torch img/s | JAX / torch |')
  print('|---|---|---|---|---|')
  for (size, name, grid, images), seconds in zip(cases, t_jax):
    row = f'| {size} | {name} | {BATCH / seconds:,.0f} |'
    if torch is None:
      print(row + ' – | – |')
      continue
    t_torch = _torch_seconds(torch, images, grid, args.runs)
    print(row + f' {BATCH / t_torch:,.0f} | {t_torch / seconds:.2f} |')
  print(f'\n| px | poison_batch ms (WaNet defaults, batch {TRAIN_BATCH}) |')
  print('|---|---|')
  for size, seconds in t_poison.items():
    print(f'| {size} | {1000 * seconds:.2f} |')


def _poison_seconds(size, runs):
  """Time of poison_batch on one device for the default WaNet attack."""
  spec = AttackSpec(kind='wanet')
  trigger = triggers.make_trigger(spec, size)
  images = jax.random.uniform(jax.random.key(1), (TRAIN_BATCH, size, size, 3))
  gaze = jax.numpy.zeros((TRAIN_BATCH, 2))
  poison = jax.jit(lambda t, x, g: poisoning.poison_batch(
      spec, t, x, g, jax.random.key(2), 0, TRAIN_BATCH))
  return _median_seconds(lambda: jax.block_until_ready(poison(trigger, images, gaze)), runs)


if __name__ == '__main__':
  main()
