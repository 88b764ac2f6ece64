"""Train-step throughput of the JAX gaze regressor vs PyTorch at its best, and vs the hardware.

For every image size, batch and data kind (clean, or WaNet-poisoned inside the step) it
measures, alternating the two frameworks (JAX first, then PyTorch in a subprocess, so they
never share a thread pool; `--rounds N` repeats the pair and keeps each row's best):

- JAX: the project's real pmapped train step (`gaze_jax.training.steps`) on one device, for
  every `--dtypes` (`model.dtype`: float32, or bfloat16 compute with float32 parameters and
  optimizer state) and `--impls` (`model.conv_impl`) pair: compile seconds and the median
  wall and process CPU seconds of `--steps` steps after `--warmup` untimed ones;
- PyTorch (`torch_reference.py`, same model, L1 loss, AdamW and batch): float32 in NCHW and
  in channels_last (the faster one is PyTorch's best float32, and the table says which), and
  bfloat16 autocast in channels_last (its mixed precision);
- the matmul peaks: the best float32 and bfloat16 (float32 accumulation) 2048^3 GFLOP/s of
  XLA and of PyTorch; the higher of the two frameworks is the peak of that precision.

Precisions the CPU has no hardware for are skipped and the header says so: bfloat16 runs only
where /proc/cpuinfo reports bfloat16 instructions (avx512_bf16, amx_bf16, Arm's bf16), since
elsewhere it is emulated and slower than float32 (`--dtypes float32,bfloat16` forces it).
The header names the CPU model and its vector extensions.

It prints every measurement, then one summary row per setting: JAX float32 and bfloat16
(the faster lowering of each), PyTorch's best float32 (and its layout) and bfloat16, the
JAX / PyTorch ratios, and each step's FLOP rate as a % of the peak of its precision (FLOPs
per image from XLA's cost analysis of the plain nn.Conv step). Process CPU seconds per step
are reported too: on CPUs shared with other work wall-clock throughput is low and noisy
(PyTorch's spinning OpenMP threads suffer most), CPU time much less so; the script warns when
other processes kept the CPUs busy just before or after it measured.

By default the step runs as fast as this machine allows without changing what it computes:
with XLA's Eigen convolutions (`lowering.use_eigen_convolutions()`; `--ynn-convolutions`
keeps jax 0.10's YNNPACK ones) and, by re-executing itself, with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc backs large allocations with transparent huge
pages, cutting the page faults of XLA's per-step buffers; `--no-hugetlb` leaves it out). The
PyTorch subprocess inherits the same environment.

  python -m benchmarks.bench_train_step                     # 48, 64 and 224 px, batch 32
  python -m benchmarks.bench_train_step --quick             # 64 px, clean, im2col (< 3 min)
  python -m benchmarks.bench_train_step --batches 32,128    # adds batch 128
  python -m benchmarks.bench_train_step --quick --cpus 1    # one core, on a shared machine
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

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.configs import clean
from gaze_jax.configs import default
from gaze_jax.data import device
from gaze_jax.models import lowering
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps

HERE = os.path.dirname(os.path.abspath(__file__))
HUGETLB = 'glibc.malloc.hugetlb=1'
MAIN_JOB_SIZE = default.get_config().data.image_size  # configs/default.py's faces, px.
PRECISIONS = ('float32', 'bfloat16')
TORCH_LABELS = {'fp32_nchw': 'NCHW', 'fp32_channels_last': 'channels_last',
                'bf16_channels_last': 'autocast, channels_last'}


def _set_environment(hugetlb, eigen):
  """Applies the requested settings; re-executes this command where glibc must see them."""
  if eigen:
    lowering.use_eigen_convolutions()  # JAX has not started its backend yet.
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if hugetlb and HUGETLB not in tunables:
    env = dict(os.environ, GLIBC_TUNABLES=':'.join(filter(None, [tunables, HUGETLB])))
    os.execve(sys.executable, sys.orig_argv, env)


VECTOR_EXTENSIONS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16',
                     'amx_tile', 'neon', 'sve')  # The ones a float32 or bfloat16 step can use.


BF16_EXTENSIONS = ('avx512_bf16', 'amx_bf16', 'bf16')  # x86 AVX-512 / AMX; Arm's 'bf16'.


def cpu_info(cpuinfo='/proc/cpuinfo'):
  """(model name, set of the CPU's reported flags) from /proc/cpuinfo on Linux.

  Elsewhere the platform's processor string and no flags."""
  try:
    with open(cpuinfo) as f:
      text = f.read()
  except OSError:
    return platform.processor() or platform.machine(), set()
  fields = dict(line.split(':', 1) for line in text.splitlines() if ':' in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  flags = set((fields.get('flags') or fields.get('Features') or '').split())
  return fields.get('model name') or platform.processor() or platform.machine(), flags


def cpu_facts(cpuinfo='/proc/cpuinfo'):
  """The CPU's model name and the vector extensions it reports (VECTOR_EXTENSIONS), as text."""
  model, flags = cpu_info(cpuinfo)
  listed = ' '.join(e for e in VECTOR_EXTENSIONS if e in flags)
  return f"{model} ({listed or 'no listed vector extensions'})"


def hardware_precisions(flags):
  """The PRECISIONS this CPU computes in hardware, from its reported flags.

  float32, and bfloat16 where it reports bfloat16 instructions (BF16_EXTENSIONS); without
  them bfloat16 is emulated, so slower."""
  return tuple(p for p in PRECISIONS
               if p == 'float32' or set(BF16_EXTENSIONS) & set(flags))


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


def matmul_gflops(dtype, n=2048, repeats=10):
  """Measures XLA's matmul throughput in GFLOP/s for `dtype`.

  Best (n x n) @ (n x n) GFLOP/s of XLA over `repeats` runs; bfloat16 operands accumulate
  in float32 (preferred_element_type), as the bfloat16 train step's matmuls do."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  matmul(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def step_config(size, batch, conv_impl, poison, dtype, optimizer):
  """The clean config at `size` px and global `batch`, with the given model and attack."""
  config = clean.get_config()
  config.data.image_size = size
  config.data.synthetic.image_size = max(size, config.data.synthetic.image_size)
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


def random_batch(size, batch, seed=0):
  """A host batch of uint8 images and gaze labels, as the input pipeline yields it."""
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
          'gaze': rng.uniform(-0.5, 0.5, (batch, 2)).astype(np.float32)}


def _step_inputs(config):
  """(lowered step, its arguments) of the project's train step on a random batch."""
  run = config_lib.validate(config)
  size, batch = run.data.image_size, run.train.batch_size
  state = state_lib.create(run, state_lib.initial_variables(run, jax.random.key(0)),
                           steps_per_epoch=100)
  args = (state, device.shard(random_batch(size, batch)), jax.random.key(1),
          triggers.make_trigger(run.attack, size), {})
  lowered = steps.make_train_step(run).lower(*args)
  return lowered, args


def model_flops(size, batch, poison, optimizer):
  """FLOPs of one float32 step of the plain nn.Conv model, from XLA's cost analysis."""
  lowered, _ = _step_inputs(step_config(size, batch, 'xla', poison, 'float32', optimizer))
  return _flops(lowered.cost_analysis())


def time_steps(compiled, args, steps_, warmup):
  """Times repeated calls of a compiled train step.

  Median wall and process CPU seconds per call of `compiled(state, *rest)`, which
  returns (state, metrics); checks the last metrics are finite."""
  state, rest = args[0], args[1:]
  for _ in range(warmup):
    state, metrics = compiled(state, *rest)
  jax.block_until_ready(state)
  wall, cpu = [], []
  for _ in range(steps_):
    start, start_cpu = time.perf_counter(), time.process_time()
    state, metrics = compiled(state, *rest)
    jax.block_until_ready((state, metrics))
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  if not all(np.all(np.isfinite(m)) for m in jax.tree.leaves(metrics)):
    raise FloatingPointError(f'non-finite metrics: {metrics}')
  return statistics.median(wall), statistics.median(cpu)


def compile_jax(size, batch, impl, poison, dtype, optimizer):
  """(compiled step, its arguments, compile seconds) of the project's train step."""
  lowered, args = _step_inputs(step_config(size, batch, impl, poison, dtype, optimizer))
  start = time.perf_counter()
  compiled = lowered.compile()
  return compiled, args, time.perf_counter() - start


def run_torch(args, size, batch, poison, matmul):
  """Runs the PyTorch reference for one setting in a subprocess.

  The PyTorch reference's JSON records for one setting (with `matmul`, the matmul peaks
  first), or None without torch."""
  command = [sys.executable, os.path.join(HERE, 'torch_reference.py'),
             '--sizes', str(size), '--batches', str(batch), '--steps', str(args.steps),
             '--warmup', str(args.warmup), '--optimizer', args.optimizer,
             '--poison', 'clean' if poison == 'none' else poison,
             '--variants', args.torch_variants] + (['--matmul'] if matmul else [])
  try:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  except subprocess.CalledProcessError as e:
    if 'No module named' in e.stderr and 'torch' in e.stderr:
      print('PyTorch not installed (pip install torch==2.13.0): no reference rows.')
      return None
    raise RuntimeError(f'torch_reference.py failed:\n{e.stderr}') from e
  return [json.loads(line) for line in out.splitlines() if line.startswith('{')]


def _keep_best(rows, row):
  """Adds `row` to `rows`, or keeps the faster of it and the earlier row of the same step."""
  for i, old in enumerate(rows):
    if (old['name'], old['precision']) == (row['name'], row['precision']):
      if row['step_s'] < old['step_s']:
        rows[i] = row
      return
  rows.append(row)


def measure_setting(args, size, batch, poison, peaks):
  """The rows of one (size, batch, data) setting, JAX and PyTorch alternating per round."""
  compiled = {}
  rows = []
  for round_ in range(args.rounds):
    for dtype in args.dtypes.split(','):
      for impl in args.impls.split(','):
        if (dtype, impl) not in compiled:
          compiled[dtype, impl] = compile_jax(size, batch, impl, poison, dtype, args.optimizer)
        step, step_args, compile_s = compiled[dtype, impl]
        step_s, cpu_s = time_steps(step, step_args, args.steps, args.warmup)
        _keep_best(rows, dict(name=f'JAX {impl}', framework='JAX', precision=dtype,
                              compile_s=compile_s, step_s=step_s, cpu_s=cpu_s))
        print(f'  {size} px, batch {batch}, {poison}, JAX {dtype} {impl}: '
              f'{step_s * 1e3:.0f} ms/step, compiled in {compile_s:.1f} s', flush=True)
    reference = None if args.no_torch else run_torch(args, size, batch, poison,
                                                     'torch' not in peaks)
    for r in reference or []:
      if 'matmul_gflops' in r:
        peaks['torch'] = r['matmul_gflops']
        continue
      precision = 'bfloat16' if r['variant'].startswith('bf16') else 'float32'
      _keep_best(rows, dict(name=f"PyTorch {TORCH_LABELS[r['variant']]}", framework='PyTorch',
                            precision=precision, compile_s=None, step_s=r['step_s'],
                            cpu_s=r['cpu_s']))
      print(f"  {size} px, batch {batch}, {poison}, PyTorch {r['variant']}: "
            f"{r['step_s'] * 1e3:.0f} ms/step (round {round_ + 1})", flush=True)
  return rows


def _best(rows, framework, precision):
  candidates = [r for r in rows if r['framework'] == framework and r['precision'] == precision]
  return min(candidates, key=lambda r: r['step_s']) if candidates else None


def _ratio(row, reference):
  return f"{reference['step_s'] / row['step_s']:.2f}x" if row and reference else '–'


def print_tables(results, peaks):
  """All measurements, then one summary row per setting."""
  precisions = list(peaks['jax'])
  peak = {p: max(peaks['jax'][p], peaks.get('torch', {}).get(p, 0.0)) for p in precisions}
  print('\nmatmul peaks (best 2048^3, GFLOP/s): ' + '; '.join(
      f"{p}: XLA {peaks['jax'][p]:.0f}, PyTorch {peaks['torch'][p]:.0f}" if 'torch' in peaks
      else f"{p}: XLA {peaks['jax'][p]:.0f}" for p in precisions) +
        '. GFLOP/img: XLA cost analysis of the plain nn.Conv float32 step; % of peak: against '
        'the higher peak of the step\'s precision. vs PyTorch: against PyTorch\'s fastest '
        'step of the same precision.')
  print('\n| px | batch | data | precision | step | compile s | ms/step | CPU s/step | img/s '
        '| vs PyTorch | GFLOP/img | % of peak |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for (size, batch, poison), (rows, flops) in results.items():
    gflop_img = flops / batch / 1e9
    for r in rows:
      ips = batch / r['step_s']
      compile_s = '–' if r['compile_s'] is None else f"{r['compile_s']:.1f}"
      print(f"| {size} | {batch} | {'clean' if poison == 'none' else poison} | "
            f"{r['precision']} | {r['name']} | {compile_s} | {r['step_s'] * 1e3:.0f} | "
            f"{r['cpu_s']:.2f} | {ips:.1f} | {_ratio(r, _best(rows, 'PyTorch', r['precision']))} "
            f"| {gflop_img:.2f} | {100 * gflop_img * ips / peak[r['precision']]:.0f}% |")
  print('\n| px | batch | data | JAX fp32 img/s | PyTorch best fp32 img/s | JAX / PyTorch fp32 | '
        'JAX bf16 img/s | PyTorch bf16 autocast img/s | JAX / PyTorch bf16 | % of peak '
        '(JAX fp32, bf16) |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for (size, batch, poison), (rows, flops) in results.items():
    cells = []
    utilisation = []
    for precision in PRECISIONS:  # A precision not measured prints dashes.
      jax_row, torch_row = _best(rows, 'JAX', precision), _best(rows, 'PyTorch', precision)
      for row in (jax_row, torch_row):
        label = row and row['name'].split(' ', 1)[1]
        cells.append(f"{batch / row['step_s']:.1f} ({label})" if row else '–')
      cells.append(_ratio(jax_row, torch_row))
      if jax_row:
        utilisation.append(f"{100 * flops / jax_row['step_s'] / 1e9 / peak[precision]:.0f}%")
    print(f"| {size} | {batch} | {'clean' if poison == 'none' else poison} | "
          f"{' | '.join(cells)} | {', '.join(utilisation) or '–'} |")


def main(argv):
  """Measures every setting the flags ask for and prints the measurements and tables."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default=f'{MAIN_JOB_SIZE},64,224',
                      help="image sizes, px (default: the main job's, the 64 px study's, "
                      "the real release's)")
  parser.add_argument('--batches', default='32', help='global batch sizes, e.g. 32,128')
  parser.add_argument('--impls', default='im2col,xla', help='model.conv_impl values')
  parser.add_argument('--dtypes', default='',
                      help='model.dtype values (default: float32, and bfloat16 where the CPU '
                      'has bfloat16 instructions)')
  parser.add_argument('--poison', default='none,wanet', help='attack.kind values')
  parser.add_argument('--steps', type=int, default=10, help='timed steps (median)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  parser.add_argument('--rounds', type=int, default=1,
                      help='JAX-then-PyTorch rounds per setting; each row keeps its best')
  parser.add_argument('--optimizer', default='adam', choices=('adam', 'sgd'))
  parser.add_argument('--torch-variants', default='',
                      help='torch_reference.py --variants (default: fp32_nchw,'
                      'fp32_channels_last, and bf16_channels_last where bfloat16 is measured)')
  parser.add_argument('--no-torch', action='store_true', help='skip the PyTorch reference')
  parser.add_argument('--no-hugetlb', action='store_true',
                      help='do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1')
  parser.add_argument('--ynn-convolutions', action='store_true',
                      help="keep XLA's YNNPACK convolutions (no lowering.use_eigen_convolutions)")
  parser.add_argument('--cpus', default='',
                      help='e.g. 1: pin JAX and PyTorch to these CPU ids (both then size their '
                      'thread pools to them), for a fair comparison on a machine shared with '
                      'other work')
  parser.add_argument('--quick', action='store_true',
                      help='64 px, batch 32, clean, im2col only, 5 steps after 1 warm-up')
  args = parser.parse_args(argv)
  if args.cpus:  # Before JAX starts its thread pools; the PyTorch subprocess inherits it.
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(',')})
  _set_environment(not args.no_hugetlb, not args.ynn_convolutions)
  if args.quick:
    args.sizes, args.batches, args.impls, args.poison = '64', '32', 'im2col', 'none'
    args.steps, args.warmup = 5, 1

  _, flags = cpu_info()
  skipped = [p for p in PRECISIONS if p not in hardware_precisions(flags)]
  if not args.dtypes:
    args.dtypes = ','.join(hardware_precisions(flags))
    if skipped:
      print(f"# {', '.join(skipped)} skipped: this CPU reports none of "
            f"{', '.join(BF16_EXTENSIONS)}, so it would be emulated (--dtypes "
            f"float32,bfloat16 measures it anyway)")
  if not args.torch_variants:
    args.torch_variants = 'fp32_nchw,fp32_channels_last' + (
        ',bf16_channels_last' if 'bfloat16' in args.dtypes.split(',') else '')
  busy_before = cpu_busy_fraction()  # Others' work: this process is still idle.
  peaks = {'jax': {p: matmul_gflops(p) for p in PRECISIONS if p in args.dtypes.split(',')}}
  print(f'# {cpu_facts()}, {os.cpu_count()} CPUs; '
        f'jax {jax.__version__} on {jax.devices()[0].platform}; '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")!r}; '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}; {args.optimizer}; '
        f'pinned to CPUs {sorted(os.sched_getaffinity(0))}; '
        f'CPUs busy before: {_percent(busy_before)}', flush=True)
  sizes, batches = list(map(int, args.sizes.split(','))), list(map(int, args.batches.split(',')))
  results = {}
  for size in sizes:
    for batch in batches:
      for poison in args.poison.split(','):
        flops = model_flops(size, batch, poison, args.optimizer)
        results[size, batch, poison] = (measure_setting(args, size, batch, poison, peaks),
                                        flops)
  print_tables(results, peaks)
  busy_after = cpu_busy_fraction()
  if max(busy_before or 0, busy_after or 0) > 0.1:
    print(f'\nWARNING: other processes kept the CPUs {_percent(busy_before)} busy before and '
          f'{_percent(busy_after)} after the measurements, so these throughputs are low and '
          "noisy (PyTorch's spinning OpenMP threads suffer most). Compare the CPU s/step "
          'columns, or rerun on an idle machine.')


if __name__ == '__main__':
  main(sys.argv[1:])
