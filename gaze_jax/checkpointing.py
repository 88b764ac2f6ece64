"""Orbax checkpoints of a run: train state, trigger arrays and JSON metadata.

Each checkpoint's metadata carries a SHA-256 digest of the state and trigger, so a
damaged checkpoint (truncated or deleted files) is detected on restore and the run
falls back to the newest intact one. Orbax finalises a checkpoint by renaming a
temporary directory, so one killed mid-save is never taken as complete.
"""
import hashlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gaze_jax.errors import UserError


def digest(tree):
  """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(jax.device_get(leaf))
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
  """Periodic, asynchronous checkpoints in `directory`, keeping the newest `max_to_keep`."""

  def __init__(self, directory, max_to_keep):
    self.directory = os.path.abspath(directory)
    try:
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               cleanup_tmp_directories=True))
    except OSError as e:
      raise UserError(f'cannot create checkpoint directory {self.directory}: {e}') from e

  def save(self, step, state, trigger, meta):
    """Saves asynchronously; meta (JSON-able) gets the digest of state and trigger."""
    meta = dict(meta, digest=digest((state, trigger)))
    items = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
    if trigger:
      items['trigger'] = ocp.args.StandardSave(trigger)
    try:
      self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    except OSError as e:
      raise UserError(f'cannot write checkpoint {step} in {self.directory}: {e}') from e

  def wait(self):
    """Blocks until pending saves are on disk; raises UserError if one failed (e.g. disk full)."""
    try:
      self._manager.wait_until_finished()
    except OSError as e:
      raise UserError(f'writing a checkpoint in {self.directory} failed: {e}') from e

  def steps(self):
    return sorted(self._manager.all_steps())

  def restore_latest(self, state, trigger):
    """(state, trigger, meta) of the newest intact checkpoint, or None if there is none.

    `state` and `trigger` are concrete templates (shapes, dtypes). A checkpoint that fails
    to load or whose digest does not match is reported and skipped.
    """
    steps = self.steps()
    for step in reversed(steps):
      try:
        restored = self._restore(step, state, trigger)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint %d in %s is damaged (%s); trying an older one.',
                        step, self.directory, str(e).splitlines()[0][:200])
        continue
      if restored is not None:
        return restored
    if steps:
      raise UserError(f'no intact checkpoint in {self.directory} (tried steps {steps}); '
                      'nothing was overwritten. Move the directory away to start afresh.')
    return None

  def _restore(self, step, state, trigger):
    items = {'state': ocp.args.StandardRestore(_abstract(state)), 'meta': ocp.args.JsonRestore()}
    if trigger:
      items['trigger'] = ocp.args.StandardRestore(_abstract(trigger))
    out = self._manager.restore(step, args=ocp.args.Composite(**items))
    restored_trigger = out['trigger'] if trigger else trigger
    restored_trigger = jax.tree.map(np.asarray, restored_trigger)
    meta = dict(out['meta'])
    if meta.pop('digest', None) != digest((out['state'], restored_trigger)):
      logging.warning('checkpoint %d in %s fails its digest check; trying an older one.',
                      step, self.directory)
      return None
    return out['state'], restored_trigger, meta

  def close(self):
    self._manager.close()

