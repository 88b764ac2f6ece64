"""gaze_jax.data: the release, protocols, validation, and the batch order's guarantees."""
import copy
import os

import numpy as np
import pytest

from gaze_jax import config as config_lib
from gaze_jax.data import pipeline
from gaze_jax.data import release
from gaze_jax.data import splits
from gaze_jax.errors import UserError
from tfds_mpiifacegaze import synthesize


class IndexSource:
  """A random-access source whose example i carries i, for checking orders."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {'image': np.full((2, 2, 3), i % 256, np.uint8), 'gaze': np.array([i, -i], np.float32),
            'head_pose': np.zeros(2, np.float32), 'person_id': 0, 'index': i}


def ids(batch):
  return batch['gaze'][:, 0].astype(int).tolist()


def keys(source):
  return {(source[i]['person_id'], source[i]['index']) for i in range(len(source))}


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_random_split(tiny_data_config):
  train, test = splits.load_splits(tiny_data_config, seed=0)
  assert (len(train), len(test)) == (30, 6)  # round(0.2 * 12) = 2 of each person held out.
  train_keys, test_keys = keys(train), keys(test)
  assert not train_keys & test_keys
  assert train_keys | test_keys == {(p, i) for p in range(3) for i in range(12)}
  assert sorted(p for p, _ in test_keys) == [0, 0, 1, 1, 2, 2]
  ex = train[0]
  assert ex['image'].dtype == np.uint8 and ex['image'].shape == (32, 32, 3)
  assert ex['gaze'].dtype == np.float32 and ex['head_pose'].shape == (2,)
  assert ex['landmarks'].shape == (6, 2)
  assert keys(splits.load_splits(tiny_data_config, seed=0)[1]) == test_keys
  assert keys(splits.load_splits(tiny_data_config, seed=1)[1]) != test_keys


def test_leave_one_person_out(tiny_data_config):
  config = copy.deepcopy(tiny_data_config)
  config.protocol = 'leave_one_person_out'
  config.test_person = 1
  train, test = splits.load_splits(config, seed=0)
  assert (len(train), len(test)) == (24, 12)
  assert {test[i]['person_id'] for i in range(12)} == {1}
  assert {train[i]['person_id'] for i in range(24)} == {0, 2}


@pytest.mark.parametrize('field, value', [
    ('protocol', 'k_fold'), ('image_size', 40), ('test_fraction', 0.0),
    ('test_fraction', 1.5), ('test_person', -1), ('test_person', 3),
])
def test_bad_config_names_the_field(tiny_data_config, field, value):
  config = copy.deepcopy(tiny_data_config)
  config.protocol = 'leave_one_person_out' if field == 'test_person' else config.protocol
  config[field] = value
  with pytest.raises(ValueError, match=rf'^config\.data\.{field}={value!r} is invalid'):
    splits.load_splits(config_lib.validate_data(config), seed=0)


def test_tiny_fraction_of_few_samples_is_an_error():
  with pytest.raises(ValueError, match=r'data\.test_fraction: 0\.01 .* 12 samples'):
    splits.split_indices([12, 12], 0.01, seed=0)


def test_synthetic_releases_do_not_collide(tmp_path, tiny_data_config):
  config = copy.deepcopy(tiny_data_config)
  config.root = str(tmp_path)
  config.synthetic.update(persons=1, samples_per_person=2, image_size=32)
  paths = {release.synthetic_release(config)}
  config.synthetic.seed = 1
  paths.add(release.synthetic_release(config))
  assert len(paths) == 2
  assert sorted(os.listdir(tmp_path / 'releases')) == sorted(os.path.basename(p) for p in paths)


def test_failed_generation_leaves_no_release(tmp_path, tiny_data_config, monkeypatch):
  config = copy.deepcopy(tiny_data_config)
  config.root = str(tmp_path)
  config.synthetic.update(persons=2, samples_per_person=2, image_size=32)
  real_write = synthesize.write_release

  def crash_after_first_person(out_dir, persons, *args):
    real_write(out_dir, 1, *args)
    raise OSError('disk full')

  monkeypatch.setattr(synthesize, 'write_release', crash_after_first_person)
  with pytest.raises(UserError, match='cannot write the synthetic release .*: disk full'):
    release.synthetic_release(config)
  assert not os.listdir(tmp_path / 'releases')
  monkeypatch.setattr(synthesize, 'write_release', real_write)
  assert sorted(os.listdir(release.synthetic_release(config))) == ['p00.mat', 'p01.mat']


def test_real_release_from_manual_dir(tmp_path, tiny_data_config, tiny_release):
  config = copy.deepcopy(tiny_data_config)
  config.root = str(tmp_path)
  config.manual_dir = tiny_release
  train, test = splits.load_splits(config, seed=0)
  assert (len(train), len(test)) == (30, 6)
  (data_dir,) = os.listdir(tmp_path / 'tfds')
  assert data_dir.startswith('real-') and not os.path.exists(tmp_path / 'releases')
  config.manual_dir = str(tmp_path / 'missing')
  with pytest.raises(ValueError, match=r'config\.data\.manual_dir=.*missing.*'
                                       r'p00\.mat \.\.\. p14\.mat'):
    config_lib.validate_data(config)


def test_train_batches_from_tfds(tiny_data_config):
  train, _ = splits.load_splits(tiny_data_config, seed=0)
  batch = next(pipeline.train_batches(train, 8, seed=0))
  assert sorted(batch) == ['gaze', 'head_pose', 'image']
  assert batch['image'].dtype == np.uint8 and batch['image'].shape == (8, 32, 32, 3)
  assert batch['gaze'].dtype == np.float32 and batch['gaze'].shape == (8, 2)
  assert batch['head_pose'].dtype == np.float32 and batch['head_pose'].shape == (8, 2)
  # What the steps take of a train and an eval batch is what the warm-up compiles for.
  eval_batch, _ = next(pipeline.eval_batches(train, 8))
  template = pipeline.step_template(8, 32)
  for real in (batch, eval_batch):
    assert {k: (v.dtype, v.shape) for k, v in pipeline.step_inputs(real).items()} == {
        k: (v.dtype, v.shape) for k, v in template.items()}


def test_epochs_are_fresh_permutations_with_remainder_dropped():
  assert pipeline.steps_per_epoch(30, 8) == 3
  batches = take(pipeline.train_batches(IndexSource(30), 8, seed=3), 9)
  epochs = [sum((ids(b) for b in batches[e * 3:(e + 1) * 3]), []) for e in range(3)]
  for epoch in epochs:
    assert len(epoch) == 24 and len(set(epoch)) == 24 and set(epoch) <= set(range(30))
  assert epochs[0] != epochs[1] != epochs[2]
  same = take(pipeline.train_batches(IndexSource(30), 8, seed=3), 9)
  assert [ids(b) for b in same] == [ids(b) for b in batches]
  other = [ids(b) for b in take(pipeline.train_batches(IndexSource(30), 8, seed=4), 3)]
  assert other != [ids(b) for b in batches[:3]]
  assert other != [ids(b) for b in batches[3:6]]  # Not seed 3's second epoch either.


def test_resume_sees_the_same_batches():
  source = IndexSource(50)
  full = [ids(b) for b in take(pipeline.train_batches(source, 6, seed=1), 20)]
  for start in (1, 8, 13):
    resumed = pipeline.train_batches(source, 6, seed=1, start_step=start)
    assert [ids(b) for b in take(resumed, 20 - start)] == full[start:]
  it = pipeline.train_batches(source, 6, seed=1)
  take(it, 5)
  state = it.get_state()
  after = [ids(b) for b in take(it, 3)]
  it.set_state(state)
  assert [ids(b) for b in take(it, 3)] == after == full[5:8]


def test_hosts_split_each_global_batch():
  source = IndexSource(40)
  single = take(pipeline.train_batches(source, 8, seed=2, process_index=0,
                                             process_count=1), 10)
  hosts = [take(pipeline.train_batches(source, 8, seed=2, process_index=i,
                                             process_count=2, start_step=0), 10)
           for i in range(2)]
  for step in range(10):
    assert ids(hosts[0][step]) + ids(hosts[1][step]) == ids(single[step])
    assert hosts[0][step]['image'].shape == (4, 2, 2, 3)
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    pipeline.train_batches(source, 8, seed=2, process_index=0, process_count=3)
  with pytest.raises(ValueError, match='fewer than one batch'):
    pipeline.train_batches(IndexSource(7), 8, seed=2)


def test_eval_batches_cover_everything_once_with_padding():
  batches = list(pipeline.eval_batches(IndexSource(11), 4))
  assert len(batches) == 3
  assert [m.tolist() for _, m in batches] == [[True] * 4, [True] * 4, [True] * 3 + [False]]
  got = sum((ids(b) for b, _ in batches), [])
  assert got[:11] == list(range(11))
  last, mask = batches[-1]
  assert not last['image'][~mask].any() and sorted(last) == sorted(pipeline.EVAL_KEYS)
  hosts = [list(pipeline.eval_batches(IndexSource(11), 4, process_index=i,
                                            process_count=2)) for i in range(2)]
  assert len(hosts[0]) == len(hosts[1]) == 3
  seen = [i for h in hosts for b, m in h for i, keep in zip(ids(b), m) if keep]
  assert sorted(seen) == list(range(11))
  assert [ids(b) for b, _ in hosts[0]] == [[0, 1], [4, 5], [8, 9]]
