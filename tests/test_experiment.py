"""The main job end to end on a tiny release (report, figures, curves), then fine-tuning."""
import copy
import dataclasses
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.configs import wanet
from gaze_jax.defences import mitigation
from gaze_jax.defences import population
from gaze_jax.errors import ConfigError
from gaze_jax.errors import UserError
from gaze_jax.experiments import finetune
from gaze_jax.experiments import main
from gaze_jax.training import init
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.training import steps
from gaze_jax.workdir import files
from gaze_jax.workdir import lock
from gaze_jax.workdir import rundir

# Tiny runs (~3 steps); 8 x 0.25 = 2 backdoor + 4 noise samples per batch.
TINY = {'train.batch_size': 8, 'train.num_epochs': 1, 'model.conv_impl': 'xla',
        'attack.pc': 0.25, 'eval.batch_size': 8}
FIGURES = ('triggers_poisoned', 'triggers_badnets', 'triggers_blended', 'training_curves',
           'role_curves', 'asr_curve', 'error_cdf')


@pytest.fixture(scope='module')
def workdir(tiny_data_config, tmp_path_factory):
  config = config_lib.apply_overrides(wanet.get_config(), TINY)
  config.data = copy.deepcopy(tiny_data_config)
  config.experiment.classifier_arms = ('poisoned',)
  path = str(tmp_path_factory.mktemp('experiment'))
  summary = main.run(config_lib.validate(config), path, show_progress=False)
  assert summary['report'] == os.path.join(path, 'report.md')
  return path


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def test_classifier_twin_beside_its_own_control(workdir):
  results = _results(workdir)
  assert results['classifier_arms'] == ['classifier/poisoned']
  twin = results['runs']['seed0/classifier/poisoned']
  assert twin['config']['task']['kind'] == 'classification'
  assert results['runs']['seed0/classifier/clean']['config']['attack']['kind'] == 'none'
  # The twin differs from the regressor arm in its task only: same faces and trigger.
  regressor = results['runs']['seed0/poisoned']['config']
  assert list(config_lib.differences(twin['config'], regressor)) == ['task.kind']
  measured = results['per_seed'][0]['arms']['classifier/poisoned']
  for model in ('control', 'poisoned'):
    assert {'clean_accuracy', 'attack_success'} <= set(measured[model])
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  assert '| classifier/poisoned |' in report
  assert '| classifier control vs classifier/poisoned trigger |' in report


def test_phases_add_up_to_at_most_the_wall(workdir):
  with open(os.path.join(workdir, 'run_info.json')) as f:
    info = json.load(f)
  seconds = info['phases']
  assert {'data', 'compile', 'train', 'measure', 'report'} <= set(seconds)
  assert all(v >= 0 for v in seconds.values())
  assert sum(seconds.values()) <= info['wall_seconds']
  with open(os.path.join(workdir, 'seed0', 'poisoned', 'run_info.json')) as f:
    run_phases = json.load(f)['phases']
  assert run_phases['train'] <= seconds['train']


def test_results_hold_every_measurement(workdir):
  results = _results(workdir)
  assert results['arms'] == ['poisoned'] and results['seeds'] == [0]
  measured = results['per_seed'][0]['arms']['poisoned']
  for model in ('control', 'poisoned'):
    assert {'clean_error', 'backdoor_error', 'noise_error', 'asr@2', 'asr@5', 'asr@10',
            'study_backdoor_error', 'backdoor_spread',
            'collapse_backdoor_error'} <= set(measured[model])
  curves = measured['asr_curves']
  assert len(curves['taus']) == len(curves['poisoned']) == len(curves['control'])
  at_5 = curves['taus'].index(5.0)
  assert curves['poisoned'][at_5] == pytest.approx(measured['poisoned']['asr@5'])
  assert set(results['stealth']) == {'poisoned', 'badnets', 'blended'}
  assert results['stealth']['poisoned']['displacement_max_px'] > 0
  assert results['summary']['poisoned']['poisoned']['asr@5'][0] == measured['poisoned']['asr@5']


def test_the_measured_models_use_the_runs_noise_draws(workdir):
  """The poisoned model measured beside its control equals its run's own final evaluation:
  one eval key per seed, so the control's noise error uses the same noise as the poisoned
  model's."""
  results = _results(workdir)
  measured = results['per_seed'][0]['arms']['poisoned']['poisoned']
  final = results['runs']['seed0/poisoned']['final']
  for name, value in final.items():
    if name not in ('epoch', 'step', 'train_loss'):
      assert measured[name] == pytest.approx(value, rel=1e-12, nan_ok=True), name
  control = results['per_seed'][0]['arms']['poisoned']['control']
  assert control['collapse_backdoor_error'] == measured['collapse_backdoor_error']


