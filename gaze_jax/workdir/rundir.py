"""A run directory's JSON files: config.json (which config started it) and results.

A run directory holds `config.json`, `checkpoints/`, `trigger/*.npy`, `predictions/*.npy` (the
final model's held-out outputs), `metrics.jsonl`,
`tensorboard/`, `results.json` (what the run computed: bitwise reproducible) and
`run_info.json` (where and how fast: this machine's facts); a workdir started with one config
is never resumed or skipped under another.
"""
import json
import os

from gaze_jax import config as config_lib
from gaze_jax.errors import UserError

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'
RUN_INFO_FILE = 'run_info.json'
PREDICTIONS_DIR = 'predictions'  # The final model's held-out outputs (evaluate.predict_split).


def read_json(path):
  """The JSON value in `path`; a damaged file is a UserError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON ({e}); it was damaged or written by '
                    'something else: move it away, or use another --workdir') from e


def load_config(run_dir):
  """The ConfigDict a run was started with."""
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f'{run_dir} is not a run directory: {path} is missing')
  try:
    saved = config_lib.without_retired(read_json(path))
    config_lib.check_fields(saved)
  except UserError as e:
    raise UserError(f'{path} does not hold a run config: {e}') from e
  return config_lib.from_dict(saved)


def check_same_config(run_dir, config_dict):
  """Refuses to resume (or skip) a run that was started with another config.

  Configs that differ only in when the run checkpoints (config.BOOKKEEPING) are the same."""
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = read_json(path)
  try:
    saved = config_lib.without_retired(saved)
  except UserError as e:
    raise UserError(f'{path} does not hold a run config of this version: {e}') from e
  saved, config_dict = (config_lib.without_bookkeeping(c) for c in (saved, config_dict))
  if saved != config_dict:
    changed = (sorted(config_lib.differences(saved, config_dict)) if isinstance(saved, dict)
               else ['everything'])
    raise UserError(f'{run_dir} was started with another config (differs in '
                    f'{", ".join(changed)}); use another --workdir, or remove this one to '
                    'start afresh')


def finished(run_dir):
  """Whether the run in `run_dir` has written its results."""
  return os.path.exists(os.path.join(run_dir, RESULTS_FILE))


def read_results(run_dir):
  """Reads the results a finished run wrote in `run_dir`."""
  return read_json(os.path.join(run_dir, RESULTS_FILE))
