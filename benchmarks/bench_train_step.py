"""Train-step throughput of the JAX gaze regressor vs a PyTorch reference, and vs the hardware.

For every image size, batch, convolution lowering (`model.conv_impl`) and data kind (clean,
or WaNet-poisoned inside the step) it compiles the project's real pmapped train step
(`gaze_jax.train_step`) on one device and reports the compile time, the median images/s of
`--steps` steps after `--warmup` untimed ones, the FLOPs per training image from XLA's cost
analysis of the plain-`nn.Conv` step and the fraction of the machine's measured float32
matmul GFLOP/s that the step reaches. Then, in a subprocess (so the two frameworks never
share a thread pool), the same step in PyTorch (`torch_reference.py`), and the ratio.
Process CPU seconds per step are reported too: on CPUs shared with other work wall-clock
throughput is low and noisy (PyTorch's spinning OpenMP threads suffer most), CPU time much
less so; the script warns when other processes kept the CPUs busy just before or after it measured.

By default the step runs as fast as this machine allows without changing what it computes:
with XLA's Eigen convolutions (`lowering.use_eigen_convolutions()`; `--ynn-convolutions`
keeps jax 0.10's YNNPACK ones) and, by re-executing itself, with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc backs large allocations with transparent huge
pages, cutting the page faults of XLA's per-step buffers; `--no-hugetlb` leaves it out). The
PyTorch subprocess inherits the same environment.

  python -m benchmarks.bench_train_step                     # 64 and 224 px, batch 32 (~12 min)
  python -m benchmarks.bench_train_step --quick             # 64 px, im2col only (< 2 min)
  python -m benchmarks.bench_train_step --batches 32,128    # adds batch 128
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gaze_jax.configs import clean
from gaze_jax.models import lowering
from gaze_jax.attacks import poisoning
from gaze_jax import train_step as ts
from gaze_jax.attacks import triggers

HERE = os.path.dirname(os.path.abspath(__file__))
HUGETLB = 'glibc.malloc.hugetlb=1'


def _set_environment(hugetlb, eigen):
  """Applies the requested settings; re-executes this command where glibc must see them."""
  if eigen:
    lowering.use_eigen_convolutions()  # JAX has not started its backend yet.
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if hugetlb and HUGETLB not in tunables:
    env = dict(os.environ, GLIBC_TUNABLES=':'.join(filter(None, [tunables, HUGETLB])))
    os.execve(sys.executable, sys.orig_argv, env)


def cpu_busy_fraction(seconds=2.0):
  """Fraction of all CPUs' time spent busy over `seconds` (Linux /proc/stat), else None."""
  def sample():
    with open('/proc/stat') as f:
      values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # Total and idle + iowait jiffies.
  try:
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
  except OSError:
    return None
  return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def _percent(fraction):
  return '?' if fraction is None else f'{100 * fraction:.0f}%'


def matmul_gflops(n=2048, repeats=10):
  """Best float32 (n x n) @ (n x n) GFLOP/s of XLA over `repeats` runs."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def _config(size, batch, conv_impl, poison, dtype, optimizer):
  config = clean.get_config()
  config.data.image_size = size
  config.train.batch_size = batch
  config.train.optimizer = optimizer
  config.model.conv_impl = conv_impl
  config.model.dtype = dtype
  config.attack.kind = poison
  return config


def _flops(cost):
  """Total 'flops' of a compiled executable's cost analysis (a dict or a list of them)."""
  costs = cost if isinstance(cost, (list, tuple)) else [cost]
  return sum(float(c.get('flops', 0.0)) for c in costs if c)


def _step_inputs(config):
  """(lowered step, state, sharded batch, key, trigger) of the project's train step."""
  run = config_lib.validate(config)
  size, batch = run.data.image_size, run.train.batch_size
  state = state_lib.create(run, state_lib.initial_variables(run, jax.random.key(0)),
                           steps_per_epoch=100)
  rng = np.random.default_rng(0)
  arrays = device.shard({
      'image': rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
      'gaze': rng.uniform(-0.5, 0.5, (batch, 2)).astype(np.float32)})
  key, trigger = jax.random.key(1), triggers.make_trigger(run.attack, size)
  lowered = steps.p_train_step.lower(state, arrays, key, trigger, {}, run.attack, run.task, batch,
                                     False)
  return lowered, state, arrays, key, trigger


def model_flops(size, batch, poison, dtype, optimizer):
  """FLOPs of one step of the plain nn.Conv model, from XLA's cost analysis (no compile)."""
  lowered, *_ = _step_inputs(_config(size, batch, 'xla', poison, dtype, optimizer))
  return _flops(lowered.cost_analysis())


def measure_jax(size, batch, conv_impl, poison, dtype, optimizer, steps, warmup):
  """Compile seconds and the median wall and CPU seconds per step of the train step."""
  config = _config(size, batch, conv_impl, poison, dtype, optimizer)
  lowered, state, arrays, key, trigger = _step_inputs(config)
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = compiled(state, arrays, key, trigger, {})
  jax.block_until_ready(metrics)
  wall, cpu = [], []
  for _ in range(steps):
    start, start_cpu = time.perf_counter(), time.process_time()
    state, metrics = compiled(state, arrays, key, trigger, {})
    jax.block_until_ready((state, metrics))
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  if not np.isfinite(float(metrics['loss'])):
    raise FloatingPointError(f'non-finite loss at {size} px, {conv_impl}, {poison}')
  return compile_s, statistics.median(wall), statistics.median(cpu)


