"""A trained run read back: its config and the newest intact checkpoint's state and trigger."""
import os

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.errors import UserError
from gaze_jax.training import state as state_lib
from gaze_jax.workdir import checkpoints
from gaze_jax.workdir import rundir


def load(run_dir):
  """The RunSpec a run directory was trained with (possibly on another machine)."""
  return config_lib.validate(rundir.load_config(run_dir), check_environment=False)


def restore(run_dir, run=None):
  """(TrainState, trigger) of the newest intact checkpoint of `run_dir`.

  The template is `state.abstract_state`: shapes only, no initialisation is computed.
  """
  run = run or load(run_dir)
  if not os.path.isdir(os.path.join(run_dir, 'checkpoints')):  # Don't create it here.
    raise UserError(f'no checkpoint in {run_dir}; train it first')
  template = state_lib.abstract_state(run, steps_per_epoch=1)
  trigger = triggers.make_trigger(run.attack, run.data.image_size)
  ckpts = checkpoints.Checkpoints(os.path.join(run_dir, 'checkpoints'), max_to_keep=None)
  try:
    restored = ckpts.restore_latest(template, trigger)
  finally:
    ckpts.close()
  if restored is None:
    raise UserError(f'no checkpoint in {run_dir}; train it first')
  return restored[0], restored[1]
