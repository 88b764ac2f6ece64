"""The report's Defences section and figures from a defences.json dict (no training)."""
import json
import os

import numpy as np

from gaze_jax.defences import population
from gaze_jax.report import defences
from gaze_jax.report import figures


def _metrics(clean, backdoor, asr):
  return {'clean_error': clean, 'backdoor_error': backdoor, 'asr@5': asr, 'acc': 50.0,
          'asr': asr}


def _run(task, attack, score, finetune=None):
  detection = {'auroc': 0.75, 'fpr@95': 40.0, 'clean_mean': 3.5, 'triggered_mean': 1.25,
               'statistic': 'spread (deg)'}
  out = {'task': task, 'attack': attack,
         'reverse': {'score': score, 'family': 'warp', 'recovered_target': [-0.1, 0.2],
                     'families': {'warp': {'size': 0.4, 'similarity': 0.9}}}}
  if attack != 'none':
    out.update(strip=detection, feature=dict(detection, statistic='Mahalanobis distance'))
  if finetune:
    out['finetune'] = {'0.05': {'before': _metrics(3.0, 1.0, 95.0),
                                'after': _metrics(3.25, 12.0, 5.0), 'der': 0.95,
                                'examples': 120}}
  return out


def test_section_holds_every_table_and_the_population_auroc():
  runs = {'seed0/clean': _run('regression', 'none', 0.9),
          'seed1/clean': _run('regression', 'none', 0.8),
          'seed0/wanet': _run('regression', 'wanet', 0.1, finetune=True),
          'seed1/wanet': _run('regression', 'wanet', 0.85)}
  data = {'runs': runs, 'settings': {'fractions': [0.01, 0.05]},
          'population': population.population_detection(runs)}
  # -0.1 and -0.85 against -0.9 and -0.8: -0.1 beats both, -0.85 beats -0.9 only (3 of 4);
  # the threshold catching both poisoned models (-0.85) also flags -0.8 (50 %).
  assert data['population']['wanet']['auroc'] == 0.75
  assert data['population']['regression']['n_clean'] == 2
  text = defences.section(data, {'reverse-engineered trigger, seed0_wanet':
                                 'defences/seed0_wanet.png'})
  assert text.startswith('## Defences') and '0.01, 0.05' in text
  assert '| seed0/wanet | wanet | strip | 0.75 | 40.0 | 3.50 / 1.25 | spread (deg) |' in text
  assert '| seed0/wanet | wanet | 0.100 | warp | 0.400 | (-0.100, 0.200) | – | 0.90 |' in text
  assert '| wanet | 0.75 | 50.0 | 2 | 2 | – |' in text
  assert ('| seed0/wanet | wanet | 0.05 | 120 | 3.00 | 3.25 | 1.00 | 12.00 | 95.0 | 5.0 | '
          '0.950 |') in text
  assert '![reverse-engineered trigger, seed0_wanet](defences/seed0_wanet.png)' in text
  assert '### Regressor' not in text  # One task: no task headings.


def test_population_auroc_by_family_scores_each_family_alone():
  """Warp separates the two poisoned models from the clean ones (AUROC 1); the patch family
  drives the clean models' outputs lower than the poisoned ones' (AUROC 0); the model's
  score (the lowest over families) is the patch's for three of them."""
  def run(attack, warp, patch):
    return {'task': 'regression', 'attack': attack,
            'reverse': {'score': min(warp, patch), 'score_name': 'spread_ratio',
                        'family': 'warp' if warp < patch else 'patch',
                        'recovered_target': [0.0, 0.0],
                        'families': {'warp': {'spread_ratio': warp, 'size': 0.5},
                                     'patch': {'spread_ratio': patch, 'size': 0.05}}}}
  runs = {'seed0/clean': run('none', 0.8, 0.02), 'seed1/clean': run('none', 0.9, 0.03),
          'seed0/wanet': run('wanet', 0.1, 0.05), 'seed1/wanet': run('wanet', 0.2, 0.04)}
  found = population.population_detection(runs)['wanet']
  assert found['by_family']['warp']['auroc'] == 1.0
  assert found['by_family']['patch']['auroc'] == 0.0
  assert found['auroc'] == 0.0  # min(): 0.05, 0.04 against 0.02, 0.03.
  text = defences.section({'runs': runs, 'population': {'wanet': found}})
  assert '| wanet | 0.00 | 100.0 | 2 | 2 | patch 0.00, warp 1.00 |' in text


def test_the_classifier_gets_its_own_tables():
  runs = {'seed0/wanet': _run('regression', 'wanet', 0.1),
          'seed0/classifier/wanet': _run('classification', 'wanet', 80.0)}
  text = defences.section({'runs': runs})
  assert '### Regressor' in text and '### Classifier' in text
  assert 'max flip rate (%)' in text.split('### Classifier')[1]
  assert 'min spread ratio' in text.split('### Classifier')[0]


def test_figure_puts_the_recovered_trigger_beside_the_true_one():
  field = np.zeros((8, 8, 2), np.float32)
  fig = defences.figure({'true_warp_px': field, 'recovered_warp_px': field + 1,
                         'recovered_mask': np.ones((8, 8, 1))})
  titles = [ax.get_title() for ax in figures.panels(fig)]
  assert titles == ['true warp (px)', 'recovered warp (px)', 'recovered mask']


def test_scores_figure_draws_each_model_in_its_group(tmp_path):
  """Two clean and two poisoned regressors: one panel for the best score and one per family,
  each with the clean group's two points first, then the arm's; saved beside the triggers."""
  def run(attack, warp, patch):
    return {'task': 'regression', 'attack': attack,
            'reverse': {'score': min(warp, patch), 'score_name': 'spread_ratio',
                        'families': {'warp': {'spread_ratio': warp},
                                     'patch': {'spread_ratio': patch}}}}
  runs = {'seed0/clean': run('none', 0.8, 0.02), 'seed1/clean': run('none', 0.9, 0.03),
          'seed0/wanet': run('wanet', 0.1, 0.05), 'seed1/wanet': run('wanet', 0.2, 0.04)}
  fig = defences.scores_figure(runs, 'regression')
  axes = figures.panels(fig)
  assert [ax.get_title() for ax in axes] == ['best of families', 'patch', 'warp']
  warp = axes[2].get_lines()
  np.testing.assert_allclose(warp[0].get_ydata(), [0.8, 0.9])  # clean
  np.testing.assert_allclose(warp[1].get_ydata(), [0.1, 0.2])  # wanet
  np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), [0.05, 0.04])
  assert defences.scores_figure(runs, 'classification') is None
  (tmp_path / 'defences').mkdir()
  (tmp_path / 'defences.json').write_text(json.dumps({'runs': runs}))
  assert defences.save_figures(str(tmp_path)) == {
      'reverse-engineering scores of the regressors, clean against poisoned':
          os.path.join('defences', 'scores_regression.png')}
  assert (tmp_path / 'defences' / 'scores_regression.png').stat().st_size > 0
