"""Host input pipeline: TFDS data sources -> grain batches of uint8 images and labels.

`load_splits` makes sure the dataset exists (the real release from
`data.manual_dir`, or else a synthetic release generated once under `data.root`),
builds it with TFDS and returns random-access train and test sources for the
configured protocol. `train_batches` and `eval_batches` turn a source into this
host's share of each global batch. Images stay uint8 on the host; normalisation
happens on the device.

Training order is a pure function of (seed, step): epoch e is grain's seeded
permutation number e of the training set, cut into global batches of
`global_batch_size` (the remainder of each epoch is dropped), and host i takes rows
[i * b, (i + 1) * b) of each, b = global_batch_size // process_count. Resuming at a
step therefore needs nothing but the step.
"""
import hashlib
import os
import shutil
import sys

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from gaze_jax import config_validation
from gaze_jax.errors import ConfigError
from gaze_jax.errors import UserError
from tfds_mpiifacegaze import matfile
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib
from tfds_mpiifacegaze import synthesize

TRAIN_KEYS = ('image', 'gaze', 'head_pose')
EVAL_KEYS = TRAIN_KEYS + ('person_id', 'index')
# Row reads (array_record lookup + zlib) run in threads; zlib releases the GIL.
READ_OPTIONS = grain.ReadOptions(num_threads=4, prefetch_buffer_size=256)


def synthetic_release(data_config):
  """The synthetic release's folder under data.root, generated on first use."""
  s = data_config.synthetic
  name = (f'synthetic-{synthesize.RENDER_VERSION}-p{s.persons}-n{s.samples_per_person}'
          f'-s{s.image_size}-seed{s.seed}')
  path = os.path.join(data_config.root, 'releases', name)
  if not os.path.isdir(path):
    # Written aside and renamed, so that a folder that exists is complete.
    tmp = f'{path}.incomplete-{os.getpid()}'
    try:
      synthesize.write_release(tmp, s.persons, s.samples_per_person, s.image_size, s.seed)
      os.rename(tmp, path)
    except OSError:
      if not os.path.isdir(path):  # Not merely another process having finished first.
        raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return path


