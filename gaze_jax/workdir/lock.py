"""One run per workdir: an advisory lock (`flock`) on `workdir/.lock`, which names its holder.

The kernel holds the lock for the process and drops it when the process ends, however it
ends, so the lock of a killed run is free at once and taking it over is the same atomic
`flock` as taking a fresh one: two runs can never both hold it. The file itself only says
who holds it (pid, host), for the error message. A run unlinks the file while it still
holds the lock, on leaving; a run that locked the unlinked file in between sees that the
path no longer names what it locked and tries again, so there is no window in which two
files are each locked by one run.

On NFS, Linux turns `flock` into a lock on the server (NFSv4, or NFSv3 with lockd), which
holds across hosts and is released when the holder's lease expires; a filesystem that does
not support locks is refused with an error; one that only emulates them on each host
(mounted with `local_lock=flock`, Lustre's `localflock`) keeps out only runs of the same
host.
"""
import fcntl
import json
import os
import socket
import time

from absl import logging

from gaze_jax.errors import UserError

LOCK_NAME = '.lock'
_ATTEMPTS = 100  # Each retry means a holder left in between: a few at the very most.


class WorkdirLock:
  """Context manager holding `workdir/.lock` for this process."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_NAME)
    self._fd = None

  def __enter__(self):
    for _ in range(_ATTEMPTS):
      fd = self._open()
      try:
        self._lock(fd)
        if _same_file(fd, self.path):
          self._fd = fd
          self._write_holder(fd)
          return self
      except BaseException:
        os.close(fd)
        raise
      os.close(fd)  # The holder left and unlinked what we locked: lock the new file.
    raise UserError(f'could not take the lock {self.path}: it kept changing hands')

  def _open(self):
    try:
      return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UserError(f'cannot write the lock {self.path}: {e}') from e

  def _lock(self, fd):
    """Takes the lock on `fd` without waiting; UserError naming the holder if it is held."""
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except BlockingIOError:
      pass  # Another run holds it.
    except OSError as e:
      raise UserError(f'cannot lock {self.path} ({e}): its filesystem does not support '
                      'file locks; use a --workdir on a local disk') from e
    holder = _holder(self.path)
    pid, host = holder.get('pid', 'unknown'), holder.get('host', 'unknown host')
    raise UserError(f'workdir {os.path.dirname(self.path)} is in use by process {pid} on '
                    f'{host} (lock {self.path}); wait for it or use another --workdir')

  def _write_holder(self, fd):
    """Replaces the holder's name in the file we hold: a leftover one is a dead run's."""
    left = os.pread(fd, 4096, 0)
    if left.strip():
      logging.warning('taking over the stale lock %s left by %s', self.path,
                      left.decode(errors='replace').strip())
    holder = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': time.time()}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError as e:
      raise UserError(f'cannot write the lock {self.path}: {e}') from e

  def __exit__(self, *exc):
    try:
      os.unlink(self.path)  # While still locked: see the module docstring.
    except FileNotFoundError:
      pass
    finally:
      os.close(self._fd)  # Releases the lock.
      self._fd = None


def _same_file(fd, path):
  """Whether `path` still names the file open as `fd` (not unlinked or replaced)."""
  try:
    named = os.stat(path)
  except FileNotFoundError:
    return False
  held = os.fstat(fd)
  return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _alive(pid, host):
  """Whether process `pid` of `host` may be running (always, for another host's)."""
  if host != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _holder(path):
  """The holder's {'pid', 'host'} from the lock file, or {} if it cannot be read.

  The holder writes its name right after locking, so until then the file may be empty or
  still name the dead run it took over from: both are read again, briefly.
  """
  holder = {}
  for _ in range(50):
    try:
      with open(path) as f:
        holder = json.load(f)
      if _alive(int(holder['pid']), holder['host']):
        return holder
    except (OSError, ValueError, KeyError, TypeError):
      holder = {}
    time.sleep(0.01)
  return holder if isinstance(holder, dict) else {}
