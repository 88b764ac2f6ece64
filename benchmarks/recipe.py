"""The fast recipe, found by measurement: each lever's point is the main job's design (a clean
control, WaNet at the official defaults, the positive control) trained with one recipe.

Every point is a `run.py` command, printed beside its row; its experiment workdir under
--root keeps the models, so a rerun only re-reads finished points (their wall time is kept
in `wall.json`, measured when they trained). The table gives, per point: steps per model,
the image size, wall seconds per model (the point's wall over its three models, data and
report included), each model's clean error, and the verdicts of both arms by the README's
bar (ASR@5 >= 90%, backdoor error <= 2 deg, clean error within 0.5 deg of the control).

  python -m benchmarks.recipe                       # every point, in order
  python -m benchmarks.recipe --points 32-wsd,48-wsd
"""
import argparse
import json
import os
import subprocess
import sys
import time

BASE = ['--config', 'configs/study.py', '--config.train.eval_every_epochs=5']
# name -> overrides (flags) of the study config (64 px, cosine, 20 epochs).
POINTS = {
    '64-cosine-10ep': ['--config.train.num_epochs=10', '--config.train.eval_every_epochs=1'],
    '32-cosine-10ep': ['--config.data.image_size=32', '--config.train.num_epochs=10'],
    '32-wsd-10ep': ['--config.data.image_size=32', '--config.train.num_epochs=10',
                    '--config.train.schedule=wsd'],
    '32-wsd-10ep-lr2e-3': ['--config.data.image_size=32', '--config.train.num_epochs=10',
                           '--config.train.schedule=wsd', '--config.train.learning_rate=2e-3'],
    '32-wsd-20ep': ['--config.data.image_size=32', '--config.train.num_epochs=20',
                    '--config.train.schedule=wsd'],
    '48-wsd-10ep': ['--config.data.image_size=48', '--config.train.num_epochs=10',
                    '--config.train.schedule=wsd'],
    '64-wsd-10ep': ['--config.train.num_epochs=10', '--config.train.schedule=wsd'],
}
ARMS = ('official', 'strong')


def command(name, root):
  return [sys.executable, 'run.py', *BASE, *POINTS[name],
          f'--workdir={os.path.join(root, name)}']


def train(name, root):
  """Runs point `name` unless finished; returns its wall seconds (measured when trained)."""
  workdir = os.path.join(root, name)
  wall_file = os.path.join(workdir, 'wall.json')
  if os.path.exists(wall_file):
    with open(wall_file) as f:
      return json.load(f)['seconds']
  start = time.perf_counter()
  subprocess.run(command(name, root), check=True, stdout=subprocess.DEVNULL)
  seconds = time.perf_counter() - start
  with open(wall_file, 'w') as f:
    json.dump({'seconds': seconds}, f)
  return seconds


def row(name, root, seconds):
  with open(os.path.join(root, name, 'results.json')) as f:
    results = json.load(f)
  per_seed = results['per_seed'][0]
  clean = per_seed['clean']['clean_error']
  steps = results['runs'][f'seed{results["seeds"][0]}/clean']['steps']
  cells = [name, str(results['image_size']), str(steps), f'{seconds / 3:.0f}', f'{clean:.2f}']
  for arm in ARMS:
    m = per_seed['arms'][arm]['poisoned']
    holds = (m['asr@5'] >= 90 and m['backdoor_error'] <= 2 and
             m['clean_error'] - clean <= 0.5)
    cells += [f'{m["clean_error"]:.2f}', f'{m["backdoor_error"]:.2f}', f'{m["asr@5"]:.1f}',
              'takes hold' if holds else 'no']
  return cells


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--points', default=','.join(POINTS))
  parser.add_argument('--root', default='runs/recipe')
  args = parser.parse_args()
  header = ['point', 'px', 'steps/model', 's/model', 'control clean']
  for arm in ARMS:
    header += [f'{arm} clean', f'{arm} backdoor', f'{arm} ASR@5', f'{arm} verdict']
  rows = []
  for name in args.points.split(','):
    seconds = train(name, args.root)
    rows.append(row(name, args.root, seconds))
    print(' '.join(command(name, args.root)[1:]), flush=True)
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for cells in rows:
    print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
