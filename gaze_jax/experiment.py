"""The main job: a clean control and a poisoned model on the same data, every metric, the report.

Layout of an experiment workdir: `clean/` and `poisoned/` run directories (each resumable on
its own), `results.json` (both models' metrics, the ASR-vs-tau curves, the imperceptibility
of every trigger kind), the figures and `report.md`. `finetune/` (finetune.py) and
`sweeps/NAME/` (sweep.py, when run with such a workdir) join the report when present.
Rerunning on a finished workdir retrains nothing and rewrites the report.
"""
import copy
import glob
import json
import os

import jax
import numpy as np

from gaze_jax import attack_metrics
from gaze_jax import evaluation
from gaze_jax import figures
from gaze_jax import files
from gaze_jax import input_pipeline
from gaze_jax import poisoning
from gaze_jax import report
from gaze_jax import runs
from gaze_jax import stealth
from gaze_jax import train
from gaze_jax import train_step as ts

METRICS = ('clean_error', 'backdoor_error', 'noise_error')
FIGURE_FACES = 3  # Test faces in each trigger figure.


def clean_config(config):
  """The same run without the attack: the control a poisoned model is compared with."""
  clean = copy.deepcopy(config)
  clean.attack.kind = 'none'
  return clean


def predictions(config, state, p_eval, trigger):
  """Per-sample predictions of `state` on the held-out split (evaluation.predict_split)."""
  _, test_source = input_pipeline.load_splits(config.data, config.seed)
  return evaluation.predict_split(p_eval, state, test_source, trigger,
                                  jax.random.key(config.seed + 2), config.eval.batch_size)


def run(config, workdir, show_progress=True):
  """Trains both models (resuming where possible), measures, writes results and the report.

  Returns:
    The summary written to workdir/results.json (without the runs), with 'report': the
    path of report.md.
  """
  clean_dir, poisoned_dir = os.path.join(workdir, 'clean'), os.path.join(workdir, 'poisoned')
  results = {'clean': train.train_and_evaluate(clean_config(config), clean_dir,
                                               show_progress=show_progress)}
  summary = {'models': {'clean': results['clean']['final']}, 'attack': config.attack.kind,
             'seed': config.seed, 'protocol': config.data.protocol,
             'image_size': config.data.image_size,
             'counts': {'train': results['clean']['train_examples'],
                        'test': results['clean']['test_examples']}}
  by_kind = stealth.triggers_by_kind(config)
  if config.attack.kind != 'none':
    results['poisoned'] = train.train_and_evaluate(config, poisoned_dir,
                                                   show_progress=show_progress)
    spec = poisoning.AttackSpec.from_config(config)
    poisoned_state, trigger = runs.restore(poisoned_dir)
    by_kind[spec.kind] = (spec, trigger)  # The run's own saved trigger.
    clean_state, _ = runs.restore(clean_dir)
    # The clean model's variables in the poisoned state's pytree (its optimizer is a static
    # field), so the compiled eval step serves both.
    clean_state = poisoned_state.replace(params=clean_state.params,
                                         batch_stats=clean_state.batch_stats)
    p_eval = ts.pmapped_eval_step(spec)
    preds = {'poisoned': predictions(config, poisoned_state, p_eval, trigger),
             'clean': predictions(config, clean_state, p_eval, trigger)}
    summary['models'] = {
        'clean': evaluation.summarize(preds['clean'], config.eval.asr_thresholds),
        'poisoned': results['poisoned']['final']}
    summary['asr_curves'] = _asr_curves(preds)
  images = stealth.held_out_images(config)
  summary['stealth'] = stealth.measure_all(by_kind, images)
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, 'results.json'), dict(summary, runs=results))
    for kind, (spec, trigger) in by_kind.items():
      data = figures.trigger_panels(spec, trigger, images[:FIGURE_FACES])
      figures.save(figures.trigger_figure(data, spec, summary['stealth'][kind]),
                   os.path.join(workdir, f'triggers_{kind}.png'))
    summary['report'] = write_report(workdir)
  return summary


