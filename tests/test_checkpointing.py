"""Checkpoints round-trip exactly, damaged ones are skipped, and a workdir holds one run."""
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gaze_jax.workdir.checkpoints import Checkpoints
from gaze_jax.errors import UserError
from gaze_jax.workdir.lock import WorkdirLock


def make_state(scale):
  return {'w': jnp.arange(1000.0) * scale, 'b': jnp.ones(3) * scale}


TRIGGER = {'noise_grid': np.random.default_rng(0).uniform(-1, 1, (8, 8, 2)).astype(np.float32)}


def save_two(directory):
  ckpts = Checkpoints(directory, max_to_keep=3)
  ckpts.save(1, make_state(1.0), TRIGGER, {'history': [1]})
  ckpts.save(2, make_state(2.0), TRIGGER, {'history': [1, 2]})
  ckpts.wait()
  ckpts.close()


def restore(directory):
  ckpts = Checkpoints(directory, max_to_keep=3)
  try:
    return ckpts.restore_latest(make_state(0.0), {'noise_grid': np.zeros((8, 8, 2), np.float32)})
  finally:
    ckpts.close()


def test_round_trip_is_bitwise(tmp_path):
  save_two(tmp_path / 'ck')
  state, trigger, meta = restore(tmp_path / 'ck')
  np.testing.assert_array_equal(state['w'], make_state(2.0)['w'])
  np.testing.assert_array_equal(trigger['noise_grid'], TRIGGER['noise_grid'])
  assert meta == {'history': [1, 2]}


def test_a_write_that_times_out_is_told_apart_from_a_full_disk(tmp_path, monkeypatch):
  """Orbax gives up on a background write after a while (a stalled disk, or the process
  stopped with SIGSTOP) with a TimeoutError, which is an OSError: the line names the timeout,
  not disk space or permissions."""
  ckpts = Checkpoints(tmp_path / 'ck', max_to_keep=3)
  ckpts.save(1, make_state(1.0), TRIGGER, {'history': [1]})
  ckpts.wait()

  def stalled():
    raise TimeoutError('ChainedFuture completed 3/5 futures but timed out after 1376.23 seconds.')

  monkeypatch.setattr(ckpts._manager, 'wait_until_finished', stalled)  # pylint: disable=protected-access
  with pytest.raises(UserError) as raised:
    ckpts.wait()
  message = str(raised.value)
  assert 'timed out after 1376.23 seconds' in message and '(newest: 1)' in message
  assert 'The write timed out' in message and 'disk space' not in message
  monkeypatch.undo()
  ckpts.close()


def test_empty_directory_restores_nothing(tmp_path):
  assert restore(tmp_path / 'ck') is None


def largest_file(directory):
  paths = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
  return max(paths, key=os.path.getsize)


@pytest.mark.parametrize('damage', ['truncate', 'delete', 'flip_byte'])
def test_damaged_latest_falls_back_to_older(tmp_path, damage):
  save_two(tmp_path / 'ck')
  victim = largest_file(tmp_path / 'ck' / '2' / 'state')
  if damage == 'truncate':
    os.truncate(victim, os.path.getsize(victim) // 2)
  elif damage == 'delete':
    os.remove(victim)
  else:
    data = bytearray(open(victim, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(victim, 'wb').write(bytes(data))
  state, _, meta = restore(tmp_path / 'ck')
  np.testing.assert_array_equal(state['w'], make_state(1.0)['w'])
  assert meta == {'history': [1]}


def test_no_intact_checkpoint_is_a_clear_error_and_nothing_is_removed(tmp_path):
  save_two(tmp_path / 'ck')
  for step in ('1', '2'):
    os.remove(largest_file(tmp_path / 'ck' / step / 'state'))
  before = sorted(os.listdir(tmp_path / 'ck'))
  with pytest.raises(UserError, match='no intact checkpoint.*nothing was overwritten'):
    restore(tmp_path / 'ck')
  assert sorted(os.listdir(tmp_path / 'ck')) == before


def test_second_run_refused_naming_the_first(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(UserError, match=f'in use by process {os.getpid()}'):
      with WorkdirLock(str(tmp_path)):
        pass
  assert not os.path.exists(tmp_path / '.lock')


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  import socket  # pylint: disable=g-import-not-at-top
  (tmp_path / '.lock').write_text(json.dumps({'pid': int(dead.stdout), 'host': socket.gethostname()}))
  with WorkdirLock(str(tmp_path)):
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()
