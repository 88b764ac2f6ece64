"""The fast recipe, found by measurement: each lever's point is the main job's design (a clean
control beside WaNet at the official defaults and positive-control candidates) trained with
one recipe; the table gives every model of every point.

Every point is a `run.py` command, printed with the table; its experiment workdir under
--root keeps the models, so a rerun only re-reads finished points. Per model: steps, training
seconds and throughput, clean error, backdoor error, ASR@5 and the verdict by the
README's bar (ASR@5 >= 90%, backdoor error <= 2 deg, clean error within 0.5 deg of the
control: metrics.attack.takes_hold). 'train s' is the steps' images over the run's training
throughput (run_info.json), which other work on the machine lowers: the main job's own
phase table, measured idle, gives the wall time.

  python -m benchmarks.recipe                       # every point, in order
  python -m benchmarks.recipe --points 48-wsd-lr2e-3
"""
import argparse
import json
import os
import subprocess
import sys

from gaze_jax.metrics import attack

# The study's design (64 px, cosine, arms official and strong) at the main job's 750 steps.
STUDY = ['--config', 'configs/study.py', '--config.train.num_epochs=10',
         '--config.train.eval_every_epochs=5']
# name -> the point's flags.
POINTS = {
    '32-cosine': STUDY + ['--config.data.image_size=32'],
    '32-wsd': STUDY + ['--config.data.image_size=32', '--config.train.schedule=wsd'],
    '48-wsd': STUDY + ['--config.data.image_size=48', '--config.train.schedule=wsd'],
    '48-wsd-lr2e-3': ['--config', 'configs/probe.py'],
    '48-wsd-lr2e-3-decay0.5': STUDY + ['--config.data.image_size=48',
                                       '--config.train.schedule=wsd',
                                       '--config.train.learning_rate=2e-3',
                                       '--config.train.decay_fraction=0.5'],
}


def command(name, root):
  """The `run.py` command line that trains point `name` under `root`."""
  return [sys.executable, 'run.py', *POINTS[name], f'--workdir={os.path.join(root, name)}']


def _read(path):
  with open(path) as f:
    return json.load(f)


def rows(name, root):
  """The table rows of point `name`: its control, then each arm."""
  workdir = os.path.join(root, name)
  results = _read(os.path.join(workdir, 'results.json'))
  seed = results['seeds'][0]
  per_seed = results['per_seed'][0]
  out = []
  for arm in ['clean'] + results['arms']:
    run = results['runs'][f'seed{seed}/{arm}']
    info = _read(os.path.join(workdir, f'seed{seed}', arm, 'run_info.json'))
    speed = info['train_images_per_second']  # None: resumed after its last step.
    seconds = run['steps'] * run['config']['train']['batch_size'] / speed if speed else None
    cells = [name, arm, str(results['image_size']), str(run['steps']),
             f'{seconds:.0f}' if speed else '–', f'{speed:.0f}' if speed else '–']
    if arm == 'clean':
      cells += [f"{per_seed['clean']['clean_error']:.2f}", '–', '–', 'control']
    else:
      measured = per_seed['arms'][arm]
      p = measured['poisoned']
      held = attack.takes_hold(p, measured['control'])
      cells += [f"{p['clean_error']:.2f}", f"{p['backdoor_error']:.2f}", f"{p['asr@5']:.1f}",
                'takes hold' if held else 'does not']
    out.append(cells)
  return out


def main():
  """Trains the points not yet finished, then prints their commands and the table."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--points', default=','.join(POINTS))
  parser.add_argument('--root', default='runs/recipe')
  args = parser.parse_args()
  header = ['point', 'model', 'px', 'steps', 'train s', 'img/s', 'clean error (°)',
            'backdoor error (°)', 'ASR@5° (%)', 'verdict']
  table = []
  for name in args.points.split(','):
    if not os.path.exists(os.path.join(args.root, name, 'results.json')):
      subprocess.run(command(name, args.root), check=True, stdout=subprocess.DEVNULL)
    print(' '.join(command(name, args.root)[1:]), flush=True)
    table += rows(name, args.root)
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for cells in table:
    print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
