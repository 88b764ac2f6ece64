"""Runs run.py with a fault injected, for tests/test_fault_injection.py.

  python tests/scripts/fault_driver.py [--at MODULE:ATTR:N:ACTION] [--fsize BYTES] -- FLAGS...

--at wraps the function MODULE.ATTR (e.g. gaze_jax.workdir.checkpoints:Checkpoints.save) so that
its N-th call in this process (1-based) is hit by ACTION: 'kill_before' / 'kill_after'
(SIGKILL before it runs or once it returns), 'sigint_after' / 'sigterm_after' (that signal,
once it returns: Ctrl-C or a preemption at a known moment) or 'bug' (a RuntimeError instead
of it, standing in for a programming error). --fsize caps the size of any file this process writes
(RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG), as a full disk does.
The library keeps no test hooks: faults are placed from outside, here.
"""
import argparse
import functools
import importlib
import os
import resource
import runpy
import signal
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ACTIONS = ('kill_before', 'kill_after', 'sigint_after', 'sigterm_after', 'bug')
AFTER = {'kill_after': signal.SIGKILL, 'sigint_after': signal.SIGINT,
         'sigterm_after': signal.SIGTERM}


def inject(spec):
  """Wraps the function named by spec = 'MODULE:ATTR:N:ACTION'."""
  module_name, attr, n, action = spec.split(':')
  if action not in ACTIONS:
    raise SystemExit(f'fault_driver: ACTION must be one of {ACTIONS}, got {action!r}')
  *path, name = attr.split('.')
  owner = importlib.import_module(module_name)
  for part in path:
    owner = getattr(owner, part)
  original = getattr(owner, name)
  calls = 0

  @functools.wraps(original)
  def wrapper(*args, **kwargs):
    nonlocal calls
    calls += 1
    if calls != int(n):
      return original(*args, **kwargs)
    if action == 'bug':
      raise RuntimeError(f'injected bug in {module_name}.{attr}')
    if action == 'kill_before':
      os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    os.kill(os.getpid(), AFTER[action])
    return result

  setattr(owner, name, wrapper)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--at')
  parser.add_argument('--fsize', type=int)
  args, flags = parser.parse_known_args()
  if args.fsize:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))
  sys.path.insert(0, ROOT)
  if args.at:
    inject(args.at)
  sys.argv = [os.path.join(ROOT, 'run.py')] + [f for f in flags if f != '--']
  runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
  main()
