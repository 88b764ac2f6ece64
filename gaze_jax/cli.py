"""The command line (`python run.py`, or `gaze-jax` once installed): flags -> config -> library.

  python run.py                                   # main job on the embedded synthetic release
  python run.py --config configs/wanet.py --config.wanet.s=1.0 --workdir runs/s1
  python run.py --mode=train --config configs/clean.py --workdir runs/clean
  python run.py --mode=predict --workdir runs/default --images faces/ --trigger=wanet
  python run.py --mode=export --workdir runs/default      # -> runs/default/export
  python run.py --mode=finetune --workdir runs/default --config.train.num_epochs=5
  python run.py --mode=sweep --sweep configs/sweeps/strength.py --workdir runs/sweep
  python run.py --mode=defend --defence all --workdir runs/population

A mistake of the user's (a flag, a config field, a file) ends in one line `error: ...` and
exit status 2; the config is validated here, once, before anything is written. SIGINT
(Ctrl-C) or SIGTERM during training stops at the next step with a checkpoint, one line on
how to resume and the signal's exit status (130, 143).
"""
import contextlib
import difflib
import importlib.util
import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
MODES = ('experiment', 'train', 'predict', 'export', 'finetune', 'sweep', 'defend')
# defences.population.CHOICES (tests/test_defences_cli.py checks they agree).
DEFENCES = ('strip', 'feature', 'reverse', 'finetune', 'prune', 'unlearn', 'all')


def fail(message, status=2, prefix='error: '):
  """Reports a user mistake as one line, without a traceback, and exits with `status`."""
  line = ' '.join(str(message).splitlines())  # A value given with a newline stays on it.
  sys.stderr.flush()
  sys.stderr.write(f'{prefix}{line}\n')  # One write: other threads' output can't split it.
  sys.stderr.flush()
  sys.exit(status)


def _config_overrides(argv):
  """(flag, dotted field) of each --config.FIELD=VALUE in argv."""
  for arg in argv:
    flag = arg.split('=')[0]
    if flag.startswith('--config.'):
      yield flag, flag[len('--config.'):]


def unknown_override(config, argv):
  """One line for the first --config.FIELD override naming a field `config` lacks, or None."""
  for flag, field in _config_overrides(argv):
    node = config
    for part in field.split('.'):
      if not hasattr(node, 'keys') or part not in node:
        names = list(node.keys()) if hasattr(node, 'keys') else []
        close = difflib.get_close_matches(part, names, n=1)
        hint = f' Did you mean "{close[0]}" instead of "{part}"?' if close else ''
        return f'{flag}: the config has no field {part!r}.{hint}'
      node = node[part]
  return None


