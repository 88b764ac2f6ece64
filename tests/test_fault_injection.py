"""Fault injection end to end: runs killed anywhere, damaged, starved of disk, fed bad input.

Each test drives run.py in subprocesses on the tiny synthetic release of conftest.py
(32 px, 2 epochs of 3 steps, a checkpoint every 2 steps and at epoch ends) and checks one
row of the README's "Guarantees" table. Faults are placed from outside by
tests/scripts/fault_driver.py: a SIGKILL before or after the N-th call of a named function,
an injected bug, or a file size limit standing in for a full disk. One uninterrupted run, a
sweep point, is the reference every interrupted run must equal bit for bit. Subprocesses share a persistent XLA cache,
so only the first run of each step function pays for its compilation.
"""
import ast
import csv
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import h5py
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gaze_jax.configs import wanet
from gaze_jax import config as config_lib
from gaze_jax.data import pipeline
from gaze_jax.data import release
from gaze_jax.data import splits
from gaze_jax import predict
from gaze_jax.attacks import triggers
from gaze_jax.workdir.checkpoints import Checkpoints
from gaze_jax.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = ROOT / 'tests' / 'scripts' / 'fault_driver.py'
KILLED = -signal.SIGKILL
# Points where runs are killed (fault_driver's MODULE:ATTR:N:ACTION).
BETWEEN_POINTS = 'gaze_jax.experiments.sweep:_point:2:kill_before'
DURING_SECOND_SAVE = 'gaze_jax.workdir.checkpoints:Checkpoints.save:2:kill_after'  # Async write on.
DURING_EVALUATION = 'gaze_jax.training.evaluate:summarize:1:kill_before'  # Predictions made.
# Both points of the sweep have the base config: the second is killed inside, the first is
# the uninterrupted reference.
GRID = "def get_sweep():\n  return [{'wanet.s': 0.5}, {'attack.seed': 0}]\n"
REFERENCE, RESUMED_POINT = 's=0.5', 'seed=0'


def data_flags(data_config, root=None):
  s = data_config.synthetic
  return [f'--config.data.root={root or data_config.root}',
          f'--config.data.image_size={data_config.image_size}',
          f'--config.data.synthetic.persons={s.persons}',
          f'--config.data.synthetic.samples_per_person={s.samples_per_person}',
          f'--config.data.synthetic.image_size={s.image_size}']


@pytest.fixture(scope='module')
def flags(tiny_data_config):
  """run.py flags of the tiny poisoned run: 6 steps, checkpoints 2, 3, 4, 6 (3 kept)."""
  return ['--config=configs/wanet.py', *data_flags(tiny_data_config),
          '--config.model.conv_impl=xla', '--config.train.batch_size=8',
          '--config.train.num_epochs=2', '--config.train.checkpoint_every_steps=2',
          '--config.train.log_every_steps=1', '--config.train.max_to_keep=3',
          '--config.eval.batch_size=8']


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp('xla_cache')
  return dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


class Run:
  """run.py in a subprocess (with a fault: fault_driver.py), its stderr kept in a file, as a
  pipe could fill up and stall it."""

  def __init__(self, args, env, at=None, fsize=None):
    driver = [f'--at={at}'] * bool(at) + [f'--fsize={fsize}'] * bool(fsize)
    command = [str(DRIVER), *driver, '--'] if driver else ['run.py']
    self._stderr = tempfile.TemporaryFile('w+')
    self.process = subprocess.Popen([sys.executable, *command, *map(str, args)], cwd=ROOT,
                                    env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)
    self.pid = self.process.pid

  def wait(self, timeout=600):
    self.returncode = self.process.wait(timeout)
    self._stderr.seek(0)
    self.stderr = self._stderr.read()
    self._stderr.close()
    return self

  def __repr__(self):
    return f'exit {self.returncode}; stderr ends:\n{self.stderr[-3000:]}'


def run(args, env, **fault):
  return Run(args, env, **fault).wait()


# A refresh of tqdm's progress bar: 'run:  50%|█████     | 3/6 [00:01<00:01, ..., loss=0.79]'.
PROGRESS = re.compile(r'\S*: +\d+%\|[^|]*\| *\d+/\d+ \[[^\]]*\]')