def prepare(data_config):
  """Builds (once) and returns the TFDS builder for the configured release and size."""
  if data_config.manual_dir:
    manual_dir = os.path.abspath(data_config.manual_dir)
    if not os.path.isdir(manual_dir):
      raise FileNotFoundError(
          f'data.manual_dir: {manual_dir} does not exist. '
          f'{builder_lib.MPIIFaceGaze.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    # One TFDS data dir per real release folder.
    name = 'real-' + hashlib.sha1(manual_dir.encode()).hexdigest()[:8]
  else:
    manual_dir = synthetic_release(data_config)
    name = os.path.basename(manual_dir)
  builder = builder_lib.MPIIFaceGaze(
      config=str(data_config.image_size),
      data_dir=os.path.join(data_config.root, 'tfds', name))
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except matfile.MatFileError as e:  # A damaged or crafted release file: the user's to fix.
    raise UserError(str(e)) from e
  return builder


def load_splits(data_config, seed):
  """(train_source, test_source) for data_config.protocol.

  Both are random-access sources (`len`, `[i]` -> dict of NumPy values) ordered by
  person, then by sample. `random_split` holds out a seeded `test_fraction` of every
  person's samples; `leave_one_person_out` holds out person `test_person`.
  """
  config_validation.validate_data(data_config)
  builder = prepare(data_config)
  persons = sorted(builder.info.splits.keys())
  if data_config.protocol == 'leave_one_person_out':
    if data_config.test_person >= len(persons):
      raise ConfigError(f'data.test_person: expected 0..{len(persons) - 1} (the release has '
                       f'{len(persons)} persons), got {data_config.test_person}')
    test = persons[data_config.test_person]
    train = '+'.join(p for p in persons if p != test)
    return builder.as_data_source(split=train), builder.as_data_source(split=test)
  counts = [builder.info.splits[p].num_examples for p in persons]
  train, test = split_indices(counts, data_config.test_fraction, seed)
  source = builder.as_data_source(split='+'.join(persons))
  return Subset(source, train), Subset(source, test)


def split_indices(counts, test_fraction, seed):
  """(train, test) sorted indices into persons' concatenated samples: a seeded
  round(test_fraction * n) of each person's n samples held out."""
  train, test, offset = [], [], 0
  for person, n in enumerate(counts):
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
      raise ConfigError(f'data.test_fraction: {test_fraction} of person {person}\'s {n} '
                       f'samples leaves an empty train or test set')
    perm = np.random.default_rng([seed, person]).permutation(n) + offset
    test.append(np.sort(perm[:n_test]))
    train.append(np.sort(perm[n_test:]))
    offset += n
  return np.concatenate(train), np.concatenate(test)


class Subset:
  """The rows `indices` of a random-access source, itself a random-access source."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]

  def __repr__(self):
    return f'Subset({len(self)} of {self.source!r})'


def steps_per_epoch(num_examples, global_batch_size):
  """Whole global batches per epoch (the remainder is dropped)."""
  return num_examples // global_batch_size


def _host_share(global_batch_size, process_index, process_count):
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f'batch size {global_batch_size} is not divisible by the '
                     f'{process_count} processes')
  return process_index, global_batch_size // process_count


def _select(keys):
  return lambda example: {k: np.asarray(example[k]) for k in keys}


def train_batches(source, global_batch_size, seed, start_step=0, process_index=None,
                  process_count=None):
  """Infinite iterator of this host's training batches from step start_step on.

  Each batch is a dict: image uint8 (b, H, W, 3), gaze and head_pose float32 (b, 2),
  b = global_batch_size // process_count. The iterator also has grain's
  get_state()/set_state(), relative to start_step.
  """
  process_index, local = _host_share(global_batch_size, process_index, process_count)
  num_examples = len(source)
  steps = steps_per_epoch(num_examples, global_batch_size)
  if steps == 0:
    raise ValueError(f'{num_examples} training examples are fewer than one batch of '
                     f'{global_batch_size}')
  # Index e * n + j of `shuffled` is row j of epoch e's permutation. grain seeds
  # epoch e with seed + e, so the seed is hashed first: runs with seeds s and s + 1
  # must not share permutations.
  grain_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
  shuffled = grain.MapDataset.source(source).shuffle(seed=grain_seed)

  def row(m):  # This host's m-th row from step 0 -> its example.
    step, r = divmod(m, local)
    epoch, batch = divmod(step, steps)
    return shuffled[epoch * num_examples + batch * global_batch_size
                    + process_index * local + r]

  rows = grain.MapDataset.range(start_step * local, sys.maxsize).map(row)
  return iter(rows.map(_select(TRAIN_KEYS)).to_iter_dataset(READ_OPTIONS).batch(local))


def eval_batches(source, batch_size, process_index=None, process_count=None):
  """This host's (batch, mask) pairs over the whole source, in order.

  batch_size is global, as in train_batches; every host yields the same number of
  batches. Rows past the end of the source are zeros with mask False. Batches have
  EVAL_KEYS (train's keys plus person_id and index).
  """
  process_index, local = _host_share(batch_size, process_index, process_count)
  num_examples = len(source)
  num_batches = -(-num_examples // batch_size)
  select = _select(EVAL_KEYS)
  padding = {k: np.zeros_like(v) for k, v in select(source[0]).items()}

  def row(m):  # This host's m-th row -> (example or padding, mask).
    step, r = divmod(m, local)
    i = step * batch_size + process_index * local + r
    return (select(source[i]), True) if i < num_examples else (padding, False)

  rows = grain.MapDataset.range(num_batches * local).map(row)
  return iter(rows.to_iter_dataset(READ_OPTIONS).batch(local))
