"""gaze_jax entry point: flags -> config -> library call.

  python run.py                                   # main job on the embedded synthetic release
  python run.py --config configs/wanet.py --config.wanet.s=1.0 --workdir runs/s1
  python run.py --mode=train --config configs/clean.py --workdir runs/clean
"""
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

HERE = os.path.dirname(os.path.abspath(__file__))
config_flags.DEFINE_config_file('config', os.path.join(HERE, 'configs', 'wanet.py'),
                                'ml-collections config file; override fields with '
                                '--config.FIELD=VALUE.', lock_config=True)
flags.DEFINE_enum('mode', 'experiment', ['experiment', 'train'],
                  'experiment: clean control + poisoned model, one table; '
                  'train: the config\'s single run in --workdir.')
flags.DEFINE_string('workdir', os.path.join('runs', 'default'),
                    'Run directory (checkpoints, logs, results); reused to resume.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() (TPU pod, SLURM, ...).')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax  # pylint: disable=g-import-not-at-top
  from gaze_jax import experiment, train  # pylint: disable=g-import-not-at-top
  from gaze_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if FLAGS.multihost:
    jax.distributed.initialize()
  config = FLAGS.config
  try:
    if FLAGS.mode == 'train':
      result = train.train_and_evaluate(config, FLAGS.workdir)
      print(experiment.format_table({os.path.basename(FLAGS.workdir): result['final']}))
    else:
      summary = experiment.run(config, FLAGS.workdir)
      print(f"\n{summary['protocol']}, {summary['image_size']} px, seed {summary['seed']}, "
            f"attack {summary['attack']} (errors in degrees, ASR in %):")
      print(experiment.format_table(summary['models']))
      print(f'results: {os.path.join(FLAGS.workdir, "results.json")}')
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
