"""Grids of poisoned runs over the attack's knobs: resumable, aggregated into sweep.csv.

A sweep file (configs/sweeps/*.py) defines `get_sweep()`, a list of flat override
dicts such as {'wanet.k': 4, 'wanet.s': 0.5} (big_vision style), each applied to the base
config (the `--config` of run.py, with its own overrides). Every point is a poisoned model
beside a clean control trained the same way: overrides of the attack sections
(config.ATTACK_SECTIONS) leave the control as it is, so points that only change the attack
share one; a point that changes anything else (epochs, data, model) gets a control of its own
with those overrides.

Layout of a sweep workdir:
  clean/         the clean control of the base config;
  clean,E=V/     the control of points that override E (outside the attack sections);
  k=4,s=0.5/     one run directory per point, named from its overrides; point.json keeps
                 both models' metrics against the point's trigger (experiments.main.
                 measure_arm) and the trigger's imperceptibility;
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
from gaze_jax.errors import UserError
from gaze_jax.experiments import main
from gaze_jax.metrics import imperceptibility
from gaze_jax.report import figures
from gaze_jax.report import markdown
from gaze_jax.report import tables
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.training import steps
from gaze_jax.training import stopping
from gaze_jax.workdir import files
from gaze_jax.workdir import rundir

def load_grid(path):
  """The list of override dicts of the sweep file at `path`."""
  if not os.path.isfile(path):
    raise UserError(f'sweep file {path} does not exist')
  expected = ('expected a Python file defining get_sweep() that returns a list of override '
              "dicts such as {'wanet.s': 0.5} (see configs/sweeps/strength.py)")
  module_spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except KeyboardInterrupt:  # SIGINT or SIGTERM (training.stopping).
    raise
  except BaseException as e:  # pylint: disable=broad-except  (SystemExit too)
    raise UserError(f'sweep file {path}: loading it raised {type(e).__name__}{e.args!r:.150}; '
                    f'{expected}') from e
  if not callable(getattr(module, 'get_sweep', None)):
    raise UserError(f'sweep file {path} defines no get_sweep(); {expected}')
  try:
    grid = module.get_sweep()
  except KeyboardInterrupt:
    raise
  except BaseException as e:  # pylint: disable=broad-except
    raise UserError(f'sweep file {path}: get_sweep() raised {type(e).__name__}'
                    f'{e.args!r:.150}; {expected}') from e
  if not isinstance(grid, (list, tuple)) or not all(isinstance(p, dict) for p in grid):
    raise UserError(f'sweep file {path}: get_sweep() returned {type(grid).__name__} '
                    f'{grid!r:.60}; {expected}')
  return [dict(point) for point in grid]


def point_name(overrides):
  """Run directory name of a point: 'k=4,s=0.5' (full keys where last parts clash)."""
  last = [key.split('.')[-1] for key in overrides]
  names = [s if last.count(s) == 1 else key for s, key in zip(last, overrides)]
  return ','.join(f'{n}={_text(v)}' for n, v in zip(names, overrides.values())) or 'base'


def _text(value):
  if isinstance(value, (tuple, list)):
    return '_'.join(_text(v) for v in value)
  return f'{value:g}' if isinstance(value, float) else str(value)


def control_overrides(overrides):
  """The overrides a point's clean control shares with it: those outside the attack."""
  return {k: v for k, v in overrides.items()
          if k.split('.')[0] not in config_lib.ATTACK_SECTIONS}


def control_dir_name(overrides):
  """'clean', or 'clean,E=V' for the control of points overriding E outside the attack."""
  shared = control_overrides(overrides)
  return 'clean,' + point_name(shared) if shared else 'clean'


