"""Sweeps: grid files, point names and overrides; a tiny two-point sweep runs, resumes, skips."""
import copy
import csv
import os

import pytest

from gaze_jax import config as config_lib
from gaze_jax.configs import wanet
from gaze_jax.errors import UserError
from gaze_jax.experiments import sweep
from gaze_jax.metrics import imperceptibility
from gaze_jax.training import loop
from gaze_jax.workdir import rundir

HERE = os.path.dirname(os.path.abspath(__file__))
SWEEPS = os.path.join(HERE, '..', 'gaze_jax', 'configs', 'sweeps')
WANET = config_lib.validate(wanet.get_config())
# Tiny runs (~3 steps); 8 x 0.25 = 2 backdoor + 4 noise samples per batch.
TINY = {'train.batch_size': 8, 'train.num_epochs': 1, 'model.conv_impl': 'xla',
        'attack.pc': 0.25, 'eval.batch_size': 8}
GRID = [{'wanet.k': 4, 'wanet.s': 0.5}, {'wanet.k': 4, 'wanet.s': 1.0},
        {'train.num_epochs': 2}]  # The last needs a control trained for 2 epochs too.


@pytest.mark.parametrize('name,points,keys', [
    ('strength', 15, {'wanet.s', 'wanet.k'}), ('poison_rate', 4, {'attack.pc'}),
    ('trigger_type', 3, {'attack.kind'})])
def test_shipped_grids(name, points, keys):
  grid = sweep.load_grid(os.path.join(SWEEPS, name + '.py'))
  assert len(grid) == points and all(set(p) == keys for p in grid)
  assert len(sweep.check_grid(WANET, grid)) == points


@pytest.mark.parametrize('name', ['ablation', 'frontier'])
def test_study_grids_are_valid(name):
  """The study's grids derive valid, distinct points from the base config."""
  grid = sweep.load_grid(os.path.join(SWEEPS, name + '.py'))
  points = sweep.check_grid(WANET, grid)
  assert len(points) == len(grid) > 1 and grid[0] == {}
  assert [p.config for p in points].count(WANET.config) == 1  # Only the base is the base.


def test_strength_grid_values():
  grid = sweep.load_grid(os.path.join(SWEEPS, 'strength.py'))
  assert {p['wanet.s'] for p in grid} == {0.25, 0.5, 1.0, 1.5, 2.0}
  assert {p['wanet.k'] for p in grid} == {4, 16, 28}


def test_point_names():
  assert sweep.point_name({'wanet.k': 4, 'wanet.s': 0.5}) == 'k=4,s=0.5'
  assert sweep.point_name({'attack.kind': 'badnets'}) == 'kind=badnets'
  assert sweep.point_name({'attack.seed': 1, 'target.gaze': (-0.2, 0.0)}) == \
      'seed=1,gaze=-0.2_0'
  assert sweep.point_name({'attack.seed': 1, 'wanet.seed': 2}) == 'attack.seed=1,wanet.seed=2'


def test_points_outside_the_attack_get_a_control_trained_the_same_way():
  assert sweep.control_dir_name({'wanet.s': 1.0, 'attack.pc': 0.2}) == 'clean'
  assert sweep.control_dir_name({'wanet.s': 1.0, 'train.num_epochs': 20}) == \
      'clean,num_epochs=20'
  assert sweep.control_overrides({'task.kind': 'classification', 'wanet.k': 8}) == {
      'task.kind': 'classification'}


def test_check_grid_refuses_what_cannot_run():
  sweep.check_grid(WANET, [{'train.learning_rate': 1e-4}])  # Valid: it gets its own control.
  with pytest.raises(UserError, match='repeat'):
    sweep.check_grid(WANET, [{'wanet.s': 0.5}, {'wanet.s': 0.5}])
  with pytest.raises(UserError, match='no points'):
    sweep.check_grid(WANET, [])
  with pytest.raises(UserError, match='wanet.s=-1.0 is invalid'):
    sweep.check_grid(WANET, [{'wanet.s': -1.0}])


