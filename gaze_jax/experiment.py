"""The main job: a clean control and a poisoned model on the same data, with every metric.

Layout of an experiment workdir: `clean/` and `poisoned/` run directories (each
resumable on its own), `results.json` with both models' metrics, and the report.
"""
import copy
import os

import jax
import numpy as np

from gaze_jax import evaluation
from gaze_jax import files
from gaze_jax import input_pipeline
from gaze_jax import poisoning
from gaze_jax import runs
from gaze_jax import train
from gaze_jax import train_step as ts

METRICS = ('clean_error', 'backdoor_error', 'noise_error')


def clean_config(config):
  """The same run without the attack: the control a poisoned model is compared with."""
  clean = copy.deepcopy(config)
  clean.attack.kind = 'none'
  return clean


def evaluate_with_trigger(config, state, spec, trigger):
  """All metrics of `state` on the held-out split against a given attack (e.g. a clean model)."""
  _, test_source = input_pipeline.load_splits(config.data, config.seed)
  preds = evaluation.predict_split(ts.pmapped_eval_step(spec), state, test_source, trigger,
                                   jax.random.key(config.seed + 2), config.eval.batch_size)
  return evaluation.summarize(preds, config.eval.asr_thresholds)


def run(config, workdir, show_progress=True):
  """Trains both models (resuming where possible) and writes workdir/results.json."""
  clean_cfg = clean_config(config)
  results = {'clean': train.train_and_evaluate(clean_cfg, os.path.join(workdir, 'clean'),
                                               show_progress=show_progress)}
  models = {'clean': results['clean']['final']}
  if config.attack.kind != 'none':
    poisoned_dir = os.path.join(workdir, 'poisoned')
    results['poisoned'] = train.train_and_evaluate(config, poisoned_dir,
                                                   show_progress=show_progress)
    spec = poisoning.AttackSpec.from_config(config)
    _, trigger = runs.restore(poisoned_dir)
    clean_state, _ = runs.restore(os.path.join(workdir, 'clean'))
    models['clean'] = evaluate_with_trigger(config, clean_state, spec, trigger)
    models['poisoned'] = results['poisoned']['final']
  summary = {'models': models, 'attack': config.attack.kind, 'seed': config.seed,
             'protocol': config.data.protocol, 'image_size': config.data.image_size}
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, 'results.json'), dict(summary, runs=results))
  return summary


def format_table(models):
  """A plain-text table: one row per model, one column per metric (degrees, ASR in %)."""
  columns = list(dict.fromkeys(k for m in models.values() for k in m
                               if k in METRICS or k.startswith('asr@')))
  rows = [['model'] + columns]
  for name, metrics in models.items():
    rows.append([name] + [_fmt(metrics.get(c)) for c in columns])
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return '\n'.join('  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _fmt(value):
  return '-' if value is None or not np.isfinite(value) else f'{value:.2f}'
