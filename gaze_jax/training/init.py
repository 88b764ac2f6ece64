"""The state a run starts from: fresh, torchvision ImageNet weights, or another run's model.

`model.init_from` may name torchvision ResNet-18 weights (.safetensors/.pth) or a run
directory, whose newest intact checkpoint gives the model variables (fine-tuning); either
way the optimizer starts afresh and the trigger is drawn from attack.seed.
"""
import os

import jax

from gaze_jax.attacks import triggers
from gaze_jax.models import torchvision
from gaze_jax.training import runs
from gaze_jax.training import state as state_lib


def initial_state(run, steps_per_epoch):
  """The step-0 TrainState of RunSpec `run` and its trigger."""
  variables = state_lib.initial_variables(run, jax.random.key(run.seed))
  source = run.model.init_from
  if source and os.path.isdir(source):
    restored, _ = runs.restore(source)
    variables = {'params': restored.params, 'batch_stats': restored.batch_stats}
  elif source:
    variables = torchvision.init_variables_from(source, variables)
  trigger = triggers.make_trigger(run.attack, run.data.image_size)
  return state_lib.create(run, variables, steps_per_epoch), trigger