def _asr_curves(preds):
  curves = {}
  for name, p in preds.items():
    taus, asr = attack_metrics.asr_curve(p['backdoor_pred'], p['gaze'], p['target'])
    curves['taus'] = taus.tolist()
    curves[name] = asr.tolist()
  return curves


def write_report(workdir):
  """Figures from workdir's JSON/CSV outputs and report.md beside them; returns its path."""
  results = _read_json(os.path.join(workdir, 'results.json'))
  run_results = results['runs']
  main = run_results.get('poisoned', run_results['clean'])
  models = results['models']
  quality = {k: results['stealth'][k] for k in stealth.KINDS}  # JSON sorted them by name.
  figs = {name: f'{name}.png' for name in (f'triggers_{k}' for k in quality)
          if os.path.exists(os.path.join(workdir, f'{name}.png'))}
  histories = {f'{name} model': r['history'] for name, r in run_results.items()}
  control = models['clean'].get('backdoor_error')  # Present when there is a poisoned run.
  figs['training_curves'] = _save(figures.training_curves(histories, control), workdir,
                                  'training_curves')
  if 'asr_curves' in results:
    curves = results['asr_curves']
    figs['asr_curve'] = _save(figures.asr_curves(
        {f'{name} model': (curves['taus'], curves[name]) for name in ('poisoned', 'clean')},
        main['config']['eval']['asr_thresholds']), workdir, 'asr_curve')
  data = {'config': main['config'], 'counts': results['counts'], 'models': models,
          'stealth': quality, 'figures': figs,
          'sweeps': {os.path.basename(os.path.dirname(path)):
                     report.read_sweep(os.path.dirname(path), workdir)
                     for path in sorted(glob.glob(os.path.join(workdir, 'sweeps', '*',
                                                               'sweep.csv')))}}
  data['finetune'] = finetune_rows(workdir)
  if data['finetune']:
    figs['finetune'] = _save(figures.finetune_curves(data['finetune']['rows'],
                                                     models['clean']['clean_error']),
                             workdir, 'finetune')
  return report.write(os.path.join(workdir, 'report.md'), data)


def finetune_rows(workdir):
  """{'rows': per-epoch metrics from 0 (the poisoned model), 'config'} of workdir/finetune,
  or None before it has finished."""
  paths = [os.path.join(workdir, run, 'results.json') for run in ('poisoned', 'finetune')]
  if not all(os.path.exists(p) for p in paths):
    return None
  poisoned, tuned = (_read_json(p) for p in paths)
  return {'rows': [dict(poisoned['final'], epoch=0)] + tuned['history'],
          'config': tuned['config']}


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _save(figure, workdir, name):
  figures.save(figure, os.path.join(workdir, name + '.png'))
  return name + '.png'


def ordered(metrics):
  """Metrics in one order whether fresh or read back (JSON files sort their keys): errors,
  imperceptibility, ASRs by threshold, then the rest by name."""
  first = [k for k in METRICS + stealth.METRICS if k in metrics]
  asr = sorted((k for k in metrics if k.startswith('asr@')), key=lambda k: float(k[4:]))
  rest = sorted(set(metrics) - set(first) - set(asr))
  return {k: metrics[k] for k in first + asr + rest}


def format_table(models):
  """A plain-text table: one row per model, one column per metric (degrees, ASR in %)."""
  columns = [k for k in ordered({k: None for m in models.values() for k in m})
             if k in METRICS or k.startswith('asr@')]
  rows = [['model'] + columns]
  for name, metrics in models.items():
    rows.append([name] + [_fmt(metrics.get(c)) for c in columns])
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return '\n'.join('  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _fmt(value):
  return '-' if value is None or not np.isfinite(value) else f'{value:.2f}'
