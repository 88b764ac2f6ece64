"""--mode=defend's refusals, each one line and exit status 2, and its names kept in step with
the library's."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from gaze_jax import config as config_lib
from gaze_jax.configs import clean
from gaze_jax.configs import wanet
from gaze_jax.defences import population
from gaze_jax.errors import UserError
from gaze_jax.workdir import rundir

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_cli_names_are_the_librarys():
  from gaze_jax import cli  # pylint: disable=g-import-not-at-top
  assert cli.DEFENCES == population.CHOICES


def _defend(*args):
  return subprocess.run([sys.executable, 'run.py', '--mode=defend', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_a_run_without_a_trigger_and_a_missing_workdir_are_refused_in_one_line(tmp_path):
  run_dir = tmp_path / 'clean'
  run_dir.mkdir()
  (run_dir / rundir.CONFIG_FILE).write_text(json.dumps(config_lib.to_dict(clean.get_config())))
  out = _defend(f'--workdir={run_dir}', '--defence=strip')
  assert out.returncode == 2 and out.stderr.count('\n') == 1, out.stderr
  assert out.stderr.startswith('error: ') and 'has no trigger' in out.stderr
  assert not os.path.exists(run_dir / population.DEFENCES_FILE)
  with pytest.raises(UserError, match='does not exist'):  # As the CLI reports it.
    population.defend(str(tmp_path / 'missing'))
  with pytest.raises(UserError, match='holds no trained run'):
    population.find_runs(str(tmp_path))
  poisoned = json.dumps(config_lib.to_dict(wanet.get_config()))
  for folder in ('half', 'pop/seed0/clean', 'pop/seed0/poisoned'):  # Configs, no results yet.
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / rundir.CONFIG_FILE).write_text(poisoned)
  with pytest.raises(UserError, match='half has not finished training'):
    population.defend(str(tmp_path / 'half'))
  with pytest.raises(UserError, match='pop holds no finished run'):
    population.defend(str(tmp_path / 'pop'), log=lambda line: None)
  assert not os.path.exists(tmp_path / 'half' / population.DEFENCES_FILE)


def test_a_population_lists_its_regressors_by_seed_then_its_classifiers(tmp_path):
  names = ['seed10/clean', 'seed2/positive', 'seed0/classifier/clean', 'seed2/clean',
           'seed0/clean', 'seed2/classifier/official', 'seedx/clean']
  for name in names:
    os.makedirs(tmp_path / name)
    (tmp_path / name / rundir.CONFIG_FILE).write_text('{}')
  assert [name for name, _ in population.find_runs(str(tmp_path))] == [
      'seed0/clean', 'seed2/clean', 'seed2/positive', 'seed10/clean', 'seed0/classifier/clean',
      'seed2/classifier/official']


@pytest.mark.parametrize('names, fractions, steps, message', [
    (['spectral'], ['0.1'], 10, 'expected one of'),
    (['all'], ['0'], 10, r'\(0, 1\]'),
    (['all'], ['a'], 10, r'\(0, 1\]'),
    (['all'], ['0.1'], 0, 'at least 1'),
])
def test_bad_options_are_refused(names, fractions, steps, message):
  with pytest.raises(UserError, match=message):
    population.check_options(names, fractions, steps)


@pytest.mark.parametrize('families', [(), ('mask',), ('warp', 'warp')])
def test_bad_trigger_families_are_refused(families):
  with pytest.raises(UserError, match='--defence_families=.*expected one or both of warp, patch'):
    population.check_options(['reverse'], ['0.1'], 5, families)


def test_options_expand_all_and_keep_a_choice():
  assert population.check_options(['all'], ['0.01', '0.1'], 5).defences == population.DEFENCES
  assert population.check_options(['prune'], ['0.05'], 5).fractions == (0.05,)
  assert population.check_options(['reverse'], ['0.1'], 5, ['warp']).families == ('warp',)
  assert population.Options().families == ('warp', 'patch')


def test_defender_subsets_are_nested_and_seeded():
  small, large = (population.defender_indices(1000, f, 0) for f in (0.01, 0.1))
  assert len(small) == 10 and len(large) == 100 and set(small) <= set(large)
  assert list(population.defender_indices(1000, 0.01, 0)) == list(small)
  assert len(population.defender_indices(50, 0.001, 0)) == 2
