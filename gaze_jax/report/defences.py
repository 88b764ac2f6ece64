"""The report's `## Defences` section from WORKDIR/defences.json (defences/population.py),
and the figure of each reverse-engineered trigger beside the true one.

`section` is a pure function of the JSON's dict, like markdown.render; `read` and `figure`
are the file edges. Tables: input-level detection per run, model-level detection per run
and over the population, and each mitigation per run and defender fraction.
"""
import math
import os

import numpy as np

from gaze_jax.report import figures
from gaze_jax.workdir import files
from gaze_jax.workdir import rundir

DEFENCES_FILE = 'defences.json'  # defences.population.DEFENCES_FILE.
MITIGATION_NAMES = {'finetune': 'Fine-tuning', 'prune': 'Fine-Pruning',
                    'unlearn': 'Unlearning with the recovered trigger'}


def read(workdir):
  """defences.json of `workdir` as a dict, or None if the defences have not run."""
  path = os.path.join(workdir, DEFENCES_FILE)
  return rundir.read_json(path) if os.path.exists(path) else None


def _fmt(value, digits=2):
  if value is None or isinstance(value, str):
    return '–' if value is None else value
  if isinstance(value, (list, tuple)):
    return '(' + ', '.join(_fmt(v, 3) for v in value) + ')'
  value = float(value)
  return '–' if math.isnan(value) else f'{value:.{digits}f}'


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])


def section(data, figure_paths=None):
  """The Markdown of the report's Defences section.

  The `## Defences` section's Markdown of defences.json's dict: the tables of each task
  (regressor, classifier) present."""
  all_runs = data.get('runs', {})
  fractions = ', '.join(f'{f:g}' for f in data.get('settings', {}).get('fractions', []))
  parts = ['## Defences\n',
           'Each defence sees a trained run and the defender\'s clean data: a seeded '
           f'fraction of the training split ({fractions}; the largest one for detection and '
           'reverse-engineering), and is scored on the held-out split, clean and with the '
           'run\'s true trigger. AUROC: the probability that '
           'a triggered face (backdoored model) scores above a clean one; FPR@95: the share of '
           'clean faces flagged at the threshold that catches 95 % of the triggered ones. DER: '
           'BackdoorBench\'s defence effectiveness rating '
           '(max(0, ΔASR) − max(0, ΔACC) + 1) / 2 '
           '(1: backdoor removed at no clean cost, 0.5: no change); the regressor\'s ASR is '
           'ASR@5° and its ACC the share of clean faces within 5° of their gaze.\n']
  tasks = sorted({r.get('task', 'regression') for r in all_runs.values()}, reverse=True)
  for task in tasks:
    runs = {n: r for n, r in all_runs.items() if r.get('task', 'regression') == task}
    if len(tasks) > 1:
      parts.append(f"### {'Classifier' if task == 'classification' else 'Regressor'}\n")
    parts += _task_tables(task, runs, data.get('population') or {})
  for caption, path in (figure_paths or {}).items():
    parts.append(f'![{caption}]({path})\n')
  return '\n'.join(parts)


