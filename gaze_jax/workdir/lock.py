"""One run per workdir: a lock file naming the holder, taken over when its process is gone."""
import json
import os
import socket
import time

from absl import logging

from gaze_jax.errors import UserError

LOCK_NAME = '.lock'


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class WorkdirLock:
  """Context manager holding `workdir/.lock` for this process."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_NAME)

  def __enter__(self):
    holder = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': time.time()}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        self._check_stale()
        continue
      except OSError as e:
        raise UserError(f'cannot write the lock {self.path}: {e}') from e
      with os.fdopen(fd, 'w') as f:
        json.dump(holder, f)
      return self
    raise UserError(f'could not take the lock {self.path}')

  def _check_stale(self):
    try:
      with open(self.path) as f:
        other = json.load(f)
      pid, host = int(other['pid']), other['host']
    except (OSError, ValueError, KeyError, TypeError):
      other, pid, host = None, None, None
    if other is not None and (host != socket.gethostname() or _alive(pid)):
      raise UserError(f'workdir {os.path.dirname(self.path)} is in use by process {pid} on '
                      f'{host} (lock {self.path}); wait for it or use another --workdir')
    logging.warning('taking over the stale lock %s left by %s', self.path, other)
    os.remove(self.path)

  def __exit__(self, *exc):
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass
