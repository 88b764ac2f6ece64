"""Output paths checked against what they would damage, before anything is written.

A folder or file the user names as an output (an export folder, predict's --output, a
workdir) must not be, hold or lie inside a run directory or a data root that writing there
would damage: an export into a run directory would replace its config.json, a run started
inside a data root or inside another run's folders would mix its files with theirs. What a
folder is, is read from its files alone (no config is loaded):

  run directory   config.json beside checkpoints/, metrics.jsonl or results.json;
  workdir         a run directory, or a folder of runs: an experiment's (seedS/ARM/ runs,
                  results.json) or a sweep's (sweep.json, clean/ and its points);
  export folder   model.safetensors beside config.json;
  data root       releases/ or tfds/ (data.root: the generated releases and built datasets).
"""
import os

from gaze_jax.errors import UserError

RUN_MARKERS = ('checkpoints', 'metrics.jsonl', 'results.json')
DATA_MARKERS = ('releases', 'tfds')
# Files a workdir of any kind writes at its top, which an --output file must not replace.
WORKDIR_FILES = ('config.json', 'results.json', 'run_info.json', 'metrics.jsonl', 'report.md',
                 'sweep.json', 'sweep.csv', '.lock')
_SCAN_ENTRIES = 2000  # Sub-folders looked at when asking whether a folder holds runs.


def is_run_dir(path):
  """Whether `path` is a run directory (training.loop's layout)."""
  return (os.path.isfile(os.path.join(path, 'config.json'))
          and any(os.path.exists(os.path.join(path, m)) for m in RUN_MARKERS))


def is_export_dir(path):
  """Whether `path` is an export (it holds model.safetensors and config.json)."""
  return all(os.path.isfile(os.path.join(path, f)) for f in ('model.safetensors', 'config.json'))


def is_data_root(path, roots=()):
  """Whether `path` is one of `roots` or a folder holding releases/ or tfds/."""
  return (any(_same(path, r) for r in roots)
          or any(os.path.isdir(os.path.join(path, m)) for m in DATA_MARKERS))


def holds_runs(path, depth=2):
  """Whether `path` holds run directories.

  Whether a run directory lies below `path`, at most `depth` folders down (an
  experiment's seedS/ARM/ is 2)."""
  frontier, seen = [path], 0
  for _ in range(depth):
    below = []
    for folder in frontier:
      try:
        entries = list(os.scandir(folder))
      except OSError:
        continue
      for entry in entries:
        if seen >= _SCAN_ENTRIES:
          return False
        if entry.is_dir(follow_symlinks=False):
          seen += 1
          if is_run_dir(entry.path):
            return True
          below.append(entry.path)
    frontier = below
  return False


def _same(a, b):
  return os.path.realpath(a) == os.path.realpath(b)


def _ancestors(path):
  """`path` (made absolute, links resolved) and the folders above it, nearest first."""
  path = os.path.realpath(path)
  while True:
    yield path
    parent = os.path.dirname(path)
    if parent == path:
      return
    path = parent


def _refuse(what, path, problem):
  raise UserError(f'{what} {path} {problem}; writing there would damage it. Choose another '
                  'path')


def _check_not_inside_data(what, path, roots, start=None):
  """Refuses `path` if it is or lies inside a data root (looking up from `start`, if given)."""
  for folder in _ancestors(start or path):
    if is_data_root(folder, roots):
      _refuse(what, path, 'is a data root' if _same(folder, path)
              else f'lies inside the data root {folder}')


def check_output_dir(path, what, allowed=None, roots=()):
  """Refuses an output folder that would damage runs or data.

  Refuses an output folder (an export) that is or lies inside a run directory or data
  root, or holds runs; `allowed` is the one folder inside a run meant for it (RUN/export)."""
  _check_not_inside_data(what, path, roots)
  if allowed is not None and _same(path, allowed):
    return
  for folder in _ancestors(path):
    if _same(folder, path):
      if is_run_dir(folder):
        _refuse(what, path, 'is a run directory')
      if os.path.isdir(folder) and not is_export_dir(folder) and holds_runs(folder):
        _refuse(what, path, 'holds run directories (an experiment or sweep workdir)')
    elif is_run_dir(folder):
      _refuse(what, path, f'lies inside the run directory {folder}')


def check_output_file(path, what, roots=()):
  """Refuses an output file that would damage runs, data or exports.

  Refuses an output file inside a run directory or data root, one that would replace a
  workdir's or an export's own file, and one that is a folder."""
  if os.path.isdir(path):
    _refuse(what, path, 'is a folder')
  folder = os.path.dirname(os.path.abspath(path))
  _check_not_inside_data(what, path, roots, start=folder)
  for above in _ancestors(folder):
    if is_run_dir(above):
      _refuse(what, path, f'lies inside the run directory {above}')
  name = os.path.basename(path)
  if name in WORKDIR_FILES and (holds_runs(folder) or is_export_dir(folder)):
    _refuse(what, path, f'is a file of the workdir {folder}')
  if is_export_dir(folder) and name in ('model.safetensors', 'config.json'):
    _refuse(what, path, f'is a file of the export {folder}')


def check_workdir(path, mode, roots=()):
  """Refuses a workdir unfit for `mode`.

  Refuses a workdir for `mode` ('train', 'experiment', 'sweep', 'finetune') that is or lies
  inside a data root, lies inside a run directory, is an export, or is a workdir of another
  kind (a train run in an experiment's folder, an experiment or sweep in a run's)."""
  what = 'workdir'
  _check_not_inside_data(what, path, roots)
  for above in list(_ancestors(path))[1:]:
    if is_run_dir(above):
      _refuse(what, path, f'lies inside the run directory {above}')
  if not os.path.isdir(path):
    return
  if is_export_dir(path):
    _refuse(what, path, 'is an export folder (model.safetensors, config.json)')
  if mode == 'train' and not is_run_dir(path) and holds_runs(path):
    _refuse(what, path, 'holds run directories (an experiment or sweep workdir), so it is '
            'not the workdir of one run')
  if mode in ('experiment', 'sweep', 'finetune') and is_run_dir(path):
    _refuse(what, path, f'is the run directory of one run, not a workdir for --mode={mode}')
  other = {'experiment': 'sweep.json', 'sweep': 'results.json'}.get(mode)
  if other and os.path.isfile(os.path.join(path, other)):
    kind = 'a sweep' if mode == 'experiment' else 'an experiment'
    _refuse(what, path, f'is the workdir of {kind} ({other})')


def check_data_root(path):
  """Refuses a data.root that is or lies inside a run directory or an export folder."""
  for folder in _ancestors(path):
    if is_run_dir(folder) or is_export_dir(folder):
      _refuse('data.root', path, 'is a run directory or export' if _same(folder, path)
              else f'lies inside the run directory or export {folder}')
