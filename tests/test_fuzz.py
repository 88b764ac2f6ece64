"""Property-based fuzzing of what a user hands the program: damaged files and random flags.

Each property feeds hypothesis' cases to the code the command line runs, in this process
(a subprocess per case would not fit CI's budget; tests/test_fault_injection.py shows the
same paths end to end). Every case must end in a clean error (UserError, or the one-line
`error:` exit of cli.fail) or a correct result, never another exception, and must leave
the files it read as they were. Cases are derandomized and bounded, so CI is reproducible.
"""
import contextlib
import copy
import io
import json
import os
import shutil
import tempfile

import hypothesis
import jax
import numpy as np
import pytest
from absl import flags
from hypothesis import strategies as st
from ml_collections import config_flags

from gaze_jax import cli
from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.configs import wanet
from gaze_jax.data import splits
from gaze_jax.errors import UserError
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.training import state as state_lib
from gaze_jax.workdir import checkpoints
from gaze_jax.workdir import rundir
from tfds_mpiifacegaze import matfile
from tfds_mpiifacegaze import synthesize

WANET = os.path.join(cli.CONFIGS, 'wanet.py')


def fuzz(max_examples):
  """Hypothesis settings for CI: derandomized (the same cases every run), bounded."""
  return hypothesis.settings(max_examples=max_examples, derandomize=True, deadline=None,
                             database=None, print_blob=True)


@st.composite
def damage(draw, size):
  """(offset, xor mask) flipping one byte of a `size`-byte file, or (length, None)
  truncating it to that length."""
  if size == 0 or draw(st.booleans()):
    return draw(st.integers(0, max(size - 1, 0))), None
  return draw(st.integers(0, size - 1)), draw(st.integers(1, 255))


def apply_damage(path, where):
  offset, mask = where
  if mask is None:
    os.truncate(path, offset)
    return
  with open(path, 'r+b') as f:
    f.seek(offset)
    byte = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([byte ^ mask]))


def file_bytes(directory):
  return {os.path.relpath(os.path.join(r, f), directory): open(os.path.join(r, f), 'rb').read()
          for r, _, fs in os.walk(directory) for f in fs}


@contextlib.contextmanager
def copy_of(directory):
  with tempfile.TemporaryDirectory() as tmp:
    yield shutil.copytree(directory, os.path.join(tmp, 'copy'))


# 1. --config.FIELD=VALUE overrides.

def _flat_fields(tree, prefix=''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat_fields(value, f'{prefix}{key}.')
    else:
      yield prefix + key


TEXT = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'),
               max_size=12)
VALUES = st.one_of(
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.integers(-3, 40).map(str),  # Plausible sizes, counts, epochs and periods.
    st.integers(-3, 40).map(str),
    st.floats().map(repr),
    st.floats(-0.5, 1.5).map(repr),  # Plausible fractions, rates and strengths.
    st.floats(-0.5, 1.5).map(repr),
    st.tuples(st.floats(-1, 1), st.floats(-1, 1)).map(repr),
    st.sampled_from(['-1', '0', '2147483647', '2147483648', '4294967296', str(2 ** 63),
                     '1e308', 'nan', 'inf', '-inf', '1e-320']),  # Where types overflow.
    st.sampled_from(['True', 'False', 'None', '()', '(1, 2)', '(0.1, 0.2, 0.3)', '[]', "''",
                     'random_split', 'leave_one_person_out', 'wanet', 'badnets', 'blended',
                     'none', 'wsd', 'l2', 'sgd', 'xla', 'bfloat16', '1e-3']),
    TEXT)
OVERRIDES = st.lists(st.tuples(st.sampled_from(sorted(_flat_fields(
    config_lib.to_dict(wanet.get_config())))), VALUES), min_size=1, max_size=3)