def _config_file(argv):
  """The config file that --config names in argv, or the default."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg[len('--config='):]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return DEFAULT_CONFIG


def _load_config(path):
  """get_config() of a config file (for explaining an error; ml_collections loads it too)."""
  module_spec = importlib.util.spec_from_file_location('config_to_explain', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config()


def check_config_file(argv):
  """Refuses a --config file that cannot be loaded as a config.

  Refuses, as one line naming the file, a --config file that raises or exits while it
  loads, defines no get_config(), or whose get_config() returns no ConfigDict: what
  ml_collections would report as a traceback (or, for sys.exit, not at all)."""
  given = _config_file(argv)
  path, _, arg = given.partition(':')  # ml_collections' FILE:ARG passes ARG to get_config.
  if not os.path.isfile(path):
    return  # Reported by flag_errors ("no such file").
  expected = ('expected a Python file defining get_config() that returns an '
              'ml_collections.ConfigDict (see configs/clean.py)')
  try:
    module_spec = importlib.util.spec_from_file_location('config_to_check', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  except KeyboardInterrupt:  # SIGINT or SIGTERM (training.stopping): run() reports it.
    raise
  except BaseException as e:  # pylint: disable=broad-except  (SystemExit too)
    fail(f'--config={given}: loading it raised {_described(e)}; {expected}')
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    fail(f'--config={given}: it defines no get_config(); {expected}')
  try:
    config = get_config(*([arg] if arg else []))
  except KeyboardInterrupt:
    raise
  except BaseException as e:  # pylint: disable=broad-except
    fail(f'--config={given}: get_config() raised {_described(e)}; {expected}')
  if not isinstance(config, ml_collections.ConfigDict):
    fail(f'--config={given}: get_config() returned {type(config).__name__} {config!r:.60}; '
         f'{expected}')


def _described(error):
  """'SystemExit(0)', "RuntimeError('boom')" of an exception, at most 200 characters."""
  return f'{type(error).__name__}({", ".join(map(repr, error.args))})'[:200]


@contextlib.contextmanager
def flag_errors(argv):
  """Turns errors raised while the flags are read into one line.

  Bad flags, unreadable config files and overrides of fields the config lacks as one
  `error:` line (exit 2)."""
  try:
    yield
  except flags.Error as e:
    fail(str(e).removeprefix('ERROR:: '))  # absl's prefix of an unreadable --flagfile.
  except SyntaxError as e:  # In the --config file.
    fail(f'--config={_config_file(argv)}: cannot load the config file: {e!r}')
  except OSError as e:  # ml_collections could not load the --config file.
    path = _config_file(argv)
    reason = 'no such file' if not os.path.isfile(path) else ' '.join(str(e).split())
    fail(f'--config={path}: cannot load the config file: {reason}')
  except (AttributeError, KeyError):  # How ml_collections refuses an unknown field.
    message = unknown_override(_load_config(_config_file(argv)), argv)
    if message is None:  # A bug in the config file.
      raise
    fail(message)


DEFAULT_CONFIG = os.path.join(CONFIGS, 'default.py')
with flag_errors(sys.argv):  # The overrides are looked up here, or else when flags are parsed.
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG,
                                  'ml-collections config file; override fields with '
                                  '--config.FIELD=VALUE.', lock_config=True)
flags.DEFINE_enum('mode', 'experiment', MODES,
                  'experiment: a clean control and the poisoned arms over seeds, report.md; '
                  'train: the config\'s single run in --workdir; '
                  'predict: gaze of --images by the trained run in --workdir; '
                  'export: that run as model.safetensors + config.json in --export_dir. '
                  'predict and export use the run\'s config.json, not --config; a '
                  'finished experiment workdir means its last arm on its first seed. '
                  'finetune: the experiment in --workdir\'s poisoned model on clean data '
                  '(--config.FIELD=VALUE overrides apply to the fine-tuning config); '
                  'sweep: the --sweep grid over --config, one run per point; '
                  'defend: --defence on the trained run or experiment in --workdir '
                  '(WORKDIR/defences.json and the report\'s Defences section).')
flags.DEFINE_string('workdir', os.path.join('runs', 'default'),
                    'Run directory (checkpoints, logs, results); reused to resume.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (TPU pod, SLURM, ...).')
USER_CACHE = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
flags.DEFINE_string('compilation_cache', os.environ.get('JAX_COMPILATION_CACHE_DIR',
                                                     os.path.join(USER_CACHE, 'gaze_jax', 'xla')),
                    "JAX's persistent compilation cache: a rerun, resume or another model with "
                    "the same steps loads them instead of compiling ('' = off; default: "
                    "$JAX_COMPILATION_CACHE_DIR if set).")
flags.DEFINE_multi_string('images', [], 'predict: PNG/JPEG face crops or folders of them; '
                          'repeat the flag, separate with commas, or list them after it.')
flags.DEFINE_string('trigger', 'none', "predict: 'none', or the run's attack kind (wanet, "
                    'badnets, blended) to apply its saved trigger to the images first.')
flags.DEFINE_string('output', '', 'predict: write a CSV file instead of printing a table.')
flags.DEFINE_string('export_dir', '', 'export: output folder (default: WORKDIR/export).')
flags.DEFINE_string('sweep', '', 'sweep: a sweep file (configs/sweeps/*.py).')
flags.DEFINE_enum('defence', 'all', DEFENCES,
                  'defend: strip or feature (is this face triggered?), reverse (trigger '
                  'reverse-engineering: is this model backdoored?), finetune, prune, unlearn '
                  '(mitigation), or all.')
flags.DEFINE_list('defence_fractions', ['0.01', '0.05', '0.1'],
                  'defend: the defender\'s clean data as fractions of the training split '
                  '(mitigation runs once per fraction; detection uses the largest).')
flags.DEFINE_integer('defence_steps', 300,
                     'defend: optimisation steps of the trigger search and of each fine-tuning.')
flags.DEFINE_list('defence_families', ['warp', 'patch'],
                  'defend: the trigger families the reverse-engineering searches (warp, patch).')
FLAGS = flags.FLAGS


def export_dir():
  """The folder an export goes to: --export_dir, else WORKDIR/export."""
  return FLAGS.export_dir or os.path.join(FLAGS.workdir, 'export')


def check_usage(argv):
  """Checks the command line before the library is loaded.

  Refuses mistakes in the command itself before the library is loaded (in a moment, and
  before anything is written): stray arguments, a sweep without --sweep, an --export_dir or
  --output that cannot be written, and any output path (those, the workdir) that is or lies
  inside a run directory or data root it would damage (workdir.guard)."""
  # pylint: disable=g-import-not-at-top
  from gaze_jax.errors import UserError
  from gaze_jax.workdir import files
  from gaze_jax.workdir import guard
  if FLAGS.mode != 'predict' and len(argv) > 1:  # predict: `--images a.png b.png`.
    raise UserError(f'unexpected arguments {argv[1:]}: every option is a --flag '
                    '(python run.py --help)')
  if FLAGS.mode == 'sweep' and not FLAGS.sweep:
    raise UserError('--mode=sweep needs --sweep FILE (e.g. configs/sweeps/strength.py)')
  roots = [FLAGS.config.data.root] if 'root' in FLAGS.config.get('data', {}) else []
  if FLAGS.mode == 'export':
    files.check_writable(export_dir(), 'export directory')
    guard.check_output_dir(export_dir(), 'export directory',
                           allowed=os.path.join(FLAGS.workdir, 'export'), roots=roots)
  if FLAGS.mode == 'predict' and FLAGS.output:
    files.check_writable(FLAGS.output, 'output file')
    guard.check_output_file(FLAGS.output, 'output file', roots=roots)
  if FLAGS.mode not in ('predict', 'export'):  # Written by this mode: a run's, or runs' folder.
    guard.check_workdir(FLAGS.workdir, FLAGS.mode, roots=roots)
    for root in roots:
      guard.check_data_root(root)


def use_run(images):
  """--mode=predict / export on the trained run in --workdir."""
  from gaze_jax import export, predict  # pylint: disable=g-import-not-at-top
  out = export_dir()
  run_dir = predict.find_run_dir(FLAGS.workdir)
  if run_dir != FLAGS.workdir:
    print(f'using the run in {run_dir}', file=sys.stderr)
  run, state, trigger = predict.load_run(run_dir)
  classes = predict.load_classes(run_dir) if run.task.kind != 'regression' else None
  if FLAGS.mode == 'export':
    export.export_model(out, {'params': state.params, 'batch_stats': state.batch_stats},
                        run.config, trigger, classes)
    print(f'exported to {out}')
    return
  apply_trigger = predict.wants_trigger(run, FLAGS.trigger)
  names, pixels = predict.load_images(images, run.data.image_size)
  table = predict.rows(names, *predict.predict(run, state, trigger, pixels, apply_trigger,
                                               classes))
  if FLAGS.output:
    predict.write_csv(FLAGS.output, table)
    print(f'wrote {FLAGS.output}')
  else:
    print(predict.format_table(table))


def defend():
  """Runs the defences on the workdir and writes their report.

  --mode=defend: the defences on the run or experiment workdir in --workdir, merged into
  WORKDIR/defences.json; an experiment's report.md gains a Defences section, a single run
  gets WORKDIR/defences.md."""
  # pylint: disable=g-import-not-at-top
  from gaze_jax.defences import population
  from gaze_jax.report import assemble
  from gaze_jax.report import defences as report_defences
  options = population.check_options([FLAGS.defence], FLAGS.defence_fractions,
                                      FLAGS.defence_steps, FLAGS.defence_families)
  population.defend(FLAGS.workdir, options, log=lambda line: print(line, file=sys.stderr))
  if assemble.main_arm(FLAGS.workdir) is not None:  # A finished experiment.
    report = assemble.write_report(FLAGS.workdir)
  else:
    report = report_defences.write(FLAGS.workdir,
                                   report_defences.save_figures(FLAGS.workdir))
  print(f"defences: {os.path.join(FLAGS.workdir, population.DEFENCES_FILE)}\n"
        f'report: {report}')


def dispatch(argv):
  """Runs --mode; raises UserError for a mistake of the user's."""
  # pylint: disable=g-import-not-at-top
  from gaze_jax import config as config_lib
  from gaze_jax import phases
  from gaze_jax.experiments import finetune, main, sweep
  from gaze_jax.report import assemble, tables
  from gaze_jax.training import loop
  images = [p for arg in FLAGS.images for p in arg.split(',') if p]
  if FLAGS.mode == 'predict':
    images += argv[1:]  # `--images a.png b.png`: the shell's list after the flag.
  if FLAGS.mode in ('predict', 'export'):
    return use_run(images)
  if FLAGS.mode == 'defend':
    return defend()
  if FLAGS.mode == 'finetune':
    overrides = config_flags.get_override_values(FLAGS['config'])
    rows, report = finetune.run(FLAGS.workdir, overrides)
    print('\nfine-tuning on clean data (epoch 0 = poisoned model; errors in degrees, ASR in %):')
    print(tables.format_table({f"epoch {r['epoch']}": r for r in rows}))
    print(f'report: {report}')
    return None
  grid = sweep.load_grid(FLAGS.sweep) if FLAGS.mode == 'sweep' else None
  run = config_lib.validate(FLAGS.config)  # Once, before anything is written.
  if FLAGS.mode == 'train':
    result = loop.train_and_evaluate(run, FLAGS.workdir)
    print(tables.format_table({os.path.basename(FLAGS.workdir): result['final']}))
  elif FLAGS.mode == 'sweep':
    name = os.path.splitext(os.path.basename(FLAGS.sweep))[0]
    _, report = sweep.run(run, grid, FLAGS.workdir, name)
    print(f"sweep: {os.path.join(FLAGS.workdir, 'sweep.csv')}\nreport: {report}")
  else:
    summary = main.run(run, FLAGS.workdir)
    print(f"\n{summary['protocol']}, {summary['image_size']} px, seeds {summary['seeds']} "
          '(errors in degrees, ASR in %; mean±std over seeds):')
    print(tables.format_table(assemble.model_rows(summary)))
    print(f'results: {os.path.join(FLAGS.workdir, "results.json")}')
    print('\nwall time by phase (all models; run_info.json):')
    print(phases.table(summary['phases'], summary['wall_seconds']))
    if 'report' in summary:  # Written by the chief process.
      print(f"report: {summary['report']}")
  return None