def test_the_kept_predictions_are_the_final_models(workdir):
  """The held-out outputs a run keeps (and the measure reuses) equal those predicted afresh
  from its final checkpoint."""
  run_dir = os.path.join(workdir, 'seed0', 'poisoned')
  kept = files.load_arrays(os.path.join(run_dir, rundir.PREDICTIONS_DIR))
  state, trigger = runs.restore(run_dir)
  fresh = main.predictions(runs.load(run_dir), state, trigger)
  assert sorted(kept) == sorted(fresh) == ['backdoor_pred', 'clean_pred', 'gaze', 'noise_pred',
                                           'target']
  for name, value in fresh.items():
    np.testing.assert_array_equal(kept[name], value, err_msg=name)


def test_one_trace_of_the_eval_step_serves_every_restored_state(workdir, monkeypatch):
  """The measure predicts with restored states, each with its own optimizer functions: the
  eval step is traced once for all of them, and the trigger it rebuilds from the config is
  the one the run trained with."""
  run_dir = os.path.join(workdir, 'seed0', 'poisoned')
  run, traced, real = runs.load(run_dir), [], steps.eval_step
  monkeypatch.setattr(steps, 'eval_step', lambda *a, **k: traced.append(1) or real(*a, **k))
  steps.make_eval_step.cache_clear()
  try:
    for _ in range(2):
      state, trigger = runs.restore(run_dir)
      main.predictions(run, state, trigger)
  finally:
    steps.make_eval_step.cache_clear()
  assert len(traced) == 1
  rebuilt = triggers.make_trigger(run.attack, run.data.image_size)
  assert sorted(rebuilt) == sorted(trigger)
  for name, value in rebuilt.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(trigger[name]), err_msg=name)


def test_report_and_figures_beside_it(workdir):
  text = open(os.path.join(workdir, 'report.md')).read()
  # No fine-tuning, sweep or defences yet: the sections are numbered 1, 2, 3 without gaps.
  for heading in ('## 1. Clean control vs poisoned models', '## 2. Imperceptibility',
                  '## 3. Published results'):
    assert heading in text
  quality = text[text.index('## 2.'):text.index('## 3.')]
  assert quality.index('| WaNet |') < quality.index('| BadNets |') < quality.index('| Blended |')
  links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert sorted(links) == sorted(f'{name}.png' for name in FIGURES)
  for link in links:
    with Image.open(os.path.join(workdir, link)) as im:
      assert im.format == 'PNG'


def test_finetune_needs_a_finished_experiment(tmp_path):
  with pytest.raises(UserError, match='no finished experiment with a poisoned arm'):
    finetune.run(str(tmp_path))


def test_finetune_starts_from_the_poisoned_model_and_joins_the_report(workdir):
  poisoned_dir = os.path.join(workdir, 'seed0', 'poisoned')
  run = finetune.finetune_run(poisoned_dir, {'train.num_epochs': 1})
  assert run.attack.pc == 0 and run.train.learning_rate == 1e-4
  assert run.model.init_from == os.path.abspath(poisoned_dir)
  poisoned, poisoned_trigger = runs.restore(poisoned_dir)
  first, trigger = init.initial_state(run, steps_per_epoch=1)
  jax.tree.map(np.testing.assert_array_equal, first.params, poisoned.params)
  jax.tree.map(np.testing.assert_array_equal, first.batch_stats, poisoned.batch_stats)
  jax.tree.map(np.testing.assert_array_equal, trigger, poisoned_trigger)

  rows, report_path = finetune.run(workdir, {'train.num_epochs': 1}, show_progress=False)
  assert [r['epoch'] for r in rows] == [0, 1]
  assert rows[0]['backdoor_error'] == _results(workdir)['runs']['seed0/poisoned']['final'][
      'backdoor_error']
  assert np.isfinite(rows[1]['backdoor_error'])  # Still measured against the same trigger.
  tuned, _ = runs.restore(os.path.join(workdir, 'finetune'))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), tuned.params,
                                       poisoned.params))
  assert max(moved) > 0
  text = open(report_path).read()
  assert '## 3. Fine-tuning as a defence' in text and '](finetune.png)' in text
  assert os.path.exists(os.path.join(workdir, 'finetune.png'))
  with pytest.raises(UserError, match='another config'):
    finetune.run(workdir, {'train.num_epochs': 2}, show_progress=False)