def _task_tables(task, runs, population):
  """The detection and mitigation tables of one task's runs."""
  parts = []
  detect = [(name, r) for name, r in runs.items() if any(d in r for d in ('strip', 'feature'))]
  if detect:
    rows = []
    for name, r in detect:
      for d in ('strip', 'feature'):
        if d in r:
          x = r[d]
          rows.append([name, r['attack'], d, _fmt(x['auroc']), _fmt(x['fpr@95'], 1),
                       f"{_fmt(x['clean_mean'])} / {_fmt(x['triggered_mean'])}",
                       x['statistic']])
    parts += ['### Input-level detection (is this face triggered?)\n',
              _table(['run', 'attack', 'detector', 'AUROC', 'FPR@95 (%)',
                      'mean statistic clean / triggered', 'statistic'], rows), '']
  rev = [(name, r) for name, r in runs.items() if 'reverse' in r]
  if rev:
    score = ('max flip rate (%) (anomaly index)' if task == 'classification'
             else 'min spread ratio')
    rows = []
    for name, r in rev:
      x = r['reverse']
      fam = x['families'][x['family']]
      value = _fmt(x['score'], 3) + (f" ({_fmt(x['anomaly_index'])})" if 'anomaly_index' in x
                                     else '')
      rows.append([name, r['attack'], value, x['family'], _fmt(fam['size'], 3),
                   _fmt(x['recovered_target']), _fmt(x.get('target_distance_deg')),
                   _fmt(fam.get('similarity'))])
    parts += ['### Model-level detection by trigger reverse-engineering\n',
              'A warp field and a mask-and-pattern are optimised on the clean data to collapse '
              'the outputs (regressor: spread of the triggered outputs over the clean ones, '
              'low = backdoored; classifier: flip rate to a class, high = backdoored, and Neural '
              'Cleanse\'s anomaly index of that class among all classes, above 2 flagged). Size: '
              'mean displacement (px) of a warp, mask share of a patch. Similarity: cosine of '
              'the recovered and true warp fields, or the recovered mask\'s share inside the '
              'true patch.\n',
              _table(['run', 'attack', score, 'family', 'size', 'recovered target',
                      'distance to target (°)', 'similarity'], rows), '']
    groups = {g: x for g, x in population.items()
              if g == task or any(n.split('/', 1)[-1] == g for n in runs)}
    if groups:
      rows = [[group, _fmt(x['auroc']), _fmt(x['fpr@95'], 1), str(x['n_clean']),
               str(x['n_triggered']),
               ', '.join(f"{fam} {_fmt(d['auroc'])}" for fam, d in
                         x.get('by_family', {}).items()) or '–'] for group, x in groups.items()]
      parts += ['Over the population (clean controls against poisoned models; the model\'s '
                'score is the best over the trigger families, the last column each family\'s '
                'score alone):\n',
                _table(['poisoned arm (or the whole task)', 'AUROC', 'FPR@95 (%)',
                        'clean models', 'poisoned models', 'AUROC by family'], rows), '']
  for m, title in MITIGATION_NAMES.items():
    mit = [(name, r) for name, r in runs.items() if m in r]
    if not mit:
      continue
    rows = []
    for name, r in mit:
      for fraction, x in r[m].items():
        b, a = x['before'], x['after']
        if task == 'classification':
          cells = [_fmt(b.get('clean_accuracy'), 1), _fmt(a.get('clean_accuracy'), 1),
                   _fmt(b.get('attack_success'), 1), _fmt(a.get('attack_success'), 1)]
        else:
          cells = [_fmt(b.get('clean_error')), _fmt(a.get('clean_error')),
                   _fmt(b.get('backdoor_error')), _fmt(a.get('backdoor_error')),
                   _fmt(b.get('asr@5'), 1), _fmt(a.get('asr@5'), 1)]
        rows.append([name, r['attack'], fraction, str(x['examples'])] + cells +
                    [_fmt(x['der'], 3)])
    if task == 'classification':
      cols = ['clean acc before (%)', 'after', 'attack success before (%)', 'after']
    else:
      cols = ['clean error before (°)', 'after', 'backdoor error before (°)', 'after',
              'ASR@5 before (%)', 'after']
    parts += [f'### Mitigation: {title}\n',
              _table(['run', 'attack', 'fraction', 'clean faces'] + cols + ['DER'], rows), '']
  return parts


