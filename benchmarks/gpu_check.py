"""One-shot accelerator check: the 224 px train step in JAX and PyTorch on the same GPU.

Measures, each in its own subprocess (a failure or an out-of-memory in one leaves the others;
JAX's GPU memory preallocation cannot starve PyTorch), within a total budget of `--budget`
seconds (default 220):

- the matmul peak of the card (JAX, bfloat16 and float32 8192^3),
- the project's real train step (`gaze_jax.training.steps`, plain `nn.Conv` lowering) at 224 px
  and batch `--batch` (256 fills an 80 GB card's compute), float32 and bfloat16 compute,
- the PyTorch reference (`torch_reference.py`) on the same card, channels_last, with and
  without bfloat16 autocast,

and prints one table with the device name, images/s, the JAX / PyTorch ratio and the model
FLOP utilisation (FLOPs per step from XLA's cost analysis of the step, over the measured
matmul peak of the same dtype; float32 matmuls and convolutions may use TF32 in both
frameworks, as their defaults allow). Uses whatever jax and torch are installed; says so
clearly when JAX has no GPU backend. Run through benchmarks/gpu_check.sh, which installs
nothing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _emit(record):
  print('RESULT ' + json.dumps(record), flush=True)


def part_jax_peak():
  """Emits JAX's device and, on a GPU, its bfloat16 and float32 matmul peaks."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  _emit({'kind': 'device', 'backend': jax.default_backend(), 'jax': jax.__version__,
         'name': getattr(device, 'device_kind', str(device))})
  if jax.default_backend() != 'gpu':
    return
  n = 8192
  for dtype in ('bfloat16', 'float32'):
    a = jnp.ones((n, n), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    times = []
    for _ in range(10):
      start = time.perf_counter()
      matmul(a, a).block_until_ready()
      times.append(time.perf_counter() - start)
    _emit({'kind': 'peak', 'dtype': dtype, 'flops_per_s': 2 * n**3 / min(times)})


def part_jax_step(dtype, batch, steps):
  """The project's pmapped train step on one device, clean data, 224 px."""
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from gaze_jax import config as config_lib
  from gaze_jax.attacks import triggers
  from gaze_jax.configs import clean
  from gaze_jax.data import device
  from gaze_jax.training import state as state_lib
  from gaze_jax.training import steps
  config = clean.get_config()
  config.data.image_size, config.train.batch_size = 224, batch
  config.data.synthetic.image_size = 224  # The validated minimum for 224 px images.
  config.model.dtype, config.model.conv_impl = dtype, 'xla'
  run = config_lib.validate(config)
  state = state_lib.create(run, state_lib.initial_variables(run, jax.random.key(0)),
                           100)
  trigger = triggers.make_trigger(run.attack, 224)
  rng = np.random.default_rng(0)
  arrays = device.shard({'image': rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
                         'gaze': rng.uniform(-0.5, 0.5, (batch, 2)).astype(np.float32)})
  arrays = jax.device_put(arrays)
  key = jax.random.key(1)
  lowered = steps.make_train_step(run).lower(state, arrays, key, trigger, {})
  cost = lowered.cost_analysis()
  flops = sum(c.get('flops', 0.0) for c in (cost if isinstance(cost, list) else [cost]))
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  for _ in range(3):
    state, metrics = compiled(state, arrays, key, trigger, {})
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, arrays, key, trigger, {})
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  _emit({'kind': 'step', 'framework': 'JAX', 'variant': f'{dtype} compute', 'dtype': dtype,
         'batch': batch, 'step_s': step_s, 'images_per_s': batch / step_s,
         'compile_s': compile_s, 'flops_per_step': flops,
         'loss': float(np.asarray(metrics['loss']).ravel()[0])})


def part_torch(autocast, batch, steps):
  """Emits the PyTorch reference's 224 px train step on the GPU, with or without autocast."""
  sys.path.insert(0, HERE)
  import torch  # pylint: disable=g-import-not-at-top
  import torch_reference  # pylint: disable=g-import-not-at-top
  if not torch.cuda.is_available():
    raise RuntimeError(f'torch {torch.__version__} sees no CUDA device')
  result = torch_reference.measure(224, batch, steps, 3, 'clean', 'adam', channels_last=True,
                                   device='cuda',
                                   autocast_dtype=torch.bfloat16 if autocast else None)
  _emit({'kind': 'step', 'framework': 'PyTorch', 'dtype': 'bfloat16' if autocast else 'float32',
         'variant': 'channels_last' + (', bf16 autocast' if autocast else ', float32'),
         'batch': batch, 'step_s': result['step_s'], 'images_per_s': result['images_per_s'],
         'device_name': torch.cuda.get_device_name(0)})