def run_torch(args):
  """The PyTorch reference's JSON lines (matmul GFLOP/s first), or None without torch."""
  command = [sys.executable, os.path.join(HERE, 'torch_reference.py'), '--matmul',
             '--sizes', args.sizes, '--batches', args.batches, '--steps', str(args.steps),
             '--warmup', str(args.warmup), '--optimizer', args.optimizer,
             '--poison', ','.join('clean' if p == 'none' else p for p in args.poison.split(','))]
  try:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  except subprocess.CalledProcessError as e:
    if 'No module named' in e.stderr and 'torch' in e.stderr:
      print('PyTorch not installed (pip install torch==2.13.0): no reference column.')
      return None
    raise RuntimeError(f'torch_reference.py failed:\n{e.stderr}') from e
  return [json.loads(line) for line in out.splitlines() if line.startswith('{')]


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='64,224', help='image sizes, px')
  parser.add_argument('--batches', default='32', help='global batch sizes, e.g. 32,128')
  parser.add_argument('--impls', default='xla,im2col', help='model.conv_impl values')
  parser.add_argument('--poison', default='none,wanet', help='attack.kind values')
  parser.add_argument('--steps', type=int, default=10, help='timed steps (median)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  parser.add_argument('--dtype', default='float32', help="model.dtype: float32 | bfloat16")
  parser.add_argument('--optimizer', default='adam', choices=('adam', 'sgd'))
  parser.add_argument('--no-torch', action='store_true', help='skip the PyTorch reference')
  parser.add_argument('--no-hugetlb', action='store_true',
                      help='do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1')
  parser.add_argument('--ynn-convolutions', action='store_true',
                      help="keep XLA's YNNPACK convolutions (no lowering.use_eigen_convolutions)")
  parser.add_argument('--quick', action='store_true',
                      help='64 px, batch 32, im2col only, 10 steps after 1 warm-up (< 2 min)')
  args = parser.parse_args(argv)
  _set_environment(not args.no_hugetlb, not args.ynn_convolutions)
  if args.quick:
    args.sizes, args.batches, args.impls, args.steps, args.warmup = '64', '32', 'im2col', 10, 1

  busy_before = cpu_busy_fraction()  # Others' work: this process is still idle.
  peak = matmul_gflops()
  print(f'# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; '
        f'jax {jax.__version__} on {jax.devices()[0].platform}; '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")!r}; '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}; dtype {args.dtype}; '
        f'{args.optimizer}; CPUs busy before: {_percent(busy_before)}', flush=True)
  rows, flops = [], {}
  for size in map(int, args.sizes.split(',')):
    for batch in map(int, args.batches.split(',')):
      for poison in args.poison.split(','):
        flops[size, batch, poison] = model_flops(size, batch, poison, args.dtype,
                                                 args.optimizer)
        for impl in args.impls.split(','):
          compile_s, step_s, cpu_s = measure_jax(size, batch, impl, poison, args.dtype,
                                                 args.optimizer, args.steps, args.warmup)
          rows.append(dict(size=size, batch=batch, poison=poison, impl=impl,
                           compile_s=compile_s, step_s=step_s, cpu_s=cpu_s))
          print(f'  {size} px, batch {batch}, {poison}, {impl}: {step_s * 1e3:.0f} ms/step, '
                f'compiled in {compile_s:.1f} s', flush=True)
  reference = None if args.no_torch else run_torch(args)
  torch_rows = {}
  if reference:
    peak = max(peak, reference[0]['matmul_gflops'])
    for r in reference[1:]:
      torch_rows[r['size'], r['batch'], 'none' if r['poison'] == 'clean' else r['poison']] = r
  busy_after = cpu_busy_fraction()

  print(f'\nhardware limit: {peak:.0f} GFLOP/s (best float32 2048^3 matmul, XLA or PyTorch); '
        'GFLOP/img: XLA cost analysis of the plain nn.Conv step')
  print('| px | batch | data | conv_impl | compile s | ms/step | CPU s/step | img/s | '
        'PyTorch img/s (CPU s/step) | JAX / PyTorch | GFLOP/img | % of peak |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    key = (r['size'], r['batch'], r['poison'])
    ips = r['batch'] / r['step_s']
    gflop_img = flops[key] / r['batch'] / 1e9
    ref = torch_rows.get(key)
    ref_cols = (f"{ref['images_per_s']:.1f} ({ref['cpu_s']:.2f}) | "
                f"{ips / ref['images_per_s']:.2f}x" if ref else '– | –')
    print(f"| {r['size']} | {r['batch']} | {'clean' if r['poison'] == 'none' else r['poison']} "
          f"| {r['impl']} | {r['compile_s']:.1f} | {r['step_s'] * 1e3:.0f} | {r['cpu_s']:.2f} | "
          f'{ips:.1f} | {ref_cols} | {gflop_img:.2f} | {100 * gflop_img * ips / peak:.0f}% |')
  if max(busy_before or 0, busy_after or 0) > 0.1:
    print(f'\nWARNING: other processes kept the CPUs {_percent(busy_before)} busy before and '
          f'{_percent(busy_after)} after the measurements, so these throughputs are low and '
          "noisy (PyTorch's spinning OpenMP threads suffer most). Compare the CPU s/step "
          'columns, or rerun on an idle machine.')

if __name__ == '__main__':
  main(sys.argv[1:])
