"""Shared fixtures: a tiny synthetic release and a `data` config built on it once.

`tiny_data_config` is the `data` section of configs/clean.py pointed at a session
temporary root, sized for tests (3 persons x 12 samples, 64 px source, 32 px
images); its TFDS dataset is built once, when the fixture is first used (~1 s).
`tiny_release` is the folder of that release's p00.mat ... p02.mat. Both are shared
by the whole session: copy the config (`copy.deepcopy`) before changing it, and do
not write into the release folder.
"""
import os
import shutil
import tempfile

# One persistent XLA cache for this test session, inherited by the run.py subprocesses, so the
# same step compiled again (resume, fault and CLI tests) is loaded, not recompiled. New per
# session: no entry outlives the code that compiled it. pytest-xdist's workers (pytest.ini runs
# one per core) inherit it from the controlling process and each keeps a folder of its own in
# it: JAX writes an entry in place, and a process that reads one another is still writing warns
# and compiles again, a line the tests that read stderr do not expect.
_CACHE = None if 'JAX_COMPILATION_CACHE_DIR' in os.environ else tempfile.mkdtemp(
    prefix='gaze_jax_xla_')
if _CACHE:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
if 'PYTEST_XDIST_WORKER' in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(
      os.environ['JAX_COMPILATION_CACHE_DIR'], os.environ['PYTEST_XDIST_WORKER'])
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top,wrong-import-position

from gaze_jax.configs import clean
from gaze_jax.configs import wanet
from gaze_jax.data import release
from gaze_jax.models import lowering

tfds.disable_progress_bar()
lowering.use_eigen_convolutions()  # As run.py does; subprocesses inherit it.


@pytest.fixture(scope='session')
def tiny_data_config(tmp_path_factory):
  d = clean.get_config().data
  d.root = str(tmp_path_factory.mktemp('data'))
  d.image_size = 32
  d.synthetic.persons = 3
  d.synthetic.samples_per_person = 12
  d.synthetic.image_size = 64
  release.prepare(d)
  return d


@pytest.fixture(scope='session')
def tiny_release(tiny_data_config):
  return release.synthetic_release(tiny_data_config)


@pytest.fixture
def tiny_step_config():
  """configs/wanet.py sized for one-step tests: 32 px, the plain lowering, batch 8 with 2
  backdoor rows (pc 0.25). A fresh copy each time."""
  config = wanet.get_config()
  config.data.image_size = 32
  config.model.conv_impl = 'xla'
  config.train.batch_size = 8
  config.attack.pc = 0.25
  return config


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  """Removes the session's compilation cache."""
  if _CACHE:
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def train_on_one_batch():
  """A function that trains `state` for `steps` steps on one random 32 px batch of 8 faces
  with the given gaze labels, and returns (losses, last metrics)."""
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  from gaze_jax.data import device
  from gaze_jax.training import steps as steps_lib

  def train(run, state, trigger, classes, gaze, steps=5):
    batch = device.shard({'image': np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3),
                                                                     dtype=np.uint8),
                          'gaze': gaze})
    losses = []
    for _ in range(steps):
      state, sums = steps_lib.make_train_step(run)(state, batch, jax.random.key(0), trigger,
                                                   classes)
      losses.append(float(sums['loss']))
    return losses, steps_lib.interval_means(jax.device_get(sums))
  return train
