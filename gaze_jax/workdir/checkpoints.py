"""Orbax checkpoints of a run: train state, trigger arrays and JSON metadata.

Each checkpoint's metadata carries a SHA-256 digest of the state and trigger, so a
damaged checkpoint (truncated or deleted files) is detected on restore and the run
falls back to the newest intact one; the damaged ones are moved aside at the resumed run's
first save (or at its end, if it saves none). Orbax finalises a checkpoint by renaming a temporary
directory, so one killed mid-save is never taken as complete. Array shapes and dtypes
are checked against the run's from the metadata before any array is read, and a failed
write (full disk) is a UserError that leaves earlier checkpoints untouched.
"""
import contextlib
import hashlib
import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gaze_jax.errors import UserError


def digest(tree):
  """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, int):  # Orbax restores a trained state's int32 step as a Python int.
      leaf = np.int32(leaf)
    a = np.asarray(jax.device_get(leaf))
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _abstract(tree):
  """Shapes, dtypes and placements of a template of arrays or of jax.ShapeDtypeStructs."""
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct)
                      else ocp.utils.to_shape_dtype_struct(x), tree)


def _layout(tree):
  """{'path/to/leaf': 'float32[3, 3]'} of a tree of arrays, or of orbax's metadata of one."""
  return {jax.tree_util.keystr(path, simple=True, separator='/'):
              f'{np.dtype(leaf.dtype)}{list(leaf.shape)}'
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _chain(error):
  """`error` and the exceptions it was raised from or while handling, outermost first."""
  chain = [error]
  while (chain[-1].__cause__ or chain[-1].__context__) not in (None, *chain):
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  return chain


def _first_line(error, width=200):
  return (str(error).splitlines() or [type(error).__name__])[0][:width]


def _os_error(error):
  """The OSError that `error` comes from, or '[Errno N] reason' from a tensorstore message
  carrying os_error_code=N; None if it comes from neither."""
  chain = _chain(error)
  for e in chain:
    if isinstance(e, OSError):
      return e
  for e in chain:
    code = re.search(r"os_error_code='?(\d+)", str(e))
    if code:
      return f'[Errno {code[1]}] {os.strerror(int(code[1]))}'
  return None


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
    self._damaged = set()  # Steps restore_latest skipped; set aside before saving over them.

  def save(self, step, state, trigger, meta):
    """Saves asynchronously; meta (JSON-able) gets the digest of state and trigger."""
    self._set_aside_damaged()  # Resumed from an older checkpoint: move the damaged ones aside.
    meta = dict(meta, digest=digest((state, trigger)))
    items = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
    if trigger:
      items['trigger'] = ocp.args.StandardSave(trigger)
    with self._write_errors():  # Saving first waits for the previous save, which may fail.
      self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def wait(self):
    """Blocks until pending saves are on disk; raises UserError if one failed (e.g. disk full).

    Damaged checkpoints skipped on restore are moved aside here too, should the run save no
    more (a finished run rerun)."""
    with self._write_errors():
      self._manager.wait_until_finished()
    self._set_aside_damaged()

  def _set_aside_damaged(self):
    for step in sorted(self._damaged):
      self._set_aside(step)

  @contextlib.contextmanager
  def _write_errors(self):
    """Turns a failed write (full disk, no permission) into a UserError.

    An OSError anywhere in the exception's chain is the cause; orbax reports its background
    writes' I/O errors as tensorstore ValueErrors whose message carries an os_error_code,
    with no OSError to be found. Other exceptions are bugs and propagate unchanged.
    """
    try:
      yield
    except (OSError, ValueError) as e:
      cause = _os_error(e)
      if cause is None:
        raise
      intact = self.steps()
      remedy = ('The write timed out (a stalled disk, or the process was paused)'
                if isinstance(cause, TimeoutError) else 'Free disk space or fix permissions')
      raise UserError(
          f'writing a checkpoint in {self.directory} failed: {cause}; the checkpoints already '
          f'there are intact (newest: {intact[-1] if intact else "none"}). {remedy}, then run '
          'again to resume.') from e

  def _set_aside(self, step):
    """Moves the damaged checkpoint `step` to DIRECTORY.damaged/ (kept for inspection)."""
    aside = self.directory + '.damaged'
    os.makedirs(aside, exist_ok=True)
    target, n = os.path.join(aside, str(step)), 0
    while os.path.exists(target):  # Set aside before, by an earlier run.
      n += 1
      target = os.path.join(aside, f'{step}.{n}')
    os.rename(os.path.join(self.directory, str(step)), target)
    logging.warning('moved the damaged checkpoint %d to %s', step, target)
    self._damaged.remove(step)
    self._manager.reload()

  def steps(self):
    """The steps of the checkpoints in the directory, in ascending order."""
    return sorted(self._manager.all_steps())

  def restore_latest(self, state, trigger):
    """(state, trigger, meta) of the newest intact checkpoint, or None if there is none.

    `state` and `trigger` are templates: arrays, or jax.ShapeDtypeStructs with their
    placement (training.state.abstract_state). A checkpoint that fails
    to load or whose digest does not match is reported and skipped.
    """
    steps = self.steps()
    for step in reversed(steps):
      try:
        restored = self._restore(step, state, trigger)
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('checkpoint %d in %s is damaged (%s); trying an older one.',
                        step, self.directory, _first_line(_chain(e)[-1]))
        restored = None
      if restored is not None:
        return restored
      self._damaged.add(step)
    if steps:
      raise UserError(f'no intact checkpoint in {self.directory} (tried steps {steps}); '
                      'nothing was overwritten. Move the directory away to start afresh.')
    return None

  def _restore(self, step, state, trigger):
    self._check_layout(step, 'state', state)
    items = {'state': ocp.args.StandardRestore(_abstract(state)), 'meta': ocp.args.JsonRestore()}
    if trigger:
      self._check_layout(step, 'trigger', trigger)
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

  def _check_layout(self, step, item, template):
    """Refuses checkpoint `step` unless its `item` has the template's shapes and dtypes.

    Checked on orbax's metadata before any array is read: orbax restores arrays at their
    saved shapes, so a checkpoint of another config (or a crafted one) would load, however
    large.
    """
    handler = ocp.StandardCheckpointHandler()
    saved = _layout(handler.metadata(self._manager.directory / str(step) / item).tree)
    expected = _layout(template)
    for name in sorted(saved.keys() | expected.keys()):
      if saved.get(name) != expected.get(name):
        raise UserError(
            f'checkpoint {step} in {self.directory} does not fit this config: {item}/{name} is '
            f'{saved.get(name, "absent")} there, {expected.get(name, "absent")} here. It was '
            'written with another config (or crafted); use another --workdir.')

  def close(self):
    """Closes the underlying orbax CheckpointManager."""
    self._manager.close()