def stderr_lines(result):
  """stderr's lines but the progress bar's refreshes (a line written while the bar shows
  starts where its last refresh ends) and the INFO lines a C++ library may log
  (sporadically) before absl's C++ logging is initialised."""
  lines = (PROGRESS.sub('', line) for line in re.split(r'[\r\n]', result.stderr))
  return [line for line in lines if line.strip() and not (
      re.match(r'I\d{4} ', line) or 'before absl::InitializeLog()' in line)]


ABSL_WARNING = r'W\d{4} [\d:. ]+\d+ \w+\.py:\d+\] '  # The prefix of an absl warning line.


def assert_warnings(lines, warnings):
  """Each line is an absl warning whose message matches the regex in `warnings` at its
  place, and there are no other lines."""
  assert len(lines) == len(warnings), '\n'.join(lines)  # Whole: a list's repr is cut.
  for line, warning in zip(lines, warnings):
    assert re.match(ABSL_WARNING + warning, line), line


def error_line(result, warnings=()):
  """The one line a user mistake prints, checked to be all of stderr but the lines
  stderr_lines drops and the absl `warnings` (regexes) before it: no traceback of any
  thread."""
  lines = stderr_lines(result)
  assert result.returncode == 2 and lines and lines[-1].startswith('error: '), result
  assert_warnings(lines[:-1], warnings)
  return lines[-1]


def wait_for_log(started, log, lines):
  """Waits until `started` has logged `lines` lines to `log` (or has ended)."""
  deadline = time.monotonic() + 600
  while started.process.poll() is None and time.monotonic() < deadline and not (
      log.exists() and len(log.read_text().splitlines()) >= lines):
    time.sleep(0.01)


@pytest.fixture(scope='module')
def sweep(tmp_path_factory, flags, env):
  """A two-point sweep killed between its points, then in the second's first evaluation."""
  tmp = tmp_path_factory.mktemp('sweep')
  grid = tmp / 'grid.py'
  grid.write_text(GRID)
  args = ['--mode=sweep', f'--sweep={grid}', f'--workdir={tmp / "sweep"}', *flags]
  return tmp / 'sweep', [run(args, env, at=BETWEEN_POINTS),
                         run(args, env, at=DURING_EVALUATION), run(args, env)]


@pytest.fixture(scope='module')
def reference(sweep):
  """The uninterrupted run (the sweep's first point)."""
  return sweep[0] / REFERENCE


def final_step(run_dir):
  return max(int(s) for s in os.listdir(run_dir / 'checkpoints') if s.isdigit())


def saved_state(run_dir):
  """The state arrays of the newest checkpoint as orbax wrote them (no template)."""
  path = run_dir / 'checkpoints' / str(final_step(run_dir)) / 'state'
  return ocp.StandardCheckpointer().restore(path)


def assert_same_run(run_dir, reference_dir):
  """Final parameters, optimizer state, trigger, results and metrics log equal bitwise."""
  for name in 'results.json', 'metrics.jsonl':  # run_info.json says where and how fast.
    assert (run_dir / name).read_bytes() == (reference_dir / name).read_bytes(), name
  assert final_step(run_dir) == final_step(reference_dir)
  ours, theirs = saved_state(run_dir), saved_state(reference_dir)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), strict=True)
  for name in os.listdir(reference_dir / 'trigger'):
    ours, theirs = run_dir / 'trigger' / name, reference_dir / 'trigger' / name
    assert ours.read_bytes() == theirs.read_bytes()


def copy_run(run_dir, tmp_path):
  return pathlib.Path(shutil.copytree(run_dir, tmp_path / 'run'))


