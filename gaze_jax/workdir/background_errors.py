"""Errors that orbax's, tensorstore's and asyncio's own threads print, kept off the terminal.

When a checkpoint cannot be read or written, the main thread turns the failure into one
`error:` line (checkpoints.py), while those libraries' background threads print tens to
hundreds of tracebacks of the same failure: coroutines garbage-collected with their error
("Exception ignored in"), tensorstore callbacks into a closed event loop, asyncio's "Task
exception was never retrieved", orbax's log of its failed save thread, and the RuntimeWarning
of a restore's coroutine left unawaited when a damaged checkpoint is skipped. `divert()` sends
those, and only those (told by the files their tracebacks and log records come from, the
warning by its message), to absl's DEBUG log, where `--verbosity=1` shows them (the warning is
dropped); everything else is printed as before.
"""
import logging as std_logging
import os
import sys
import threading
import traceback
import warnings

from absl import logging

LIBRARIES = tuple(f'{os.sep}{name}{os.sep}' for name in ('orbax', 'tensorstore', 'asyncio'))


def divert():
  """Installs the hooks and log filters for this process (once; they stay for its life)."""
  if getattr(sys.unraisablehook, 'diverts', False):
    return
  sys.unraisablehook = _hook(sys.unraisablehook, lambda u: (u.exc_traceback, u.object),
                             'an exception ignored in {!r}')
  threading.excepthook = _hook(threading.excepthook, lambda a: (a.exc_traceback, a.thread),
                               'an exception in {}')
  for name in ('absl', 'asyncio'):  # orbax logs through absl.logging.
    std_logging.getLogger(name).addFilter(_demote)
  # The warning names neither the coroutine's file nor a stable module (it is raised in
  # whichever frame runs when the coroutine is collected), so it is told by its message:
  # gaze_jax defines no coroutine (tests/test_architecture.py), so any is a library's.
  warnings.filterwarnings('ignore', message=r'coroutine .* was never awaited',
                          category=RuntimeWarning)


def _from_libraries(tb):
  return any(lib in frame.filename for frame in traceback.extract_tb(tb) for lib in LIBRARIES)


def _hook(previous, fields, what):
  """A sys.unraisablehook / threading.excepthook that logs the libraries' tracebacks at
  DEBUG and hands every other one to `previous`."""
  def hook(info):
    tb, source = fields(info)
    if not _from_libraries(tb):
      return previous(info)
    text = ''.join(traceback.format_exception(info.exc_type, info.exc_value, tb))
    logging.debug('%s (from a background thread):\n%s', what.format(source), text)
    return None
  hook.diverts = True
  return hook


def _demote(record):
  """A logger filter: the libraries' WARNING and ERROR records become DEBUG ones."""
  if record.levelno < std_logging.WARNING or not any(lib in record.pathname
                                                     for lib in LIBRARIES):
    return True
  record.levelno, record.levelname = std_logging.DEBUG, 'DEBUG'
  return logging.level_debug()
