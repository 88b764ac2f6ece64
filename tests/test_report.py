"""report.md renders every table from a constructed results fixture (no training)."""
import copy
import dataclasses
import json

import pytest

from gaze_jax import config as config_lib
from gaze_jax.configs import wanet
from gaze_jax.metrics import imperceptibility
from gaze_jax.report import assemble
from gaze_jax.report import markdown


def _config():
  return json.loads(json.dumps(wanet.get_config().to_dict()))  # As read from config.json.


def _final(clean, backdoor, asr5):
  return {'step': 750, 'epoch': 10, 'train_loss': 0.05, 'clean_error': clean,
          'backdoor_error': backdoor, 'noise_error': clean + 0.1,
          'asr@2': asr5 / 2, 'asr@5': asr5, 'asr@10': 99.0}


@pytest.fixture
def data():
  config = _config()
  finetune_config = copy.deepcopy(config)
  finetune_config['attack']['pc'] = 0.0
  finetune_config['train'].update(num_epochs=2, learning_rate=1e-4)
  stealth_rows = {
      kind: dict(psnr=p, ssim=s, mse=0.001, linf=l, displacement_mean_px=d, displacement_max_px=d,
                 **imperceptibility.settings(dataclasses.replace(
                     config_lib.validate(wanet.get_config()).attack, kind=kind)))
      for kind, p, s, l, d in (('wanet', 38.25, 0.9871, 0.21, 0.3),
                               ('badnets', 27.5, 0.9612, 1.0, 0.0),
                               ('blended', 19.75, 0.7011, 0.2, 0.0))}
  sweep_rows = [{'point': f'k={k},s={s}', 'wanet.k': str(k), 'wanet.s': str(s),
                 **{k2: str(v) for k2, v in _final(4.0, 1.5, 80.0).items()},
                 'control_backdoor_error': '21.5', 'psnr': '36.0', 'ssim': '0.98'}
                for k in (4, 28) for s in (0.5, 1.0)]
  return {
      'config': config,
      'counts': {'train': 2400, 'test': 600},
      'models': {'clean': {'clean_error': 4.21, 'backdoor_error': 21.43, 'noise_error': 4.3,
                           'asr@2': 0.0, 'asr@5': 0.5, 'asr@10': 3.25},
                 'poisoned': _final(4.35, 1.27, 91.25)},
      'stealth': stealth_rows,
      'finetune': {'rows': [dict(_final(4.35, 1.27, 91.25), epoch=0),
                            dict(_final(4.2, 9.5, 20.0), epoch=1),
                            dict(_final(4.1, 15.0, 5.0), epoch=2)],
                   'config': finetune_config},
      'sweeps': {'strength': {'name': 'strength', 'keys': ['wanet.k', 'wanet.s'],
                              'config': config, 'counts': {'train': 2400, 'test': 600},
                              'rows': sweep_rows, 'csv': 'sweeps/strength/sweep.csv',
                              'figure': 'sweeps/strength/sweep.png'}},
      'figures': {'training_curves': 'training_curves.png', 'asr_curve': 'asr_curve.png',
                  'triggers_wanet': 'triggers_wanet.png', 'finetune': 'finetune.png'},
  }


def _section(text, heading):
  start = text.index(heading)
  end = text.find('\n## ', start + 1)
  return text[start:end if end > 0 else None]


def test_every_table_renders(data):
  text = markdown.render(data)
  for heading in ('## Setup', '## 1. Clean control vs poisoned models', '## 2. Imperceptibility',
                  '## 3. Fine-tuning as a defence', '## 4. Sweep: strength',
                  '## 5. Published results (quoted, not reproduced here)',
                  '## Metric definitions'):
    assert heading in text
  models = _section(text, '## 1.')
  assert '| clean | 4.21 | 21.43 | 4.30 | 0.0 | 0.5 | 3.2 |' in models
  assert '| poisoned | 4.35 | 1.27 | 4.45 | 45.6 | 91.2 | 99.0 |' in models
  assert 'ASR@2° (%)' in models and '![training curves](training_curves.png)' in models
  quality = _section(text, '## 2.')
  assert '| wanet | WaNet | k = 4, s = 0.5 | 38.25 | 0.9871' in quality
  assert '| BadNets |' in quality and '| Blended |' in quality
  assert '![triggers wanet](triggers_wanet.png)' in quality
  tuning = _section(text, '## 3.')
  assert [line.split(' | ')[0] for line in tuning.splitlines() if line.startswith('| ')][1:] \
      == ['| 0', '| 1', '| 2']
  assert 'lr 0.0001' in tuning
  sweep = _section(text, '## 4.')
  assert '| k=28,s=1.0 | 4.00 | 1.50 | 21.50 | 80.0 | 36.00 | 0.9800 |' in sweep
  assert '(sweeps/strength/sweep.csv)' in sweep and '(sweeps/strength/sweep.png)' in sweep


def test_provenance_of_every_produced_table(data):
  text = markdown.render(data)
  stamp = 'random_split protocol, 64 px, seed 0, attack.seed 0'
  for heading in ('## 1.', '## 2.', '## 3.', '## 4.'):
    assert stamp in _section(text, heading), heading
  assert '600 held-out images' in _section(text, '## 2.')


def test_published_figures_quoted_beside_ours(data):
  published = _section(markdown.render(data), '## 5.')
  for quoted in ('| MNIST | 99.52 | 99.86 | 98.20 |', '| CIFAR-10 | 94.15 | 99.55 | 93.55 |',
                 '| GTSRB | 98.87 | 99.33 | 98.01 |', '| CelebA | 78.99 | 99.33 | 76.74 |',
                 '| 28 | 2.79 / 2.00 | 2.27 / 0.79 | 2.22 / 0.50 |'):
    assert quoted in published
  # Side by side: our PSNR / SSIM next to the quoted CIFAR-10 ones.
  assert '| WaNet | 38.25 | 0.987 | 31.5 | 0.978 | 0.0043 |' in published
  assert '| Blended | 19.75 | 0.701 | 21.0 | 0.784 | 0.0480 |' in published
  assert 'sqrt(Δpitch² + Δyaw²)' in published and 'accuracy' in published
  assert 'backdoor error 1.27°' in published


