"""The main job end to end on a tiny release (report, figures, curves), then fine-tuning."""
import copy
import json
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image

from gaze_jax import config as config_lib
from gaze_jax.config import TRIGGER_KINDS
from gaze_jax.configs import wanet
from gaze_jax.errors import UserError
from gaze_jax.experiments import finetune
from gaze_jax.experiments import main
from gaze_jax.training import init
from gaze_jax.training import runs

# Tiny runs (~3 steps); 8 x 0.25 = 2 backdoor + 4 noise samples per batch.
TINY = {'train.batch_size': 8, 'train.num_epochs': 1, 'model.conv_impl': 'xla',
        'attack.pc': 0.25, 'eval.batch_size': 8}
FIGURES = ('triggers_wanet', 'triggers_badnets', 'triggers_blended', 'training_curves',
           'asr_curve')


@pytest.fixture(scope='module')
def workdir(tiny_data_config, tmp_path_factory):
  config = config_lib.apply_overrides(wanet.get_config(), TINY)
  config.data = copy.deepcopy(tiny_data_config)
  path = str(tmp_path_factory.mktemp('experiment'))
  summary = main.run(config_lib.validate(config), path, show_progress=False)
  assert summary['report'] == os.path.join(path, 'report.md')
  return path


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def test_results_hold_every_measurement(workdir):
  results = _results(workdir)
  for model in ('clean', 'poisoned'):
    assert {'clean_error', 'backdoor_error', 'noise_error', 'asr@2', 'asr@5',
            'asr@10'} <= set(results['models'][model])
  curves = results['asr_curves']
  assert len(curves['taus']) == len(curves['poisoned']) == len(curves['clean'])
  at_5 = curves['taus'].index(5.0)
  assert curves['poisoned'][at_5] == pytest.approx(results['models']['poisoned']['asr@5'])
  assert set(results['stealth']) == set(TRIGGER_KINDS)
  assert results['stealth']['wanet']['displacement_max_px'] > 0


def test_report_and_figures_beside_it(workdir):
  text = open(os.path.join(workdir, 'report.md')).read()
  for heading in ('## 1. Clean vs poisoned model', '## 2. Imperceptibility',
                  '## 5. Published results'):
    assert heading in text
  quality = text[text.index('## 2.'):text.index('## 3.' if '## 3.' in text else '## 5.')]
  assert quality.index('| WaNet |') < quality.index('| BadNets |') < quality.index('| Blended |')
  links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert sorted(links) == sorted(f'{name}.png' for name in FIGURES)
  for link in links:
    with Image.open(os.path.join(workdir, link)) as im:
      assert im.format == 'PNG'


def test_finetune_needs_a_finished_experiment(tmp_path):
  with pytest.raises(UserError, match='no finished poisoned run'):
    finetune.run(str(tmp_path))


def test_finetune_starts_from_the_poisoned_model_and_joins_the_report(workdir):
  poisoned_dir = os.path.join(workdir, 'poisoned')
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
  assert rows[0]['backdoor_error'] == _results(workdir)['models']['poisoned']['backdoor_error']
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