def test_load_grid_errors(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    sweep.load_grid(str(tmp_path / 'missing.py'))
  (tmp_path / 'empty.py').write_text('X = 1\n')
  with pytest.raises(UserError, match='get_sweep'):
    sweep.load_grid(str(tmp_path / 'empty.py'))


@pytest.fixture(scope='module')
def tiny_config(tiny_data_config):
  config = config_lib.apply_overrides(wanet.get_config(), TINY)
  config.data = copy.deepcopy(tiny_data_config)
  return config_lib.validate(config)


def test_tiny_sweep_runs_skips_and_aggregates(tiny_config, tmp_path, monkeypatch):
  workdir = str(tmp_path / 'sweep')
  rows, report_path = sweep.run(tiny_config, GRID, workdir, name='tiny', show_progress=False)
  names = ['k=4,s=0.5', 'k=4,s=1', 'num_epochs=2']
  assert [r['point'] for r in rows] == names
  for name in names + ['clean', 'clean,num_epochs=2']:
    assert os.path.exists(os.path.join(workdir, name, 'results.json'))
  assert rundir.read_results(os.path.join(workdir, 'clean,num_epochs=2'))['steps'] == 6
  assert rundir.read_results(os.path.join(workdir, 'clean'))['steps'] == 3
  with open(os.path.join(workdir, 'sweep.csv'), newline='') as f:
    reader = csv.DictReader(f)
    table = list(reader)
  columns = reader.fieldnames
  assert columns[:3] == ['point', 'wanet.k', 'wanet.s']
  thresholds = [f'asr@{t:g}' for t in tiny_config.eval.asr_thresholds]
  for metric in ['clean_error', 'backdoor_error', 'noise_error'] + thresholds:
    assert metric in columns and 'control_' + metric in columns
  assert set(imperceptibility.METRICS) <= set(columns)
  assert [r['wanet.s'] for r in table] == ['0.5', '1.0', '']
  assert float(table[1]['displacement_max_px']) > float(table[0]['displacement_max_px'])
  text = open(report_path).read()
  assert '## 1. Sweep: tiny' in text and '](sweep.png)' in text
  assert os.path.exists(os.path.join(workdir, 'sweep.png'))

  # Run again: the finished points are not trained again, the CSV is the same.
  trained = []
  real = loop.train_and_evaluate

  def spy(config, run_dir, **kwargs):
    trained.append(os.path.basename(run_dir))
    return real(config, run_dir, **kwargs)

  monkeypatch.setattr(loop, 'train_and_evaluate', spy)
  csv_before = open(os.path.join(workdir, 'sweep.csv')).read()
  sweep.run(tiny_config, GRID, workdir, name='tiny', show_progress=False)
  assert trained == ['clean', 'clean,num_epochs=2']  # Only restored (already finished).
  assert open(os.path.join(workdir, 'sweep.csv')).read() == csv_before

  # A point without results.json (interrupted) goes back to train_and_evaluate, which
  # resumes from its checkpoint: here the last one, so nothing changes.
  os.remove(os.path.join(workdir, names[1], 'results.json'))
  trained.clear()
  sweep.run(tiny_config, GRID, workdir, name='tiny', show_progress=False)
  assert trained == ['clean', names[1], 'clean,num_epochs=2']
  assert open(os.path.join(workdir, 'sweep.csv')).read() == csv_before

  # Another base config in the same workdir is refused, not mixed in.
  other = config_lib.derive(tiny_config, {'train.learning_rate': 0.5})
  with pytest.raises(UserError, match='another config'):
    sweep.run(other, GRID, workdir, show_progress=False)


def test_tiny_sweep_sets_the_classifier_beside_the_regressor(tiny_config, tmp_path):
  """A point overriding task.kind trains the classifier beside a clean classifier of its
  own, and the report sets both kinds of model side by side (table and figure)."""
  workdir = str(tmp_path / 'tasks')
  rows, report_path = sweep.run(tiny_config, [{}, {'task.kind': 'classification'}], workdir,
                                name='tasks', show_progress=False)
  regressor, classifier = rows
  assert [r['point'] for r in rows] == ['base', 'kind=classification']
  assert rundir.load_config(os.path.join(workdir, 'clean,kind=classification'))['task'][
      'kind'] == 'classification'
  assert {'asr@5', 'cell_asr', 'control_cell_asr'} <= set(regressor)
  assert 'attack_success' not in regressor and 'asr@5' not in classifier
  for key in ('attack_success', 'control_attack_success', 'clean_accuracy'):
    assert 0 <= classifier[key] <= 100
  text = open(report_path).read()
  assert 'Regression against classification' in text and '](tasks.png)' in text
  assert os.path.exists(os.path.join(workdir, 'tasks.png'))