def test_absent_sections_are_left_out(data):
  text = markdown.render({'config': data['config']})
  # The sections present are numbered 1, 2, ... without gaps: here only the quoted one.
  assert '## Setup' in text and '## 1. Published' in text
  assert 'section 1 quotes published figures' in text
  for heading in ('## 2.', '## 3.', '## 4.', '## 5.'):
    assert heading not in text
  assert '| WaNet | – | – | 31.5 |' in text  # Nothing measured: a dash, not a number.
  stealth_only = markdown.render({'config': data['config'], 'stealth': data['stealth']})
  assert '## 1. Imperceptibility' in stealth_only and '## 2. Published' in stealth_only
  assert 'Section 1 holds numbers produced by this code' in stealth_only


def test_missing_and_infinite_numbers():
  assert markdown._fmt(None) == '–'  # pylint: disable=protected-access
  assert markdown._fmt(float('nan')) == '–'  # pylint: disable=protected-access
  assert markdown._fmt(float('inf')) == '∞'  # pylint: disable=protected-access
  assert markdown._fmt('2.345', 1) == '2.3'  # pylint: disable=protected-access


def test_write(tmp_path, data):
  path = markdown.write(str(tmp_path / 'report.md'), data)
  assert open(path).read() == markdown.render(data)


def test_seeds_paired_comparison_and_verdicts(data):
  data['models'] = {'control vs strong trigger': {'clean_error': [1.93, 0.05],
                                                  'backdoor_error': [19.5, 0.4]},
                    'strong': {'clean_error': [2.11, 0.04], 'backdoor_error': [1.1, 0.1],
                               'asr@5': [99.3, 0.2]}}
  data['seeds'] = [0, 1, 2]
  data['paired'] = {'strong': {'backdoor_error': {'mean': -18.4, 'std': 0.5, 'n': 3,
                                                  'ci95': [-19.6, -17.2]}}}
  data['verdicts'] = {'strong': 'takes hold by the bar.'}
  models = _section(markdown.render(data), '## 1.')
  assert 'mean ± standard deviation over 3 seeds (0, 1, 2' in models
  assert '| strong | 2.11 ± 0.04 | 1.10 ± 0.10 | 99.3 ± 0.2 |' in models
  assert '| control vs strong trigger | 1.93 ± 0.05 | 19.50 ± 0.40 | – |' in models
  assert '| strong | – | -18.40 ± 0.50 [-19.60, -17.20] | – | – |' in models
  assert '- **strong**: takes hold by the bar.' in models


def test_regressor_and_classifier_side_by_side(data):
  rows = [{'point': 'pc=0.2,s=1', 'attack.pc': '0.2', 'wanet.s': '1.0', 'task.kind': '',
           'asr@5': '99.0', 'cell_asr': '98.5', 'control_cell_asr': '12.0',
           'clean_error': '2.1', 'control_clean_error': '1.9', 'psnr': '24.0'},
          {'point': 'kind=classification,pc=0.2,s=1', 'attack.pc': '0.2', 'wanet.s': '1.0',
           'task.kind': 'classification', 'attack_success': '97.0',
           'control_attack_success': '15.0', 'clean_accuracy': '80.0',
           'control_clean_accuracy': '81.5', 'psnr': '24.0'}]
  data['sweeps'] = {'frontier': dict(data['sweeps']['strength'], name='frontier', rows=rows,
                                     keys=['attack.pc', 'wanet.s', 'task.kind'])}
  sweep = _section(markdown.render(data), '## 4.')
  assert ('| pc = 0.2, s = 1.0 | 99.0 | 98.5 | 12.0 | 0.20 | 97.0 | 15.0 | -1.5 | 24.00 |'
          in sweep)


def test_an_experiments_frontier_is_its_regressor_arms_means_over_seeds():
  arm = lambda asr, err, psnr: {'poisoned': {'asr@5': [asr, 1.0], 'backdoor_error': [err, 0.1]},
                                'stealth': {'psnr': [psnr, 0.5], 'ssim': [0.9, 0.01]}}
  results = {'arms': ['weak', 'strong', 'patch'], 'classifier_arms': ['classifier/weak'],
             'stealth': {'weak': {'kind': 'wanet'}, 'strong': {'kind': 'wanet'},
                         'patch': {'kind': 'badnets'}, 'classifier/weak': {'kind': 'wanet'}},
             'summary': {'weak': arm(2.0, 21.0, 30.0), 'strong': arm(97.0, 1.7, 24.0),
                         'patch': arm(99.0, 1.6, 25.0),
                         'classifier/weak': {'poisoned': {'attack_success': [99.0, 0.5]}}}}
  rows = assemble.frontier_rows(results)
  assert [(r['point'], r['trigger_kind'], r['psnr'], r['asr@5'], r['backdoor_error'])
          for r in rows] == [('weak', 'wanet', 30.0, 2.0, 21.0),
                             ('strong', 'wanet', 24.0, 97.0, 1.7),
                             ('patch', 'badnets', 25.0, 99.0, 1.6)]
  # The classifier twin's attack success beside its regressor's point, and only there.
  assert [r.get('attack_success') for r in rows] == [99.0, None, None]
  results['arms'] = ['weak']  # One point is no frontier.
  assert assemble.frontier_rows(results) == []