def parse(argv):
  """The --config flag of argv parsed as cli.py parses it, into a fresh set of flags."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', WANET, flag_values=values, lock_config=True,
                                  sys_argv=argv)
  with cli.flag_errors(argv):
    values(argv)
    values.config.keys()
  return values.config


@fuzz(max_examples=300)
@hypothesis.given(OVERRIDES)
@hypothesis.example([('seed', str(2 ** 63))])  # Found before: a traceback at the first key.
@hypothesis.example([('attack.seed', str(2 ** 32))])  # Refused now: its key was seed 0's.
@hypothesis.example([('train.batch_size', '1000')])  # Found before: after writing 20 paths.
def test_random_overrides_end_in_one_error_line_or_a_run_that_reads_back(tmp_path_factory,
                                                                         overrides):
  """Parsing, validation and the checks made before anything is written, as cli.py runs
  them for --mode=train; an accepted config must read back from its config.json."""
  argv = ['run.py', f'--config={WANET}', *(f'--config.{k}={v}' for k, v in overrides)]
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      config = parse(argv)
    run = config_lib.validate(config)
    loop.check_before_writing(run, str(tmp_path_factory.getbasetemp() / 'unused_workdir'))
  except SystemExit as e:  # cli.fail: one line, status 2.
    assert e.code == 2 and stderr.getvalue().count('\n') == 1, stderr.getvalue()
    assert stderr.getvalue().startswith('error: ')
    hypothesis.event('a flag error')
    return
  except UserError as e:
    assert str(e)
    hypothesis.event('a config error')
    return
  hypothesis.event('a valid config')
  saved = json.loads(json.dumps(run.config))  # What config.json holds.
  assert config_lib.validate(config_lib.from_dict(saved), check_environment=False) == run
  start_of_training(run)


def start_of_training(run):
  """What training computes from the config alone before its first step: keys, the
  trigger, the split sizes, the optimizer's schedule."""
  for offset in range(3):  # loop.py and experiments/main.py derive keys seed + 0, 1, 2.
    jax.random.key(run.seed + offset)
  triggers.make_trigger(run.attack, run.data.image_size)
  counts = splits.release_counts(run.data)
  steps_per_epoch = splits.train_size(run.data, counts) // run.train.batch_size
  schedule = state_lib.make_schedule(run.train, steps_per_epoch)
  total = steps_per_epoch * run.train.num_epochs
  rates = [float(schedule(step)) for step in (0, total // 2, total)]
  assert all(np.isfinite(rates)), rates


# 2. A damaged config.json in a run directory.

@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A run directory holding only config.json (all that the code fuzzed here reads)."""
  directory = tmp_path_factory.mktemp('run')
  config = config_lib.validate(wanet.get_config()).config  # As a run writes it.
  (directory / rundir.CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
  return str(directory)


@fuzz(max_examples=200)
@hypothesis.given(st.data())
def test_damaged_config_json_is_refused_or_read_as_written(run_dir, data):
  """What --mode=train (same config?) and --mode=predict/export (which config?) read."""
  original = json.loads(open(os.path.join(run_dir, rundir.CONFIG_FILE)).read())
  with copy_of(run_dir) as directory:
    path = os.path.join(directory, rundir.CONFIG_FILE)
    apply_damage(path, data.draw(damage(os.path.getsize(path))))
    before = file_bytes(directory)
    try:
      rundir.check_same_config(directory, original)
      same = True
    except UserError:
      same = False
    try:
      run = runs.load(directory)
    except UserError:
      run = None
    assert file_bytes(directory) == before
    written = before[rundir.CONFIG_FILE]
  try:
    says = json.loads(written)
  except ValueError:
    says = None
  assert same == (says == original)
  if run is not None:  # Read as written, and a valid config.
    assert run.config == says


# 3. A damaged pXX.mat file.

@pytest.fixture(scope='module')
def mat_file(tmp_path_factory):
  directory = tmp_path_factory.mktemp('release')
  synthesize.write_release(str(directory), persons=1, samples=4, size=16, seed=0)
  path = str(directory / matfile.file_name(0))
  return path, read_release_file(path)


def read_release_file(path):
  """(labels, images) of a release file, read as the dataset builder reads it."""
  with matfile.ReleaseFile(path) as f:
    images = np.concatenate([chunk for _, chunk in f.images(chunk_size=3)])
    return f.labels, images


@fuzz(max_examples=300)
@hypothesis.given(st.data())
def test_damaged_mat_file_is_refused_naming_it_or_read_in_its_layout(mat_file, data):
  path, (labels, images) = mat_file
  with tempfile.TemporaryDirectory() as tmp:
    damaged = os.path.join(tmp, 'p00.mat')
    shutil.copyfile(path, damaged)
    apply_damage(damaged, data.draw(damage(os.path.getsize(damaged))))
    before = open(damaged, 'rb').read()
    try:
      read_labels, read_images = read_release_file(damaged)
    except matfile.MatFileError as e:
      assert str(e).startswith(damaged + ': ')
      read_labels = None
    assert open(damaged, 'rb').read() == before
  if read_labels is not None:  # Damage in a byte that holds a value: the layout holds.
    assert read_labels.shape == labels.shape and np.isfinite(read_labels).all()
    assert read_images.shape == images.shape and read_images.dtype == np.uint8


# 4. A damaged checkpoint.

def small_state(scale):
  return {'w': np.arange(64, dtype=np.float32) * scale, 'b': np.ones(3, np.float32) * scale}


TRIGGER = {'noise_grid': np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 4, 2)}


@pytest.fixture(scope='module')
def checkpoint_dir(tmp_path_factory):
  """Checkpoints 1 and 2; the fuzzed case damages a file of 2."""
  directory = str(tmp_path_factory.mktemp('checkpoints') / 'ck')
  ckpts = checkpoints.Checkpoints(directory, max_to_keep=3)
  for step in 1, 2:
    ckpts.save(step, small_state(step), TRIGGER, {'history': [step]})
  ckpts.wait()
  ckpts.close()
  return directory


def restore(directory):
  ckpts = checkpoints.Checkpoints(directory, max_to_keep=3)
  try:
    return ckpts.restore_latest(small_state(0.0), copy.deepcopy(TRIGGER))
  finally:
    ckpts.close()


@fuzz(max_examples=60)
@hypothesis.given(st.data())
def test_damaged_checkpoint_restores_bitwise_or_falls_back_to_the_intact_one(checkpoint_dir,
                                                                            data):
  with copy_of(checkpoint_dir) as directory:
    names = sorted(name for name in file_bytes(directory) if name.startswith('2/'))
    victim = os.path.join(directory, data.draw(st.sampled_from(names)))
    apply_damage(victim, data.draw(damage(os.path.getsize(victim))))
    before = file_bytes(directory)
    state, trigger, meta = restore(directory)
    assert file_bytes(directory) == before
  step = meta['history'][0]  # 2 if the damage changed nothing that is read, else 1.
  assert step in (1, 2)
  for name, value in small_state(step).items():
    np.testing.assert_array_equal(state[name], value, strict=True)
  np.testing.assert_array_equal(trigger['noise_grid'], TRIGGER['noise_grid'], strict=True)