def _main(argv):
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  from gaze_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    check_usage(argv)
  except UserError as e:
    fail(e)
  from gaze_jax.models import lowering  # pylint: disable=g-import-not-at-top
  lowering.use_eigen_convolutions()  # Before JAX's first computation starts its backend.
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache)
  # pylint: disable=g-import-not-at-top
  from gaze_jax.training import stopping
  from gaze_jax.workdir import background_errors
  background_errors.divert()  # Orbax's threads' tracebacks of a failure we report in a line.
  if FLAGS.multihost:
    jax.distributed.initialize()
  try:
    dispatch(argv)
    stopping.check()  # A signal whose exception a library swallowed: acted on here.
  except UserError as e:
    fail(e)
  except stopping.Stopped as e:  # SIGINT or SIGTERM while training: checkpointed.
    end_by_signal(e, e.exit_status)
  except KeyboardInterrupt as e:  # Outside training (stopping.Interrupted): all whole (atomic).
    end_by_signal(*_interruption(e))


def _interruption(error):
  """(line, exit status) of a stopping.Interrupted, or of a plain KeyboardInterrupt."""
  if hasattr(error, 'signum'):
    return str(error), 128 + error.signum
  return ('stopped by SIGINT outside the training loop (nothing half-written is kept); rerun '
          'the same command to go on', 128 + signal.SIGINT)


def end_by_signal(message, status):
  """Prints the stop line and ends the process with `status`.

  The stop line, then the process ends at once with the signal's `status`: what had to be
  written is (atomically), and finalizing the interpreter while XLA's or orbax's threads
  may still run can crash it (a segmentation fault after the line)."""
  logging.flush()
  sys.stdout.flush()
  sys.stderr.write(' '.join(str(message).splitlines()) + '\n')
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def parse_flags(argv):
  """absl's flag parsing (app.run's flags_parser), errors as one line like a UserError's."""
  check_config_file(argv)
  with flag_errors(argv):
    argv = FLAGS(argv)
    FLAGS.config.keys()  # Raises OSError if the config file did not load.
  return argv


def run():
  """Runs the command line given to the console entry point.

  The console entry point: SIGINT and SIGTERM are honoured (one line, the signal's exit
  status) from here to the end (training.stopping)."""
  from gaze_jax.training import stopping  # pylint: disable=g-import-not-at-top  (no JAX)
  stopping.install()
  try:
    app.run(_main, flags_parser=parse_flags)
  except KeyboardInterrupt as e:  # While the flags are read, before _main's own handling.
    end_by_signal(*_interruption(e))
