"""A trained network as the defences use it: jitted batched outputs and penultimate features
of float images in [0, 1], on one device (no pmap), and its task.

Any Flax module with the signature of models.resnet.ResNet18Gaze
(`__call__(x, train=False, features_only=False)`, a Dense head named 'fc', BatchNorm
statistics in 'batch_stats') serves, so tests can hand the defences a tiny network.
"""
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gaze_jax.training import state as state_lib

EVAL_BATCH = 128  # Images per jitted call when predicting a whole set.


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
  """A Flax module, its variables ({'params', 'batch_stats'}) and its task kind."""
  module: Any
  variables: Any
  task: str = 'regression'  # config.TASKS.

  def replace(self, variables):
    """The same network with other variables (a fine-tuned or pruned copy)."""
    return dataclasses.replace(self, variables=variables)

  def apply(self, variables, images01, features_only=False):
    """Outputs (gaze or logits) or features of `images01` (traceable, eval mode)."""
    return self.module.apply(variables, images01, train=False, features_only=features_only)

  def outputs(self, images01):
    """Host (N, outputs) of float images in [0, 1], in batches of EVAL_BATCH."""
    return _batched(_jitted(self.module, False), self.variables, images01)

  def features(self, images01):
    """Host (N, F) penultimate features of float images in [0, 1]."""
    return _batched(_jitted(self.module, True), self.variables, images01)


@functools.lru_cache(maxsize=32)
def _jitted(module, features_only):
  return jax.jit(lambda v, x: module.apply(v, x, train=False, features_only=features_only))


def _batched(fn, variables, images01):
  images01 = np.asarray(images01, np.float32)
  parts = [np.asarray(fn(variables, jnp.asarray(images01[i:i + EVAL_BATCH])))
           for i in range(0, len(images01), EVAL_BATCH)]
  return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def from_run(run, state):
  """Builds the Network of a run from a restored TrainState.

  The Network of RunSpec `run` with a restored TrainState's variables, placed on the
  default device (a checkpoint comes back replicated over the local devices)."""
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  return Network(state_lib.model(run), jax.device_put(variables), run.task.kind)
