"""Reading a run directory: its config.json and the newest intact checkpoint."""
import copy
import json
import os

import ml_collections

from gaze_jax import checkpointing
from gaze_jax import train_step as ts
from gaze_jax.errors import UserError


def _tuples(value):
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(value) if isinstance(value, list) else value


def load_config(run_dir):
  """The config a run was trained with (JSON lists become the config's tuples again)."""
  path = os.path.join(run_dir, 'config.json')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(_tuples(json.load(f)))
  except FileNotFoundError as e:
    raise UserError(f'{run_dir} is not a run directory: {path} is missing') from e
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON: {e}') from e


def restore(run_dir, config=None):
  """(TrainState, trigger) of the newest intact checkpoint of `run_dir`."""
  config = copy.deepcopy(config or load_config(run_dir))
  config.model.init_from = ''  # The checkpoint replaces whatever initialised the run.
  template, trigger = ts.initial_state(config, steps_per_epoch=1)
  ckpts = checkpointing.Checkpoints(os.path.join(run_dir, 'checkpoints'), max_to_keep=None)
  try:
    restored = ckpts.restore_latest(template, trigger)
  finally:
    ckpts.close()
  if restored is None:
    raise UserError(f'no checkpoint in {run_dir}; train it first')
  return restored[0], restored[1]