def figure(arrays):
  """Draws a recovered trigger beside the true one.

  Recovered trigger beside the true one: warp displacement (px) and patch mask panels,
  true above recovered where the true trigger is of that kind."""
  shown = [(k, arrays[k]) for k in ('true_warp_px', 'recovered_warp_px', 'true_mask',
                                    'recovered_mask') if k in arrays]
  # pylint: disable-next=protected-access
  fig = figures._figure(figures.PANEL * len(shown), figures.PANEL)
  for i, (name, value) in enumerate(shown):
    ax = fig.add_subplot(1, len(shown), i + 1)
    value = np.asarray(value)
    shown_value = np.linalg.norm(value, axis=-1) if value.shape[-1] == 2 else value[..., 0]
    image = ax.imshow(shown_value, cmap='viridis')
    fig.colorbar(image, ax=ax, shrink=0.8)
    unit = ' (px)' if 'warp' in name else ''
    ax.set_title(name.replace('_px', '').replace('_', ' ') + unit, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  return fig


def scores_figure(runs, task):
  """Draws every model's reverse-engineering score, the clean models beside each arm.

  One panel for the model's score (the best over the trigger families) and one per family:
  a regressor's triggered / clean spread ratio on a log scale (low = backdoored), a
  classifier's flip rate in % (high = backdoored). None without reverse-engineered runs of
  `task`."""
  groups = {}
  for name, r in sorted(runs.items()):
    if r.get('task', 'regression') == task and 'reverse' in r:
      arm = 'clean' if r['attack'] == 'none' else name.split(os.sep, 1)[-1]
      groups.setdefault(arm, []).append(r['reverse'])
  if not groups:
    return None
  families = sorted({f for revs in groups.values() for rev in revs for f in rev['families']})
  panels = [('best of families', lambda rev: rev['score'])] + [
      (f, lambda rev, f=f: rev['families'].get(f, {}).get(rev['score_name'], np.nan))
      for f in families]
  # pylint: disable-next=protected-access
  fig = figures._figure(figures.PANEL * len(panels), figures.PANEL)
  names = sorted(groups, key=lambda g: (g != 'clean', g))
  for i, (title, value) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    for x, group in enumerate(names):
      ys = np.array([value(rev) for rev in groups[group]], np.float64)
      jitter = np.linspace(-0.15, 0.15, len(ys)) if len(ys) > 1 else np.zeros(1)
      ax.plot(x + jitter, ys, 'o', alpha=0.7, color='0.5' if group == 'clean' else f'C{x}')
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_title(title, fontsize=9)
    if task == 'classification':
      ax.set_ylabel('flip rate (%)')
    else:
      ax.set_yscale('log')
      ax.set_ylabel('spread ratio (triggered / clean)')
  return fig


def write(workdir, figure_paths=None):
  """WORKDIR/defences.md: the section alone, for a workdir without an experiment report."""
  path = os.path.join(workdir, 'defences.md')
  text = section(read(workdir), figure_paths)
  files.write_atomic(path, lambda f: f.write(text))
  return path


def save_figures(workdir):
  """Draws the population's detection scores and each run's recovered and true triggers.

  workdir/defences/scores_TASK.png (scores_figure, when the population has two or more
  models of a task) and workdir/defences/RUN.png (every run's saved trigger arrays,
  workdir/defences/RUN/*.npy); {caption: path relative to workdir}."""
  out = {}
  root = os.path.join(workdir, 'defences')
  if not os.path.isdir(root):
    return out
  runs = (read(workdir) or {}).get('runs', {})
  for task, label in (('regression', 'regressors'), ('classification', 'classifiers')):
    fig = scores_figure(runs, task) if len(runs) > 1 else None
    if fig is not None:
      figures.save(fig, os.path.join(root, f'scores_{task}.png'))
      out[f'reverse-engineering scores of the {label}, clean against poisoned'] = os.path.join(
          'defences', f'scores_{task}.png')
  for run in sorted(os.listdir(root)):
    folder = os.path.join(root, run)
    if not os.path.isdir(folder):
      continue
    arrays = files.load_arrays(folder)
    if arrays:
      figures.save(figure(arrays), os.path.join(root, run + '.png'))
      out[f'reverse-engineered trigger, {run}'] = os.path.join('defences', run + '.png')
  return out