def _run_part(args, part, timeout):
  """Runs one part in a subprocess; returns its RESULT records (an error record on failure)."""
  command = [sys.executable, os.path.abspath(__file__), '--part', part,
             '--batch', str(args.batch), '--steps', str(args.steps)]
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  start = time.perf_counter()
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    out, err, code = proc.stdout, proc.stderr, proc.returncode
  except subprocess.TimeoutExpired as e:
    out, err, code = e.stdout or '', f'timed out after {timeout:.0f} s', 'timeout'
    out = out.decode() if isinstance(out, bytes) else out
  records = [json.loads(line[7:]) for line in out.splitlines() if line.startswith('RESULT ')]
  print(f'  {part}: exit {code}, {time.perf_counter() - start:.0f} s', flush=True)
  if code != 0 and not records:
    tail = (err if isinstance(err, str) else err.decode()).strip().splitlines()[-1:]
    records.append({'kind': 'error', 'part': part, 'error': ' | '.join(tail)})
  return records


def main(argv):
  """Runs every part within the budget and prints the table, or runs one part (--part)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--budget', type=float, default=220.0, help='seconds for everything')
  parser.add_argument('--part', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.part:
    name, _, arg = args.part.partition(':')
    if name == 'jax_peak':
      part_jax_peak()
    elif name == 'jax_step':
      part_jax_step(arg, args.batch, args.steps)
    else:
      part_torch(arg == 'bf16', args.batch, args.steps)
    return

  deadline = time.perf_counter() + args.budget
  records = _run_part(args, 'jax_peak', 40)
  parts = [('torch:bf16', 60), ('torch:fp32', 60)]
  if any(r.get('kind') == 'device' and r['backend'] == 'gpu' for r in records):
    parts = [('jax_step:bfloat16', 90), ('torch:bf16', 50), ('jax_step:float32', 90),
             ('torch:fp32', 50)]
  else:
    records.append({'kind': 'error', 'part': 'jax', 'error': (
        'JAX has no GPU backend here (it needs jax[cuda12]==0.10.2): no JAX rows')})
  for part, cap in parts:  # Each part gets what is left of the budget, up to its cap.
    left = deadline - time.perf_counter()
    if left < 15:
      records.append({'kind': 'error', 'part': part, 'error': 'skipped: out of time'})
    else:
      records += _run_part(args, part, min(cap, left))

  device = next((r for r in records if r.get('kind') == 'device'), {})
  torch_name = next((r['device_name'] for r in records if 'device_name' in r), None)
  peaks = {r['dtype']: r['flops_per_s'] for r in records if r.get('kind') == 'peak'}
  print(f"\ndevice: {device.get('name') or torch_name or 'unknown'} "
        f"(JAX {device.get('jax', '?')} backend {device.get('backend', '?')}; "
        f'PyTorch sees {torch_name or "no GPU"})')
  print('matmul peak (JAX, 8192^3): ' + ', '.join(
      f'{k} {v / 1e12:.0f} TFLOP/s' for k, v in peaks.items()) if peaks else 'matmul peak: -')
  steps = [r for r in records if r.get('kind') == 'step']
  torch_best = {d: max((r['images_per_s'] for r in steps
                        if r['framework'] == 'PyTorch' and r['dtype'] == d), default=None)
                for d in ('float32', 'bfloat16')}
  flops = next((r['flops_per_step'] for r in steps if r.get('flops_per_step')), None)
  print(f'\n| framework | 224 px train step | batch | img/s | compile s | vs PyTorch '
        f'(same dtype) | MFU (vs matmul peak) |')
  print('|---|---|---|---|---|---|---|')
  for r in steps:
    ref = torch_best[r['dtype']]
    ratio = f"{r['images_per_s'] / ref:.2f}x" if ref and r['framework'] == 'JAX' else '-'
    peak = peaks.get(r['dtype'])
    mfu = f"{100 * flops / r['step_s'] / peak:.0f}%" if flops and peak else '-'
    compile_s = f"{r['compile_s']:.0f}" if 'compile_s' in r else '-'
    print(f"| {r['framework']} | {r['variant']} | {r['batch']} | {r['images_per_s']:.0f} | "
          f'{compile_s} | {ratio} | {mfu} |')
  if flops:
    print(f'\nmodel FLOPs per image (XLA cost analysis): {flops / args.batch / 1e9:.2f} GFLOP')
  for r in records:
    if r.get('kind') == 'error':
      print(f"note: {r['part']}: {r['error']}")


if __name__ == '__main__':
  main(sys.argv[1:])
