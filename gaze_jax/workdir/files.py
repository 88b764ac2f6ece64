"""Atomic file writes, so a kill or a full disk never leaves half a file: the one place
that writes a temporary file and renames it into place; and the check, before anything is
written, that a path can be written at all."""
import contextlib
import errno
import json
import os
import tempfile

import numpy as np

from gaze_jax.errors import UserError


def write_atomic_many(items):
  """Writes several files atomically, as one.

  Writes files that appear together: each `(path, write_fn, mode)` calls write_fn(file) on
  a temporary file beside its path; only when every one is complete are they renamed into
  place. On failure the temporary files are removed and every path keeps what it had."""
  temps = []
  try:
    for path, write_fn, mode in items:
      directory = os.path.dirname(os.path.abspath(path))
      os.makedirs(directory, exist_ok=True)
      fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.')
      temps.append(tmp)
      with os.fdopen(fd, mode) as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users.
    for tmp, (path, _, _) in zip(temps, items):
      os.replace(tmp, path)
  finally:
    for tmp in temps:
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)


def write_atomic(path, write_fn, mode='w'):
  """Calls write_fn(file) on a temporary file beside `path`, then renames it into place."""
  write_atomic_many([(path, write_fn, mode)])


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_json(path, obj):
  """Writes `obj` to `path` atomically, as indented JSON with sorted keys."""
  write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True))


def save_arrays(directory, arrays):
  """Writes each array of a dict as directory/NAME.npy (plain .npy, no pickles)."""
  for name, value in arrays.items():
    write_atomic(os.path.join(directory, name + '.npy'),
                 lambda f, v=value: np.save(f, np.asarray(v), allow_pickle=False), mode='wb')


def load_arrays(directory):
  """{NAME: array} of the directory/NAME.npy files that save_arrays wrote (no pickles)."""
  return {f[:-4]: np.load(os.path.join(directory, f), allow_pickle=False)
          for f in sorted(os.listdir(directory)) if f.endswith('.npy')}


def check_writable(path, what):
  """Refuses a `path` that cannot be created or written.

  Refuses, before anything is written, a `path` (file or folder, there or not yet) that
  cannot be created or written: UserError 'cannot create WHAT PATH: why'.

  The nearest existing folder on the way must be a folder this process may write in (as
  access(2) says, which also knows read-only mounts); what is already there must be writable.
  """
  path = os.path.abspath(path)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if existing != path and not os.path.isdir(existing):
    raise UserError(f'cannot create {what} {path}: {existing} is not a folder')
  if not os.access(existing, os.W_OK | (os.X_OK if os.path.isdir(existing) else 0)):
    raise UserError(f'cannot create {what} {path}: no permission to write in {existing} '
                    '(or it is on a read-only filesystem)')


# What a full disk, a quota, a file size limit, a read-only mount or missing permissions
# raise: the user's to fix, not bugs.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


@contextlib.contextmanager
def write_errors(directory):
  """Turns disk errors while writing in `directory` into a UserError.

  Turns an OSError of DISK_ERRNOS while writing in `directory` into a UserError; files
  written with write_atomic keep what they had."""
  try:
    yield
  except OSError as e:
    if e.errno not in DISK_ERRNOS:
      raise
    raise UserError(f'writing in {directory} failed: {e}; the files already there are intact. '
                    'Free disk space or fix permissions, then run again to resume.') from e
