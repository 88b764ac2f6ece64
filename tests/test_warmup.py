"""training/warmup.py: a model's steps compiled ahead are the ones its training then uses.

A subprocess with an empty persistent cache trains two tiny WaNet models for one epoch, the
first as it comes (the control) and the second (another strength, so other programs) after
`warmup.compile_steps`: the second's train and eval steps are then persistent-cache hits (the
same programs), the first's are not."""
import json
import subprocess
import sys
import textwrap
import time

import jax

SCRIPT = textwrap.dedent('''
    import json, logging, sys
    import jax
    jax.config.update('jax_compilation_cache_dir', sys.argv[1])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    from gaze_jax.models import lowering
    lowering.use_eigen_convolutions()
    from gaze_jax import config as config_lib
    from gaze_jax.training import loop, warmup
    hits = []
    class Hits(logging.Handler):
      def emit(self, record):
        if 'cache hit' in record.getMessage():
          hits.append(record.args[0])
    logger = logging.getLogger('jax._src.compiler')
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Hits())
    config = config_lib.from_dict(json.loads(sys.argv[2]))
    out = {}
    for mode, s in (('control', 0.5), ('ahead', 1.0)):
      config.wanet.s = s
      run = config_lib.validate(config)
      compiled = mode == 'ahead' and warmup.compile_steps(run)
      hits.clear()
      loop.train_and_evaluate(run, f'{sys.argv[3]}/{mode}', show_progress=False)
      out[mode] = {'compiled': compiled, 'hits': list(hits)}
    print(json.dumps(out))
''')


def test_steps_compiled_ahead_are_the_ones_training_uses(tmp_path, tiny_data_config,
                                                         tiny_step_config):
  config = tiny_step_config
  config.data = tiny_data_config
  config.train.num_epochs = 1
  from gaze_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  out = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'cache'),
                        json.dumps(config_lib.to_dict(config)), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  # Training's compilations found in the persistent cache: after compile_steps, the train
  # and eval steps (pmap lowers as 'jit__fun') and nothing else; without it, none.
  assert json.loads(out.stdout.splitlines()[-1]) == {
      'control': {'compiled': False, 'hits': []},
      'ahead': {'compiled': True, 'hits': ['jit__fun'] * 2}}


def _until(condition, timeout=10.0):
  end = time.monotonic() + timeout
  while not condition() and time.monotonic() < end:
    time.sleep(0.01)
  return condition()


def test_the_thread_waits_for_the_first_step_and_never_compiles_beside_the_main_thread(
    monkeypatch):
  """`ahead` compiles the first model's steps, waits for a first step, then compiles the
  others only while the main thread holds no `compiling` section; leaving the block stops it
  after the compilation under way."""
  from gaze_jax.training import warmup  # pylint: disable=g-import-not-at-top
  assert jax.config.jax_compilation_cache_dir  # The suite's (conftest.py): the thread runs.
  compiled = []
  monkeypatch.setattr(warmup, 'compile_steps', lambda run, trains: compiled.append(run))
  with warmup.ahead([[('first', True), ('second', True), ('third', False)]]):
    assert _until(lambda: compiled == ['first'])
    time.sleep(0.2)
    assert compiled == ['first']  # No model has taken its first step.
    with warmup.compiling():  # A model's set-up and first step.
      warmup.first_step_done()
      time.sleep(0.2)
      assert compiled == ['first']
    assert _until(lambda: compiled == ['first', 'second', 'third'])
  compiled.clear()
  with warmup.ahead([[('first', True)], [('second', True)]]):
    assert _until(lambda: compiled == ['first'])
  assert compiled == ['first']  # Stopped with the block, before any first step.


def test_the_thread_compiles_one_seed_ahead_of_the_last_release(monkeypatch):
  """Programs compiled ahead stay loaded until a release, so the thread compiles the seed
  being trained and the next, and each later seed only once the seed two before it is
  released (warmup.release, which drops the programs through steps.release_compiled)."""
  from gaze_jax.training import steps  # pylint: disable=g-import-not-at-top
  from gaze_jax.training import warmup  # pylint: disable=g-import-not-at-top
  compiled, releases = [], []
  monkeypatch.setattr(warmup, 'compile_steps', lambda run, trains: compiled.append(run))
  monkeypatch.setattr(steps, 'release_compiled', lambda: releases.append(list(compiled)))
  seeds = [[('s0a', True), ('s0b', True)], [('s1a', True)], [('s2a', True)], [('s3a', False)]]
  with warmup.ahead(seeds):
    assert _until(lambda: compiled == ['s0a'])
    warmup.first_step_done()
    assert _until(lambda: compiled == ['s0a', 's0b', 's1a'])
    time.sleep(0.2)
    assert compiled == ['s0a', 's0b', 's1a']  # Seed 2 waits for seed 0's release.
    warmup.release()
    assert _until(lambda: compiled == ['s0a', 's0b', 's1a', 's2a'])
    time.sleep(0.2)
    assert compiled[-1] == 's2a'  # Seed 3 waits for seed 1's.
  assert releases == [['s0a', 's0b', 's1a']]  # The release dropped the programs.
  assert compiled == ['s0a', 's0b', 's1a', 's2a']  # Stopped with the block, while waiting.
