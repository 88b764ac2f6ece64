"""gaze_jax entry point: flags -> config -> library call.

  python run.py                                   # main job on the embedded synthetic release
  python run.py --config configs/wanet.py --config.wanet.s=1.0 --workdir runs/s1
  python run.py --mode=train --config configs/clean.py --workdir runs/clean
  python run.py --mode=predict --workdir runs/default --images faces/ --trigger=wanet
  python run.py --mode=export --workdir runs/default      # -> runs/default/export
  python run.py --mode=finetune --workdir runs/default --config.train.num_epochs=5
  python run.py --mode=sweep --sweep configs/sweeps/strength.py --workdir runs/sweep_strength
"""
import contextlib
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message):
  """Reports a user mistake as one line, without a traceback, and exits with status 2."""
  sys.stderr.flush()
  sys.stderr.write(f'error: {message}\n')  # One write: other threads' output can't split it.
  sys.stderr.flush()
  sys.exit(2)


def unknown_override(error):
  """One line for an --config.FIELD override of a field the config lacks, else None."""
  while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(...)).
    error = error.args[0]
  name, _, hint = str(error.args[0] if error.args else '').partition('\n')
  name = name.strip('\'"')
  for arg in sys.argv[1:]:
    flag = arg.split('=')[0]
    if flag.startswith('--config.') and name in flag.split('.')[1:]:
      return f'{flag}: the config has no field {name!r}. {hint}'.strip()
  return None


@contextlib.contextmanager
def flag_errors():
  """Bad flags and overrides of fields the config lacks as one `error:` line (exit 2)."""
  try:
    yield
  except flags.Error as e:
    fail(e)
  except (AttributeError, KeyError) as e:  # How ml_collections reports an unknown field.
    message = unknown_override(e)
    if message is None:  # A bug in the config file.
      raise
    fail(message)


with flag_errors():  # The overrides are looked up here, or else when the flags are parsed.
  config_flags.DEFINE_config_file('config', os.path.join(HERE, 'configs', 'wanet.py'),
                                  'ml-collections config file; override fields with '
                                  '--config.FIELD=VALUE.', lock_config=True)
flags.DEFINE_enum('mode', 'experiment',
                  ['experiment', 'train', 'predict', 'export', 'finetune', 'sweep'],
                  'experiment: clean control + poisoned model, one table, report.md; '
                  'train: the config\'s single run in --workdir; '
                  'predict: gaze of --images by the trained run in --workdir; '
                  'export: that run as model.safetensors + config.json in --export_dir. '
                  'predict and export use the run\'s config.json, not --config; an '
                  'experiment workdir means its poisoned/ (else clean/) run. '
                  'finetune: the experiment in --workdir\'s poisoned model on clean data '
                  '(--config.FIELD=VALUE overrides apply to the fine-tuning config); '
                  'sweep: the --sweep grid over --config, one run per point.')
flags.DEFINE_string('workdir', os.path.join('runs', 'default'),
                    'Run directory (checkpoints, logs, results); reused to resume.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (TPU pod, SLURM, ...).')
flags.DEFINE_multi_string('images', [], 'predict: PNG/JPEG face crops or folders of them; '
                          'repeat the flag, separate with commas, or list them after it.')
flags.DEFINE_string('trigger', 'none', "predict: 'none', or the run's attack kind (wanet, "
                    'badnets, blended) to apply its saved trigger to the images first.')
flags.DEFINE_string('output', '', 'predict: write a CSV file instead of printing a table.')
flags.DEFINE_string('export_dir', '', 'export: output folder (default: WORKDIR/export).')
flags.DEFINE_string('sweep', '', 'sweep: a sweep file (configs/sweeps/*.py).')
FLAGS = flags.FLAGS


def use_run(images):
  """--mode=predict / export on the trained run in --workdir."""
  from gaze_jax import export, predict  # pylint: disable=g-import-not-at-top
  run_dir = predict.find_run_dir(FLAGS.workdir)
  if run_dir != FLAGS.workdir:
    print(f'using the run in {run_dir}', file=sys.stderr)
  config, state, trigger = predict.load_run(run_dir)
  if FLAGS.mode == 'export':
    out = FLAGS.export_dir or os.path.join(FLAGS.workdir, 'export')
    export.export_model(out, {'params': state.params, 'batch_stats': state.batch_stats},
                        config, trigger)
    print(f'exported to {out}')
    return
  apply_trigger = predict.wants_trigger(config, FLAGS.trigger)
  names, pixels = predict.load_images(images, config.data.image_size)
  table = predict.rows(names, predict.predict(config, state, trigger, pixels, apply_trigger))
  if FLAGS.output:
    predict.write_csv(FLAGS.output, table)
    print(f'wrote {FLAGS.output}')
  else:
    print(predict.format_table(table))


def main(argv):
  images = [p for arg in FLAGS.images for p in arg.split(',') if p]
  if FLAGS.mode == 'predict':
    images += argv[1:]  # `--images a.png b.png`: the shell's list after the flag.
  elif len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  import jax  # pylint: disable=g-import-not-at-top
  from gaze_jax import experiment, finetune, lowering, sweep, train  # pylint: disable=g-import-not-at-top
  lowering.use_eigen_convolutions()  # Before JAX's first computation starts its backend.
  from gaze_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if FLAGS.multihost:
    jax.distributed.initialize()
  config = FLAGS.config
  try:
    if FLAGS.mode == 'train':
      result = train.train_and_evaluate(config, FLAGS.workdir)
      print(experiment.format_table({os.path.basename(FLAGS.workdir): result['final']}))
    elif FLAGS.mode in ('predict', 'export'):
      use_run(images)
    elif FLAGS.mode == 'finetune':
      overrides = config_flags.get_override_values(FLAGS['config'])
      rows, report = finetune.run(FLAGS.workdir, overrides)
      print('\nfine-tuning on clean data (epoch 0 = poisoned model; errors in degrees, ASR in %):')
      print(experiment.format_table({f"epoch {r['epoch']}": r for r in rows}))
      print(f'report: {report}')
    elif FLAGS.mode == 'sweep':
      if not FLAGS.sweep:
        raise app.UsageError('--mode=sweep needs --sweep FILE')
      name = os.path.splitext(os.path.basename(FLAGS.sweep))[0]
      _, report = sweep.run(config, sweep.load_grid(FLAGS.sweep), FLAGS.workdir, name)
      print(f"sweep: {os.path.join(FLAGS.workdir, 'sweep.csv')}\nreport: {report}")
    else:
      summary = experiment.run(config, FLAGS.workdir)
      print(f"\n{summary['protocol']}, {summary['image_size']} px, seed {summary['seed']}, "
            f"attack {summary['attack']} (errors in degrees, ASR in %):")
      print(experiment.format_table(summary['models']))
      print(f'results: {os.path.join(FLAGS.workdir, "results.json")}')
      if 'report' in summary:  # Written by the chief process.
        print(f"report: {summary['report']}")
  except UserError as e:
    fail(e)


def parse_flags(argv):
  """absl's flag parsing (app.run's flags_parser), errors as one line like a UserError's."""
  with flag_errors():
    return FLAGS(argv)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
