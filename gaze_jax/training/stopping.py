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

Outside the steps, from the start of the process to its end (`install`, called by the
command line), both signals raise `Interrupted` at once: while data is generated, a run
evaluated, a report written or between runs. A signal that arrives during a run's last
evaluation or checkpoint, after the steps have agreed to go on, is acted on once they are
saved, as the loop gives the signals back. Either way the process ends with one line and
the signal's status (128 + its number), and rerunning resumes bitwise.
"""
import os
import signal
import threading

import numpy as np

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending = {'signum': 0}  # A signal received outside a run's steps, not yet acted on.


class Interrupted(KeyboardInterrupt):
  """The exception of a stop signal received outside a run's steps.

  SIGINT or SIGTERM outside a run's steps (data, evaluation, reports, between runs): what
  is written is whole (atomic writes), and rerunning the same command goes on."""

  def __init__(self, signum, where='outside the training loop'):
    self.signum = signum
    super().__init__(f'stopped by {signal.Signals(signum).name} {where} (nothing '
                     'half-written is kept); rerun the same command to go on')

  @property
  def exit_status(self):
    """The shell's status of a process ended by the signal: 128 + its number."""
    return 128 + self.signum


def install():
  """Installs the SIGINT and SIGTERM handlers for the rest of the process.

  From now until the process ends (call it in the main thread, first): SIGINT and SIGTERM
  raise `Interrupted` where the program is, except within a run's steps (`StopRequests`),
  which stop at the next step; a signal that a library swallowed is acted on at the next
  `check`. A second signal ends the process at once, as a kill does."""
  for signum in SIGNALS:
    signal.signal(signum, _interrupt)


def _interrupt(signum, frame):
  del frame
  if _pending['signum']:  # Asked twice: end now, as the signal itself would.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
  _pending['signum'] = signum
  raise Interrupted(signum)


def received():
  """The signal received outside a run's steps (0 if none): the process must end."""
  return _pending['signum']


def check():
  """Raises `Interrupted` for a signal whose exception was swallowed.

  Raises `Interrupted` if a signal was received (and its exception swallowed, as JAX's
  garbage-collection callback does): called between runs and before the process ends."""
  if _pending['signum']:
    raise Interrupted(_pending['signum'])


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
  """Turns SIGINT and SIGTERM into requests to stop a run's steps.

  Between `install` and `restore` (or within `with`): SIGINT and SIGTERM are requests to
  stop, read by `agreed`; outside the main thread, where no handler can be set, signals act
  as before."""

  def __init__(self):
    self.signum = None
    self._acted_on = False  # `agreed` returned the signal: the run stops with `Stopped`.
    self._previous = {}

  def install(self):
    """Takes over the signals; raises `Interrupted` for one received before (see `check`)."""
    check()
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._request)

  def restore(self):
    """Puts back the signal handlers that `install` replaced.

    Puts back the handlers `install` replaced; a signal received after the steps that
    stop for it (during the last evaluation or checkpoint) then raises `Interrupted`."""
    for signum, handler in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    self._previous = {}
    if self.signum and not self._acted_on:
      _pending['signum'] = self.signum
      raise Interrupted(self.signum, "after the run's last step, its checkpoint saved")

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
    signum = self._agree(step, sync_point)
    self._acted_on = self._acted_on or bool(signum)
    return signum

  def _agree(self, step, sync_point):
    import jax  # pylint: disable=g-import-not-at-top  (the command line imports this first)
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
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
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  try:
    return multihost_utils.reached_preemption_sync_point(step)
  except RuntimeError:  # No preemption sync manager: jax.distributed was set up otherwise.
    return False