def check_grid(run, grid):
  """Validates a sweep's grid and returns each point's RunSpec.

  The RunSpec of every point; refuses an empty grid, invalid points and points that
  share a directory."""
  if not grid:
    raise UserError('the sweep has no points')
  points = []
  for overrides in grid:
    point = config_lib.derive(run, overrides)
    if point.attack.kind == 'none':  # Measured against its trigger: it must have one.
      raise UserError(
          f"sweep point {point_name(overrides)} has attack.kind='none': every point is a "
          'poisoned model measured beside a clean control; sweep over a poisoned --config '
          '(e.g. configs/wanet.py) or set attack.kind in the point')
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
  for point, overrides in zip(points, grid):  # Every run's workdir, before data or training.
    control = config_lib.derive(run_spec, {**control_overrides(overrides), **main.CONTROL})
    loop.check_before_writing(control, os.path.join(workdir, control_dir_name(overrides)))
    loop.check_before_writing(point, os.path.join(workdir, point_name(overrides)))
  controls = {}  # Control directory -> its results, trained when first needed.
  rows = []
  for point, overrides in zip(points, grid):
    stopping.check()  # A signal between points whose exception a library swallowed.
    control_dir = os.path.join(workdir, control_dir_name(overrides))
    if control_dir not in controls:
      controls[control_dir] = loop.train_and_evaluate(
          config_lib.derive(run_spec, {**control_overrides(overrides), **main.CONTROL}),
          control_dir, show_progress=show_progress)
    rows.append(_point(point, overrides, os.path.join(workdir, point_name(overrides)),
                       control_dir, controls[control_dir], show_progress))
    steps.release_compiled()  # Each point's steps are its own (see steps.release_compiled).
  first = next(iter(controls.values()))
  files.write_json(os.path.join(workdir, 'sweep.json'), {
      'name': name, 'keys': list(dict.fromkeys(k for o in grid for k in o)),
      'config': run_spec.config,
      'counts': {'train': first['train_examples'], 'test': first['test_examples']}})
  _write_csv(os.path.join(workdir, 'sweep.csv'), rows)
  section = markdown.read_sweep(workdir, workdir)
  figures.save(figures.sweep_figure(section['rows'], section['keys'],
                                    f'Sweep {name}: {markdown.provenance(run_spec.config)}'),
               os.path.join(workdir, 'sweep.png'))
  section['figure'] = 'sweep.png'
  figures.save(figures.frontier(section['rows']), os.path.join(workdir, 'frontier.png'))
  section['frontier'] = 'frontier.png'
  if 'task.kind' in section['keys']:
    figures.save(figures.task_comparison(markdown.by_task(
        section['rows'], section['keys'], run_spec.task.kind)), os.path.join(workdir, 'tasks.png'))
    section['tasks'] = 'tasks.png'
  path = markdown.write(os.path.join(workdir, 'report.md'), {
      'title': f'Sweep {name}: WaNet backdoor on a ResNet-18 gaze regressor',
      'config': run_spec.config, 'counts': section['counts'], 'sweeps': {name: section}})
  return rows, path


def _point(point, overrides, run_dir, control_dir, control, show_progress):
  """One row of sweep.csv: the point's overrides, both models' metrics, the trigger's look."""
  rundir.check_same_config(run_dir, point.config)  # Also for finished points, skipped.
  if not rundir.finished(run_dir):
    loop.train_and_evaluate(point, run_dir, show_progress=show_progress)
  measured_path = os.path.join(run_dir, 'point.json')
  if os.path.exists(measured_path):
    measured = rundir.read_json(measured_path)
  else:
    measured = main.measure_arm(point, run_dir, runs.restore(control_dir)[0], control)
    files.write_json(measured_path, measured)
  ordered = tables.ordered
  stealth = {k: v for k, v in measured['stealth'].items() if k in imperceptibility.METRICS}
  return {'point': point_name(overrides), **overrides,
          'trigger_kind': measured['stealth']['kind'], **ordered(measured['poisoned']),
          **{'control_' + k: v for k, v in ordered(measured['control']).items()},
          **ordered(stealth)}


def _write_csv(path, rows):
  columns = list(dict.fromkeys(k for r in rows for k in r))

  def write(f):
    writer = csv.DictWriter(f, columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
  files.write_atomic(path, write)