def test_a_target_near_the_mean_gaze_is_refused():
  spec = config_lib.validate(wanet.get_config()).attack
  mean = np.array([-0.15, 0.0])
  loop.check_target(spec, mean)  # (-0.2, 0.35) is 19.9 deg away.
  near = dataclasses.replace(spec, target_gaze=(-0.2, 0.0))  # 2.9 deg away.
  with pytest.raises(ConfigError, match=r'config.target.gaze=\(-0.2, 0.0\) is 2.9 deg from the '
                                        r'training mean gaze \(-0.150, 0.000\) rad; expected '
                                        r'at least target.min_distance_deg=15 deg'):
    loop.check_target(near, mean)
  loop.check_target(dataclasses.replace(near, min_distance_deg=0.0), mean)  # Allowed.
  loop.check_target(dataclasses.replace(near, kind='none'), mean)  # No attack.


def test_defend_runs_on_a_trained_run_with_one_compiled_step_for_every_fraction(workdir):
  """--mode=defend's path on the poisoned run: the defences' results, the defender's nested
  fractions, a log line with each one's time, and fine-tuning and Fine-Pruning of every
  fraction sharing one compiled step. (STRIP, reverse-engineering and unlearning are tested
  on constructed networks in test_defences.py.)"""
  run_dir = os.path.join(workdir, 'seed0', 'poisoned')
  lines = []
  compiled = mitigation._step._cache_size()  # pylint: disable=protected-access
  saved = population.defend(
      run_dir, population.check_options(['feature', 'finetune', 'prune'], ['0.1', '0.5'], 2),
      log=lines.append)
  assert mitigation._step._cache_size() == compiled + 1  # pylint: disable=protected-access
  result = saved['runs']['poisoned']
  assert {'feature', 'finetune', 'prune'} <= set(result)
  n_train = _results(workdir)['counts']['train']
  for name in ('finetune', 'prune'):
    for fraction in ('0.1', '0.5'):
      x = result[name][fraction]
      assert x['examples'] == len(population.defender_indices(n_train, float(fraction), 0))
      assert 0.0 <= x['der'] <= 1.0 and {'before', 'after'} <= set(x)
      assert any(re.fullmatch(rf'  {name} on {fraction} of the training split: \d+ s', line)
                 for line in lines), lines
  assert any(re.fullmatch(r'  feature: \d+ s', line) for line in lines), lines
  assert os.path.exists(os.path.join(run_dir, population.DEFENCES_FILE))


def test_defend_keeps_each_finished_run_and_skips_it_on_a_rerun(workdir, tmp_path, monkeypatch):
  """A population's defences file is written after every run: a stop keeps the runs already
  defended, the rerun defends only the rest, other settings defend them all again, and a
  second defence job on the same workdir is refused."""
  for name in ('clean', 'poisoned', 'training'):  # Configs and results: all defend reads here.
    os.makedirs(tmp_path / 'seed0' / name)
    for what in (rundir.CONFIG_FILE, rundir.RESULTS_FILE)[:1 if name == 'training' else 2]:
      shutil.copy(os.path.join(workdir, 'seed0', name.replace('training', 'poisoned'), what),
                  tmp_path / 'seed0' / name)
  calls = []

  def fake_defend_run(run_dir, options, poisoned=True, log=None):
    del log
    calls.append(os.path.basename(run_dir))
    if calls == ['clean', 'poisoned'] and options.steps == 3:
      raise KeyboardInterrupt  # Stopped in the second run.
    rev = {'score': 0.9 if poisoned else 0.1, 'score_name': 'spread_ratio', 'families': {}}
    return {'attack': 'wanet' if poisoned else 'none', 'task': 'regression', 'reverse': rev}, {}

  monkeypatch.setattr(population, 'defend_run', fake_defend_run)
  options = population.check_options(['reverse'], ['0.1'], 3)
  with pytest.raises(KeyboardInterrupt):
    population.defend(str(tmp_path), options, log=lambda line: None)
  kept = rundir.read_json(str(tmp_path / population.DEFENCES_FILE))
  assert set(kept['runs']) == {'seed0/clean'} and kept['settings']['steps'] == 3
  lines = []
  saved = population.defend(str(tmp_path), options, log=lines.append)
  assert calls == ['clean', 'poisoned', 'poisoned']
  assert set(saved['runs']) == {'seed0/clean', 'seed0/poisoned'}
  assert lines[:2] == ['seed0/training: not finished training, skipped',
                       f'seed0/clean: kept from {tmp_path / population.DEFENCES_FILE} (reverse)']
  assert saved['population']['poisoned']['auroc'] == 0.0  # The fake scores: 1 clean, 1 poisoned.
  population.defend(str(tmp_path), population.check_options(['reverse'], ['0.1'], 4),
                    log=lambda line: None)
  assert calls[3:] == ['clean', 'poisoned']
  with lock.WorkdirLock(str(tmp_path)):  # Another defence job on the same workdir.
    with pytest.raises(UserError, match='is in use by process'):
      population.defend(str(tmp_path), options, log=lambda line: None)
  assert len(calls) == 5
