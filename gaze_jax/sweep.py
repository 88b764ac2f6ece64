"""Grids of poisoned runs over the attack's knobs: resumable, aggregated into sweep.csv.

A sweep file (configs/sweeps/*.py) defines `get_sweep()`, a list of flat override dicts such
as {'wanet.k': 4, 'wanet.s': 0.5} (big_vision style), each applied to the base config (the
`--config` of run.py, with its own overrides). Overrides may only touch the attack's sections
(ATTACK_SECTIONS), which a clean run ignores, so one clean control serves every point.

Layout of a sweep workdir:
  clean/         the shared clean control run;
  k=4,s=0.5/     one run directory per point, named from its overrides; point.json keeps
                 the control's metrics against the point's trigger and its imperceptibility;
  sweep.json     the sweep's name, override keys and base config;
  sweep.csv      one row per point: overrides, the poisoned model's final metrics, the
                 control's (control_*) and the trigger's imperceptibility;
  sweep.png, report.md.
A point with results.json is finished and not trained again; an interrupted point resumes
from its checkpoint (train.train_and_evaluate).
"""
import copy
import csv
import importlib.util
import json
import os

from absl import logging

from gaze_jax import evaluation
from gaze_jax import experiment
from gaze_jax import figures
from gaze_jax import files
from gaze_jax import poisoning
from gaze_jax import report
from gaze_jax import runs
from gaze_jax import stealth
from gaze_jax import train
from gaze_jax import train_step as ts
from gaze_jax import triggers
from gaze_jax.errors import UserError

ATTACK_SECTIONS = ('attack', 'target', 'wanet', 'badnets', 'blended')


def load_grid(path):
  """The list of override dicts of the sweep file at `path`."""
  if not os.path.isfile(path):
    raise UserError(f'sweep file {path} does not exist')
  module_spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise UserError(f'sweep file {path} defines no get_sweep()')
  return [dict(point) for point in module.get_sweep()]


def point_name(overrides):
  """Run directory name of a point: 'k=4,s=0.5' (full keys where last parts clash)."""
  last = [key.split('.')[-1] for key in overrides]
  names = [s if last.count(s) == 1 else key for s, key in zip(last, overrides)]
  return ','.join(f'{n}={_text(v)}' for n, v in zip(names, overrides.values())) or 'base'


def _text(value):
  if isinstance(value, (tuple, list)):
    return '_'.join(_text(v) for v in value)
  return f'{value:g}' if isinstance(value, float) else str(value)


def apply_overrides(config, overrides):
  """A copy of `config` with flat 'section.field' overrides (types kept, unknown refused)."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    try:
      for part in parents:
        node = node[part]
      if leaf not in node:
        raise KeyError(key)
      node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
      raise UserError(f'sweep override {key}={value!r}: {e}') from e
  return config


def check_grid(config, grid):
  """Refuses an empty grid, non-attack overrides and points that share a directory."""
  if not grid:
    raise UserError('the sweep has no points')
  for overrides in grid:
    outside = [k for k in overrides if k.split('.')[0] not in ATTACK_SECTIONS]
    if outside:
      raise UserError(f'sweep overrides {outside} are outside {ATTACK_SECTIONS}: the shared '
                      'clean control would not match; sweep those with separate workdirs')
    c = apply_overrides(config, overrides)
    num_bd, _ = poisoning.split_counts(c.train.batch_size, c.attack.pc, c.attack.cross_ratio)
    if c.attack.kind != 'none' and num_bd == 0:
      logging.warning('sweep point %s poisons no sample: int(batch_size %d * pc %g) = 0',
                      point_name(overrides), c.train.batch_size, c.attack.pc)
  names = [point_name(o) for o in grid]
  if len(set(names)) != len(names):
    raise UserError(f'sweep points repeat: {names}')


def run(config, grid, workdir, name=None, show_progress=True):
  """Trains (or skips) every point and the control; writes sweep.csv and the report.

  Returns:
    (rows of sweep.csv, path of report.md).
  """
  check_grid(config, grid)
  name = name or os.path.basename(os.path.normpath(workdir))
  clean_dir = os.path.join(workdir, 'clean')
  control = train.train_and_evaluate(experiment.clean_config(config), clean_dir,
                                     show_progress=show_progress)
  files.write_json(os.path.join(workdir, 'sweep.json'), {
      'name': name, 'keys': list(dict.fromkeys(k for o in grid for k in o)),
      'config': config.to_dict(),
      'counts': {'train': control['train_examples'], 'test': control['test_examples']}})
  shared = {}  # The control's state and the held-out images, loaded once when first needed.
  rows = [_point(apply_overrides(config, o), o, os.path.join(workdir, point_name(o)), clean_dir,
                 shared, show_progress) for o in grid]
  _write_csv(os.path.join(workdir, 'sweep.csv'), rows)
  section = report.read_sweep(workdir, workdir)
  figures.save(figures.sweep_figure(section['rows'], section['keys'],
                                    f'Sweep {name}: {report.provenance(config.to_dict())}'),
               os.path.join(workdir, 'sweep.png'))
  section['figure'] = 'sweep.png'
  path = report.write(os.path.join(workdir, 'report.md'), {
      'title': f'Sweep {name}: WaNet backdoor on a ResNet-18 gaze regressor',
      'config': config.to_dict(), 'counts': section['counts'], 'sweeps': {name: section}})
  return rows, path


def _point(config, overrides, run_dir, clean_dir, shared, show_progress):
  train.check_same_config(run_dir, config)  # Also for finished points, which are skipped.
  results_path = os.path.join(run_dir, 'results.json')
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  else:
    results = train.train_and_evaluate(config, run_dir, show_progress=show_progress)
  extras_path = os.path.join(run_dir, 'point.json')
  if os.path.exists(extras_path):
    with open(extras_path) as f:
      extras = json.load(f)
  else:
    extras = _extras(config, clean_dir, shared)
    files.write_json(extras_path, extras)
  ordered = experiment.ordered
  return {'point': point_name(overrides), **overrides, **ordered(results['final']),
          **{'control_' + k: v for k, v in ordered(extras['control']).items()},
          **ordered(extras['stealth'])}


def _extras(config, clean_dir, shared):
  """The control's metrics against this point's trigger and the trigger's imperceptibility."""
  if not shared:
    shared['state'] = runs.restore(clean_dir)[0]
    shared['images'] = stealth.held_out_images(config)
  spec = poisoning.AttackSpec.from_config(config)
  trigger = triggers.make_trigger(spec, config.data.image_size)  # = the run's saved trigger.
  preds = experiment.predictions(config, shared['state'], ts.pmapped_eval_step(spec), trigger)
  return {'control': evaluation.summarize(preds, config.eval.asr_thresholds),
          'stealth': stealth.measure(spec, trigger, shared['images'])}


def _write_csv(path, rows):
  columns = list(dict.fromkeys(k for r in rows for k in r))

  def write(f):
    writer = csv.DictWriter(f, columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
  files.write_atomic(path, write)