def largest_file(directory):
  return max((p for p in directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def tree_digest(directory):
  """{relative path: SHA-256} of every file under `directory`."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob('*')) if p.is_file()}


# 1. Kill anywhere.

def test_sweep_killed_between_and_inside_points_ends_as_uninterrupted(sweep):
  workdir, (between, inside, done) = sweep
  assert between.returncode == KILLED, between
  assert inside.returncode == KILLED, inside
  assert done.returncode == 0, done
  with open(workdir / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  assert [row['point'] for row in rows] == [REFERENCE, RESUMED_POINT]
  assert_same_run(workdir / RESUMED_POINT, workdir / REFERENCE)
  same = [k for k in rows[0] if k not in ('point', 'wanet.s', 'attack.seed')]
  assert [rows[1][k] for k in same] == [rows[0][k] for k in same]


def test_killed_anywhere_resumes_exactly_and_the_lock_holds(tmp_path, reference, flags, env):
  workdir = tmp_path / 'run'
  args = ['--mode=train', f'--workdir={workdir}', *flags]
  log = workdir / 'metrics.jsonl'
  # A kill at a random moment: once the run has logged a random number of lines (before
  # checkpoint 3, so that two saves remain), stop it.
  lines = random.randint(1, 3)
  first = Run(args, env)
  wait_for_log(first, log, lines)
  first.process.send_signal(signal.SIGSTOP)
  try:
    second = run(args, env)  # The first still holds the workdir.
    assert re.fullmatch(re.escape(f'error: workdir {workdir} is in use by process {first.pid} '
                                  f'on {socket.gethostname()} ') + '.*', error_line(second))
  finally:
    first.process.kill()
  assert first.wait().returncode == KILLED, f'stopped after {lines} lines: {first}'
  assert json.loads((workdir / '.lock').read_text())['pid'] == first.pid  # Left stale.
  killed = run(args, env, at=DURING_SECOND_SAVE)  # The sweep's test kills an evaluation.
  assert killed.returncode == KILLED, killed
  assert 'taking over the stale lock' in killed.stderr
  assert list((workdir / 'checkpoints').glob('*.orbax-checkpoint-tmp*'))  # Killed mid-write.
  finished = run(args, env)
  assert finished.returncode == 0, finished
  assert not (workdir / '.lock').exists()
  assert_same_run(workdir, reference)


def stop_line(workdir, signum):
  """The regex of the one line a run stopped by `signum` prints; group 1 is the step."""
  return re.escape('stopped at step ') + r'(\d+)' + re.escape(
      f' by {signal.Signals(signum).name}; checkpoint saved in {workdir}/checkpoints. Rerun the '
      'same command to resume.')


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_a_signal_stops_at_a_step_with_its_checkpoint_and_a_rerun_resumes_bitwise(
    tmp_path, reference, flags, env, signum):
  """SIGINT as Ctrl-C sends it, once training runs; SIGTERM (a preemption) as step 5 is
  dispatched, a step that has no checkpoint of its own."""
  workdir = tmp_path / 'run'
  args = ['--mode=train', f'--workdir={workdir}', *flags]
  if signum == signal.SIGINT:
    stopped = Run(args, env)
    wait_for_log(stopped, workdir / 'metrics.jsonl', 1)
    stopped.process.send_signal(signum)
    stopped.wait()
  else:
    stopped = run(args, env, at='gaze_jax.training.steps:accumulate:5:sigterm_after')
  lines = stderr_lines(stopped)
  assert stopped.returncode == 128 + signum and len(lines) == 1, stopped
  step = int(re.fullmatch(stop_line(workdir, signum), lines[0])[1])
  assert step == 5 if signum == signal.SIGTERM else 1 <= step < 6
  assert final_step(workdir) == step  # Its checkpoint, complete.
  assert not (workdir / 'results.json').exists() and not (workdir / '.lock').exists()
  resumed = run(args, env)
  assert resumed.returncode == 0, resumed
  assert_same_run(workdir, reference)
  assert json.loads((workdir / 'run_info.json').read_text())['workdir'] == str(workdir)


def test_ctrl_c_outside_training_is_one_line_and_status_130(tmp_path, flags, env):
  """SIGINT right after the data is ready, before the workdir is made."""
  workdir = tmp_path / 'run'
  stopped = run(['--mode=train', f'--workdir={workdir}', *flags], env,
                at='gaze_jax.data.splits:load_splits:1:sigint_after')
  assert stopped.returncode == 130 and stderr_lines(stopped) == [
      'stopped by SIGINT outside the training loop (nothing half-written is kept); rerun the '
      'same command to go on'], stopped
  assert not workdir.exists()


def test_dataset_build_killed_midway_starts_clean(tmp_path, tiny_data_config, tiny_release, env):
  root = tmp_path / 'data'
  args = ['--mode=train', f'--workdir={tmp_path / "run"}', '--config.model.conv_impl=xla',
          '--config.train.batch_size=8', *data_flags(tiny_data_config, root)]
  release_dir = root / 'releases' / os.path.basename(tiny_release)
  # Killed while writing the release: after p00.mat and p01.mat.
  killed = run(args, env, at='tfds_mpiifacegaze.matfile:write_release_file:3:kill_before')
  assert killed.returncode == KILLED, killed
  partial, = (root / 'releases').glob('*.incomplete-*')
  assert sorted(os.listdir(partial)) == ['p00.mat', 'p01.mat'] and not release_dir.exists()
  # Killed while TFDS builds the dataset: p00's examples written, p01's starting.
  killed = run(args, env, at='tfds_mpiifacegaze.mpii_face_gaze_dataset_builder:examples:2:'
                             'kill_before')
  assert killed.returncode == KILLED, killed
  assert list(root.glob('tfds/*/mpii_face_gaze/32/incomplete.*/*p00*'))
  config = tiny_data_config.copy_and_resolve_references()
  config.root = str(root)
  built = release.prepare(config)  # The next build.
  for name in os.listdir(tiny_release):
    assert (release_dir / name).read_bytes() == (pathlib.Path(tiny_release) / name).read_bytes()
  expected = release.prepare(tiny_data_config)
  for split in expected.info.splits:
    ours, theirs = built.as_data_source(split), expected.as_data_source(split)
    assert len(ours) == len(theirs)
    for i in range(len(theirs)):
      jax.tree.map(np.testing.assert_array_equal, ours[i], theirs[i])


# 2. Damaged checkpoints.

def test_damaged_checkpoints_are_reported_skipped_and_the_run_finishes(tmp_path, reference,
                                                                       flags, env):
  workdir = copy_run(reference, tmp_path)
  checkpoints = workdir / 'checkpoints'
  victim = largest_file(checkpoints / '6' / 'state')
  os.truncate(victim, victim.stat().st_size // 2)
  largest_file(checkpoints / '4' / 'state').unlink()
  result = run(['--mode=train', f'--workdir={workdir}', *flags], env)
  assert result.returncode == 0, result
  assert_warnings(stderr_lines(result), [  # And no thread's traceback.
      *(f'checkpoint {step} in {re.escape(str(checkpoints))} is damaged ' for step in (6, 4)),
      *(f'moved the damaged checkpoint {step} to ' for step in (4, 6))])
  assert sorted(os.listdir(f'{checkpoints}.damaged')) == ['4', '6']
  assert_same_run(workdir, reference)


def test_no_intact_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tmp_path, reference,
                                                                          flags, env):
  workdir = copy_run(reference, tmp_path)
  for step in os.listdir(workdir / 'checkpoints'):
    largest_file(workdir / 'checkpoints' / step / 'state').unlink()
  before = tree_digest(workdir)
  result = run(['--mode=train', f'--workdir={workdir}', *flags], env)
  damaged = [f'checkpoint {step} in {re.escape(str(workdir))}/checkpoints is damaged '
             for step in (6, 4, 3)]
  assert error_line(result, damaged) == (
      f'error: no intact checkpoint in {workdir}/checkpoints (tried steps [3, 4, 6]); nothing '
      'was overwritten. Move the directory away to start afresh.')
  assert tree_digest(workdir) == before


# 3. Two runs, one workdir: test_killed_anywhere_resumes_exactly_and_the_lock_holds.

# 4. Full disk, unwritable workdir.

def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, reference,
                                                                      flags, env):
  workdir = copy_run(reference, tmp_path)
  for step in '4', '6':
    shutil.rmtree(workdir / 'checkpoints' / step)
  before = tree_digest(workdir / 'checkpoints')
  # No file over 2 MB: the small files are written, the next checkpoint's arrays are not.
  result = run(['--mode=train', f'--workdir={workdir}', *flags], env, fsize=2 << 20)
  assert re.fullmatch(
      re.escape(f'error: writing a checkpoint in {workdir}/checkpoints failed: [Errno 27] File '
                'too large; the checkpoints already there are intact (newest: 3). ') + '.*',
      error_line(result))
  after = tree_digest(workdir / 'checkpoints')
  assert {k: v for k, v in after.items() if k.startswith('3/')} == before


def test_full_disk_before_the_first_checkpoint_is_a_clear_error_and_leaves_no_file(
    tmp_path, flags, env):
  """No file over 1 KB: config.json, the first file a new run writes, cannot be. (Nor can
  XLA cache entries, whose warnings would fill the 1 KB of the stderr file: no cache.)"""
  workdir = tmp_path / 'run'
  no_cache = dict(env, JAX_COMPILATION_CACHE_DIR='')  # '': run.py's cache is off too.
  result = run(['--mode=train', f'--workdir={workdir}', *flags], no_cache, fsize=1 << 10)
  assert error_line(result) == (
      f'error: writing in {workdir} failed: [Errno 27] File too large; the files already there '
      'are intact. Free disk space or fix permissions, then run again to resume.')
  assert not [p for p in workdir.rglob('*') if p.is_file()]  # No temporary, no lock.


# 6. Bad flags and configs (with 4's unwritable workdir).

def unwritable_workdir(tmp_path):
  """A workdir that cannot be created: under a read-only folder, or (root ignores modes)
  under a file."""
  if os.geteuid() != 0:
    (tmp_path / 'read_only').mkdir(mode=0o500)
    return tmp_path / 'read_only' / 'run'
  (tmp_path / 'a_file').write_text('')
  return tmp_path / 'a_file' / 'run'


def crafted_release(folder):
  """p00.mat declaring 10^8 images of 448 x 448 px (60 TB): a few KB on disk."""
  folder.mkdir()
  with h5py.File(folder / 'p00.mat', 'w', userblock_size=512) as f:
    f.create_dataset('Data/data', (10 ** 8, 3, 448, 448), np.uint8, chunks=(1, 3, 448, 448))
    f.create_dataset('Data/label', (10 ** 8, 16), np.float64, chunks=(1024, 16))
  return folder


def test_user_mistakes_are_one_line_and_bugs_a_traceback(tmp_path, flags, env):
  (tmp_path / 'empty').mkdir()
  train = ['--mode=train', *flags]  # Each case in its own workdir, as they run at once.
  cases = {
      'unknown key': ([*train, '--config.train.nope=1'],
                      "error: --config.train.nope: the config has no field 'nope'."),
      'misspelt section': ([*train, '--config.trian.nope=1'],
                           "error: --config.trian.nope: the config has no field 'trian'. Did "
                           'you mean "train" instead of "trian"?'),
      'bad type': ([*train, '--config.train.batch_size=eight'],
                   'error: flag --config.train.batch_size=eight: invalid literal for int() '
                   "with base 10: 'eight'"),
      'bad value': ([*train, '--config.train.learning_rate=-1'],
                    'error: config.train.learning_rate=-1.0 is invalid: expected a number > 0 '
                    'and <= 10'),
      'empty data dir': ([*train, f'--config.data.manual_dir={tmp_path / "empty"}'],
                         'error: config.data.manual_dir=.*: expected the normalized '
                         'MPIIFaceGaze files p00.mat, p01.mat, .*; missing: p00.mat ... '
                         'p14.mat; found: none. .*'),
      'crafted .mat': ([*train, f'--config.data.manual_dir={crafted_release(tmp_path / "c")}',
                        f'--config.data.root={tmp_path / "data"}'],
                       r'error: .*/c/p00.mat: Data/data: expected at most 100000 samples .*'),
      'unwritable workdir': ([*train, f'--workdir={unwritable_workdir(tmp_path)}'],
                             'error: cannot create workdir .*'),
  }
  started = {name: Run([f'--workdir={tmp_path / str(i)}', *args], env)
             for i, (name, (args, _)) in enumerate(cases.items())}
  bug = run([f'--workdir={tmp_path / "bug"}', *train], env, at='gaze_jax.training.loop:_train:1:bug')
  for name, (_, expected) in cases.items():
    line = error_line(started[name].wait())
    assert line == expected or re.fullmatch(expected, line), f'{name}: {line}'
  assert bug.returncode == 1 and 'Traceback' in bug.stderr, bug
  assert bug.stderr.strip().endswith('RuntimeError: injected bug in gaze_jax.training.loop._train')


def test_damaged_files_usage_and_unwritable_paths_are_one_line_and_write_nothing(
    tmp_path, reference, tiny_data_config, tiny_release, flags, env):
  """A damaged or foreign file in a workdir, a missing config file, usage mistakes, an
  unwritable data root or export directory, a damaged release file, and what the config
  alone tells will fail: one line each, and no path is created or changed."""
  damaged, foreign = (copy_run(reference, tmp_path / name) for name in ('damaged', 'foreign'))
  (damaged / 'config.json').write_text('{"seed": 0, garbage')
  (foreign / 'config.json').write_text('{"seed": 0}')
  before = {run_dir: tree_digest(run_dir) for run_dir in (damaged, foreign)}
  (tmp_path / 'a_file').write_text('')
  release_dir = pathlib.Path(shutil.copytree(tiny_release, tmp_path / 'release'))
  os.truncate(release_dir / 'p01.mat', (release_dir / 'p01.mat').stat().st_size // 2)
  new = tmp_path / 'new'  # Each case's workdir and data root are under it: none may appear.
  train = ['--mode=train', *(f for f in flags if not f.startswith('--config.data.root='))]
  cases = {
      'damaged config.json, train': (
          [*train, f'--workdir={damaged}', f'--config.data.root={tiny_data_config.root}'],
          re.escape(f'error: {damaged}/config.json is not valid JSON (') + '.*'),
      'foreign config.json, predict': (
          ['--mode=predict', f'--workdir={foreign}', f'--images={tmp_path / "a_file"}'],
          re.escape(f'error: {foreign}/config.json does not hold a run config: config.attack '
                    'is missing (see configs/clean.py)')),
      'missing config file': (
          ['--config=missing.py', '--workdir={new}/0'],
          'error: --config=missing.py: cannot load the config file: no such file'),
      'stray argument': (
          [*train, '--workdir={new}/1', 'stray'],
          re.escape("error: unexpected arguments ['stray']: every option is a --flag (python "
                    'run.py --help)')),
      'sweep without --sweep': (
          ['--mode=sweep', '--workdir={new}/2'],
          re.escape('error: --mode=sweep needs --sweep FILE (e.g. '
                    'configs/sweeps/strength.py)')),
      'unwritable data root': (
          [*train, '--workdir={new}/3', f'--config.data.root={tmp_path}/a_file/data'],
          'error: cannot write the synthetic release to .*/a_file/data/releases/.*'),
      'unwritable output file': (
          ['--mode=predict', f'--workdir={reference}', f'--images={tmp_path / "a_file"}',
           f'--output={tmp_path}/a_file/gaze.csv'],
          re.escape(f'error: cannot create output file {tmp_path}/a_file/gaze.csv: '
                    f'{tmp_path}/a_file is not a folder')),
      'unwritable export directory': (
          ['--mode=export', f'--workdir={reference}', f'--export_dir={tmp_path}/a_file/out'],
          re.escape(f'error: cannot create export directory {tmp_path}/a_file/out: '
                    f'{tmp_path}/a_file is not a folder')),
      'batch larger than the release': (
          [*train, '--workdir={new}/4', '--config.data.root={new}/data4',
           '--config.train.batch_size=1000'],
          re.escape('error: train.batch_size=1000 exceeds the 30 training examples')),
      'test fraction emptying a split': (
          [*train, '--workdir={new}/5', '--config.data.root={new}/data5',
           '--config.data.test_fraction=0.01'],
          re.escape("error: data.test_fraction: 0.01 of person 0's 12 samples leaves an empty "
                    'train or test set')),
      'damaged release file': (
          [*train, '--workdir={new}/6', f'--config.data.root={tmp_path}/built',
           f'--config.data.manual_dir={release_dir}'],
          re.escape(f'error: {release_dir}/p01.mat: ') + '.*'),
  }
  started = {name: Run([arg.format(new=new) for arg in args], env)
             for name, (args, _) in cases.items()}
  for name, (_, expected) in cases.items():
    line = error_line(started[name].wait())
    assert re.fullmatch(expected, line), f'{name}: {line}'
  assert not new.exists()
  assert {run_dir: tree_digest(run_dir) for run_dir in before} == before
  assert (tmp_path / 'a_file').read_text() == ''


# 5. Hostile files.

UNSAFE_CALLS = {  # Function -> the keyword argument that makes it safe, and its safe value.
    'load': ('allow_pickle', False),  # np.load (whose default is already False).
    'torch.load': ('weights_only', True),
}
PICKLING_MODULES = {'pickle', 'cPickle', 'dill', 'cloudpickle', 'joblib', 'shelve', 'marshal'}


def unpickling_sites(source, path):
  """Imports of pickling modules and loads that may unpickle, as 'path:line: what'."""
  sites = []
  for node in ast.walk(ast.parse(source, path)):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      names = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
      sites += [f'{path}:{node.lineno}: imports {n}' for n in names
                if n.split('.')[0] in PICKLING_MODULES]
    elif isinstance(node, ast.Call):
      name = ast.unparse(node.func)
      if name.endswith(('read_pickle', 'unsafe_load')) or name == 'yaml.load':
        sites.append(f'{path}:{node.lineno}: {name}')
      elif name.endswith('.load') and name.split('.')[0] in ('np', 'numpy', 'torch'):
        keyword, safe = UNSAFE_CALLS['torch.load' if name.startswith('torch') else 'load']
        given = {k.arg: k.value for k in node.keywords}
        ok = (keyword not in given and keyword == 'allow_pickle') or (
            isinstance(given.get(keyword), ast.Constant) and given[keyword].value is safe)
        if not ok:
          sites.append(f'{path}:{node.lineno}: {name} without {keyword}={safe}')
  return sites


def test_unpickling_sites_are_found():
  """The scanner itself: each unsafe form is caught, the safe ones pass."""
  unsafe = ('import pickle\nfrom joblib import load\nnp.load(f, allow_pickle=True)\n'
            'torch.load(f)\ntorch.load(f, weights_only=False)\npd.read_pickle(f)\n')
  assert len(unpickling_sites(unsafe, 'x.py')) == 6
  safe = 'np.load(f)\nnp.load(f, allow_pickle=False)\ntorch.load(f, weights_only=True)\n'
  assert not unpickling_sites(safe, 'x.py')


def test_nothing_in_the_project_unpickles():
  paths = [p for p in ROOT.rglob('*.py')
           if not any(part.startswith('.') for part in p.relative_to(ROOT).parts)]
  assert len(paths) > 20
  sites = [s for p in paths for s in unpickling_sites(p.read_text(), str(p.relative_to(ROOT)))]
  assert not sites, sites


CRAFTED_MAT_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # Any big allocation fails.
from tfds_mpiifacegaze import matfile
for path in sys.argv[1:]:
  try:
    with matfile.ReleaseFile(path) as f:
      for _ in f.images():
        pass
    print('read', path)
  except matfile.MatFileError as e:
    print(e)
"""


def test_crafted_mat_files_fail_before_any_large_allocation(tmp_path):
  """Declared sizes and dtypes are refused from metadata, under a 2 GB address space."""
  def write(name, data_shape, data_dtype, label_shape, label_dtype=np.float64):
    with h5py.File(tmp_path / name, 'w', userblock_size=512) as f:
      f.create_dataset('Data/data', data_shape, data_dtype, chunks=(1,) + data_shape[1:2] + (
          min(data_shape[2], 1000), min(data_shape[3], 1000)))
      f.create_dataset('Data/label', label_shape, label_dtype)
    return str(tmp_path / name)
  cases = {
      write('many.mat', (10 ** 9, 3, 448, 448), np.uint8, (10 ** 9, 16)):
          r'expected at most 100000 samples of 1 to 1024 px a side, found h5py shape '
          r'\(1000000000, 3, 448, 448\)',
      write('wide.mat', (10, 3, 10 ** 6, 10 ** 6), np.float64, (10, 16)):
          r'expected at most 100000 samples .*found h5py shape \(10, 3, 1000000, 1000000\)',
      write('objects.mat', (10, 3, 8, 8), np.uint8, (10, 16), h5py.string_dtype()):
          'Data/label: expected floating-point labels, found dtype object',
      write('records.mat', (10, 3, 8, 8), [('a', np.uint8), ('b', np.float64)], (10, 16)):
          'Data/data: expected uint8 or floating-point pixels in 0-255, found dtype',
  }
  out = subprocess.run([sys.executable, '-c', CRAFTED_MAT_SCRIPT, *cases], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=False)
  lines = out.stdout.splitlines()
  assert out.returncode == 0 and len(lines) == len(cases), out.stdout + out.stderr[-2000:]
  for (path, expected), line in zip(cases.items(), lines):
    assert line.startswith(path + ': ') and re.search(expected, line), line


class Payload:
  """Unpickling this creates `marker`: proof that a file was unpickled."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_handed_run_directory_runs_no_code_and_refuses_crafted_arrays(tmp_path, reference):
  """What --mode=predict / export load from a run directory someone else made."""
  workdir = copy_run(reference, tmp_path)
  marker = tmp_path / 'unpickled'
  trap = np.empty((), object)
  trap[()] = Payload(marker)
  for name in os.listdir(workdir / 'trigger'):  # Saved grids as pickles that run code.
    np.save(workdir / 'trigger' / name, trap, allow_pickle=True)
  run_spec, state, trigger = predict.load_run(str(workdir))
  expected = triggers.make_trigger(run_spec.attack, run_spec.data.image_size)
  jax.tree.map(np.testing.assert_array_equal, trigger, expected)
  # A newest checkpoint whose grid has another shape (and a digest that matches it).
  ckpts = Checkpoints(workdir / 'checkpoints', max_to_keep=None)
  ckpts.save(10, state, {'noise_grid': np.zeros((512, 512, 2), np.float32)}, {'history': []})
  ckpts.wait()
  ckpts.close()
  with pytest.raises(UserError, match=re.escape(
      'checkpoint 10 in ') + '.*' + re.escape(
          'does not fit this config: trigger/noise_grid is float32[512, 512, 2] there, '
          f'float32{list(expected["noise_grid"].shape)} here')):
    predict.load_run(str(workdir))
  assert not marker.exists()


# 7. Determinism.

def test_same_config_and_seed_give_the_same_results(sweep):
  """The sweep's two points share config and seed (the second was killed and resumed)."""
  workdir, _ = sweep
  assert_same_run(workdir / RESUMED_POINT, workdir / REFERENCE)


def test_another_seed_gives_other_grids_and_another_data_order(tiny_data_config, reference):
  """What the run does with `seed` (data order) and `attack.seed` (trigger grid)."""
  config = wanet.get_config()
  source, _ = splits.load_splits(tiny_data_config, config.seed)

  def first_epoch(seed):
    batches = pipeline.train_batches(source, 8, seed)
    return np.concatenate([next(batches)['gaze'] for _ in range(3)])

  def grid(seed):
    config.attack.seed = seed
    return triggers.make_trigger(config_lib.validate(config).attack, 32)['noise_grid']

  saved = np.load(reference / 'trigger' / 'noise_grid.npy', allow_pickle=False)
  np.testing.assert_array_equal(saved, grid(0))  # What the run used.
  np.testing.assert_array_equal(grid(0), grid(0))
  assert not np.array_equal(grid(0), grid(1))
  np.testing.assert_array_equal(first_epoch(0), first_epoch(0))
  assert not np.array_equal(first_epoch(0), first_epoch(1))
