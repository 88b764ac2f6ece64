"""Throughput of WaNet's warp: gaze_jax.wanet.warp vs torch grid_sample (if installed).

Batch 64 at 64 and 224 px, float32, median of repeated runs after compilation / warm-up.
'trigger' warps every image with one grid; the torch column repeats it to (N, H, W, 2) as
the official train.py does. 'noise' uses a different grid per image (WaNet's noise mode).
A second table gives the time of `poisoning.poison_batch` on one device for the default
attack (pc 0.1, cross_ratio 2) and a global batch of 32, to set against the train step.

  python -m benchmarks.bench_warp [--runs 10]   (from the repository root)
"""
import argparse
import time

import jax
import numpy as np

from gaze_jax import poisoning
from gaze_jax import triggers
from gaze_jax import wanet

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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', type=int, default=10)
  args = parser.parse_args()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  warp = jax.jit(wanet.warp)
  print(f'devices: {jax.devices()}; torch: {torch.__version__ if torch else "not installed"}')
  print('| px | grid | JAX img/s | torch img/s | JAX / torch |')
  print('|---|---|---|---|---|')
  for size in (64, 224):
    images = np.random.default_rng(0).uniform(0, 1, (BATCH, size, size, 3)).astype(np.float32)
    images_jax = jax.device_put(images)
    for name, grid in _grids(size).items():
      t_jax = _median_seconds(lambda: warp(images_jax, grid).block_until_ready(), args.runs)
      row = f'| {size} | {name} | {BATCH / t_jax:,.0f} |'
      if torch is None:
        print(row + ' – | – |')
        continue
      x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
      g = torch.from_numpy(np.array(grid))

      def torch_warp(x=x, g=g):
        grids = g[None].repeat(BATCH, 1, 1, 1) if g.ndim == 3 else g
        with torch.no_grad():
          torch.nn.functional.grid_sample(x, grids, align_corners=True)

      t_torch = _median_seconds(torch_warp, args.runs)
      print(row + f' {BATCH / t_torch:,.0f} | {t_torch / t_jax:.2f} |')
  print(f'\n| px | poison_batch ms (WaNet defaults, batch {TRAIN_BATCH}) |')
  print('|---|---|')
  spec = poisoning.AttackSpec(kind='wanet')
  for size in (64, 224):
    trigger = triggers.make_trigger(spec, size)
    images = jax.random.uniform(jax.random.key(1), (TRAIN_BATCH, size, size, 3))
    gaze = jax.numpy.zeros((TRAIN_BATCH, 2))
    poison = jax.jit(lambda t, x, g: poisoning.poison_batch(
        spec, t, x, g, jax.random.key(2), 0, TRAIN_BATCH))
    seconds = _median_seconds(
        lambda: jax.block_until_ready(poison(trigger, images, gaze)), args.runs)
    print(f'| {size} | {1000 * seconds:.2f} |')


if __name__ == '__main__':
  main()
