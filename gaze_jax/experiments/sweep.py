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
from its checkpoint (training.loop.train_and_evaluate).
"""
import csv
import importlib.util
import os

from absl import logging

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.data import splits
from gaze_jax.errors import UserError
from gaze_jax.experiments import main
from gaze_jax.metrics import imperceptibility
from gaze_jax.report import figures
from gaze_jax.report import markdown
from gaze_jax.report import tables
from gaze_jax.training import evaluate
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.workdir import files
from gaze_jax.workdir import rundir

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


def check_grid(run, grid):
  """The RunSpec of every point; refuses an empty grid, non-attack overrides and points that
  share a directory."""
  if not grid:
    raise UserError('the sweep has no points')
  points = []
  for overrides in grid:
    outside = [k for k in overrides if k.split('.')[0] not in ATTACK_SECTIONS]
    if outside:
      raise UserError(f'sweep overrides {outside} are outside {ATTACK_SECTIONS}: the shared '
                      'clean control would not match; sweep those with separate workdirs')
    point = config_lib.derive(run, overrides)
    num_bd, _ = config_lib.split_counts(point.train.batch_size, point.attack.pc,
                                        point.attack.cross_ratio)
    if point.attack.kind != 'none' and num_bd == 0:
      logging.warning('sweep point %s poisons no sample: int(batch_size %d * pc %g) = 0',
                      point_name(overrides), point.train.batch_size, point.attack.pc)
    points.append(point)
  names = [point_name(o) for o in grid]
  if len(set(names)) != len(names):
    raise UserError(f'sweep points repeat: {names}')
  return points


def run(run_spec, grid, workdir, name=None, show_progress=True):
  """Trains (or skips) every point and the control; writes sweep.csv and the report.

  Returns:
    (rows of sweep.csv, path of report.md).
  """
  points = check_grid(run_spec, grid)
  name = name or os.path.basename(os.path.normpath(workdir))
  clean_dir = os.path.join(workdir, 'clean')
  control = loop.train_and_evaluate(config_lib.derive(run_spec, main.CONTROL), clean_dir,
                                    show_progress=show_progress)
  files.write_json(os.path.join(workdir, 'sweep.json'), {
      'name': name, 'keys': list(dict.fromkeys(k for o in grid for k in o)),
      'config': run_spec.config,
      'counts': {'train': control['train_examples'], 'test': control['test_examples']}})
  shared = {}  # The control's state and the held-out images, loaded once when first needed.
  rows = [_point(point, o, os.path.join(workdir, point_name(o)), clean_dir, shared,
                 show_progress) for point, o in zip(points, grid)]
  _write_csv(os.path.join(workdir, 'sweep.csv'), rows)
  section = markdown.read_sweep(workdir, workdir)
  figures.save(figures.sweep_figure(section['rows'], section['keys'],
                                    f'Sweep {name}: {markdown.provenance(run_spec.config)}'),
               os.path.join(workdir, 'sweep.png'))
  section['figure'] = 'sweep.png'
  path = markdown.write(os.path.join(workdir, 'report.md'), {
      'title': f'Sweep {name}: WaNet backdoor on a ResNet-18 gaze regressor',
      'config': run_spec.config, 'counts': section['counts'], 'sweeps': {name: section}})
  return rows, path


def _point(point, overrides, run_dir, clean_dir, shared, show_progress):
  rundir.check_same_config(run_dir, point.config)  # Also for finished points, skipped.
  if rundir.finished(run_dir):
    results = rundir.read_results(run_dir)
  else:
    results = loop.train_and_evaluate(point, run_dir, show_progress=show_progress)
  extras_path = os.path.join(run_dir, 'point.json')
  if os.path.exists(extras_path):
    extras = rundir.read_json(extras_path)
  else:
    extras = _extras(point, clean_dir, shared)
    files.write_json(extras_path, extras)
  ordered = tables.ordered
  return {'point': point_name(overrides), **overrides, **ordered(results['final']),
          **{'control_' + k: v for k, v in ordered(extras['control']).items()},
          **ordered(extras['stealth'])}


def _extras(point, clean_dir, shared):
  """The control's metrics against this point's trigger and the trigger's imperceptibility."""
  if not shared:
    shared['state'] = runs.restore(clean_dir)[0]
    _, test_source = splits.load_splits(point.data, point.seed)
    shared['images'] = splits.stack(test_source, 'image')
  spec = point.attack
  trigger = triggers.make_trigger(spec, point.data.image_size)  # = the run's saved trigger.
  preds = main.predictions(point, shared['state'], trigger)
  return {'control': evaluate.summarize(preds, point.eval.asr_thresholds),
          'stealth': imperceptibility.measure(spec, trigger, shared['images'])}


def _write_csv(path, rows):
  columns = list(dict.fromkeys(k for r in rows for k in r))

  def write(f):
    writer = csv.DictWriter(f, columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
  files.write_atomic(path, write)
