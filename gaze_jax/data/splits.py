"""The evaluation protocols as random-access train and test sources.

`random_split` holds out a seeded `test_fraction` of every person's samples (identities
shared, the gaze study's setting); `leave_one_person_out` holds out person `test_person`
(the published MPIIFaceGaze protocol). Sources are ordered by person, then by sample.
"""
import numpy as np

from gaze_jax.data import release
from gaze_jax.errors import ConfigError


def load_splits(data, seed):
  """(train_source, test_source) of DataSpec `data` for its protocol.

  Both are random-access sources (`len`, `[i]` -> dict of NumPy values).
  """
  builder = release.prepare(data)
  persons = sorted(builder.info.splits.keys())
  if data.protocol == 'leave_one_person_out':
    if data.test_person >= len(persons):
      raise ConfigError(f'data.test_person: expected 0..{len(persons) - 1} (the release has '
                        f'{len(persons)} persons), got {data.test_person}')
    test = persons[data.test_person]
    train = '+'.join(p for p in persons if p != test)
    return builder.as_data_source(split=train), builder.as_data_source(split=test)
  counts = [builder.info.splits[p].num_examples for p in persons]
  train, test = split_indices(counts, data.test_fraction, seed)
  source = builder.as_data_source(split='+'.join(persons))
  return Subset(source, train), Subset(source, test)


def release_counts(data):
  """The samples per person of a synthetic release, or None.

  Samples per person of DataSpec `data`'s release when the config alone tells (the
  synthetic release), else None (the real one's files tell)."""
  if data.manual_dir:
    return None
  return [data.synthetic.samples_per_person] * data.synthetic.persons


def train_size(data, counts):
  """Training examples of `data`'s protocol on a release of `counts` samples per person."""
  if data.protocol == 'leave_one_person_out':
    return sum(counts) - counts[data.test_person]
  return sum(n - _held_out(person, n, data.test_fraction) for person, n in enumerate(counts))


def _held_out(person, n, test_fraction):
  """How many of a person's n samples random_split holds out: round(test_fraction * n)."""
  n_test = round(test_fraction * n)
  if not 0 < n_test < n:
    raise ConfigError(f'data.test_fraction: {test_fraction} of person {person}\'s {n} '
                      f'samples leaves an empty train or test set')
  return n_test


def split_indices(counts, test_fraction, seed):
  """Splits each person's samples into training and test indices.

  (train, test) sorted indices into persons' concatenated samples: a seeded
  round(test_fraction * n) of each person's n samples held out."""
  train, test, offset = [], [], 0
  for person, n in enumerate(counts):
    n_test = _held_out(person, n, test_fraction)
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


def stack(source, key):
  """Every row's `key` of a source, stacked in source order (e.g. all held-out images)."""
  return np.stack([np.asarray(source[i][key]) for i in range(len(source))])
