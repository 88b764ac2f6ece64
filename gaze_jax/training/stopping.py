"""Graceful stops: SIGINT (Ctrl-C) and SIGTERM end a run at a step boundary, checkpointed.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be, and
inside JAX's garbage-collection callback that exception is swallowed ("Exception ignored in
_xla_gc_callback") and the run goes on. So while a run trains both signals only set a flag,
which the loop reads after every step; it then saves a checkpoint and raises `Stopped`, and
rerunning the same command resumes bitwise. A second signal ends the process at once, as a
kill does (whose guarantees hold too).

With several processes, all must stop after the same step, or the others would hang in the
next collective. They agree through JAX's preemption sync point (the coordination service
noticed a SIGTERM to one of them) at every step, and through an all-gather of their flags at
the loop's sync points (log, evaluation and checkpoint steps), where they wait on each other
anyway; on one process the flag alone decides, after every step.
"""
import os
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
  """A run stopped by a signal once its checkpoint was saved; rerunning resumes it."""

  def __init__(self, signum, step, directory):
    self.signum, self.step, self.directory = signum, step, directory
    super().__init__(f'stopped at step {step} by {signal.Signals(signum).name}; checkpoint '
                     f'saved in {directory}. Rerun the same command to resume.')

  @property
  def exit_status(self):
    """The shell's status of a process ended by the signal: 128 + its number."""
    return 128 + self.signum


class StopRequests:
  """Between `install` and `restore` (or within `with`): SIGINT and SIGTERM are requests to
  stop, read by `agreed`; outside the main thread, where no handler can be set, signals act
  as before."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def install(self):
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._request)

  def restore(self):
    """Puts back the handlers `install` replaced."""
    for signum, handler in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    self._previous = {}

  def __enter__(self):
    self.install()
    return self

  def __exit__(self, *exc):
    self.restore()

  def _request(self, signum, frame):
    del frame
    if self.signum is not None:  # Asked twice: end now, as the signal itself would.
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    self.signum = signum

  def agreed(self, step, sync_point):
    """The signal number every process stops for after `step`, or 0 to go on."""
    if jax.process_count() == 1:
      return self.signum or 0
    if _preemption_noticed(step):
      return self.signum or signal.SIGTERM
    if not sync_point:
      return 0
    return int(np.max(multihost_utils.process_allgather(np.int32(self.signum or 0))))


def _preemption_noticed(step):
  """Whether JAX's coordination service has all processes stop after `step` (a SIGTERM
  reached one of them); False where it does not run."""
  try:
    return multihost_utils.reached_preemption_sync_point(step)
  except RuntimeError:  # No preemption sync manager: jax.distributed was set up otherwise.
    return False
