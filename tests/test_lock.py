"""The workdir lock under contention: many processes taking it at the same moment.

Contenders are separate processes (started with 'spawn', so they import only this light
module, not JAX) that wait on a barrier and then all try at once: taking over a dead run's
lock, and taking and leaving the lock in a tight loop, which exercises the moment a holder
unlinks the file while another has just opened it.
"""
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from gaze_jax.errors import UserError
from gaze_jax.workdir.lock import LOCK_NAME
from gaze_jax.workdir.lock import WorkdirLock

CONTENDERS = 8
ROUNDS = 50
CHURN = 25  # Times each contender takes the lock in the tight loop.
CRASHED = -1  # A contender's outcome when taking the lock raised something else.
TIMEOUT = 120  # Seconds for any barrier: a hang fails the test instead of stalling CI.


def dead_pid():
  """The pid of a process that has ended (a killed run's, for a stale lock)."""
  out = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                       capture_output=True, text=True, check=True)
  return int(out.stdout)


def _take_over(workdir, index, barrier, winners, named):
  """Each round: try the lock with the others at once, hold it until all have tried."""
  for round_ in range(ROUNDS):
    barrier.wait(TIMEOUT)  # The parent has left a dead run's lock.
    lock = WorkdirLock(workdir)
    try:
      lock.__enter__()
      winners[round_ * CONTENDERS + index] = os.getpid()
    except UserError as e:
      named[round_ * CONTENDERS + index] = int(re.search(r'in use by process (\d+)',
                                                         str(e))[1])
      lock = None
    except Exception:  # pylint: disable=broad-except
      winners[round_ * CONTENDERS + index] = CRASHED  # Recorded; the rounds go on.
      lock = None
    barrier.wait(TIMEOUT)  # Everyone has tried.
    if lock:
      lock.__exit__(None, None, None)
    barrier.wait(TIMEOUT)  # Released: the parent checks this round.


def _churn(workdir, _, barrier, inside, most_inside, taken):
  """Takes and leaves the lock CHURN times, counting who is inside at once."""
  barrier.wait(TIMEOUT)
  for _ in range(CHURN):
    while True:
      try:
        lock = WorkdirLock(workdir).__enter__()
        break
      except UserError:
        continue
    with inside.get_lock():
      inside.value += 1
      most_inside.value = max(most_inside.value, inside.value)
    holder = json.loads(open(os.path.join(workdir, LOCK_NAME)).read())
    time.sleep(0.001)
    with inside.get_lock():
      inside.value -= 1
      taken.value += holder['pid'] == os.getpid()  # The file names the holder.
    lock.__exit__(None, None, None)


def start(target, workdir, *args):
  """CONTENDERS processes running target(workdir, index, *args)."""
  context = multiprocessing.get_context('spawn')
  processes = [context.Process(target=target, args=(workdir, i, *args))
               for i in range(CONTENDERS)]
  for p in processes:
    p.start()
  return processes


def join(processes):
  for p in processes:
    p.join(TIMEOUT)
  assert [p.exitcode for p in processes] == [0] * CONTENDERS


def test_simultaneous_takeovers_of_a_dead_runs_lock_have_exactly_one_winner(tmp_path):
  context = multiprocessing.get_context('spawn')
  barrier = context.Barrier(CONTENDERS + 1)
  winners = context.Array('i', ROUNDS * CONTENDERS)
  named = context.Array('i', ROUNDS * CONTENDERS)
  processes = start(_take_over, str(tmp_path), barrier, winners, named)
  stale = json.dumps({'pid': dead_pid(), 'host': socket.gethostname()})
  for _ in range(ROUNDS):
    (tmp_path / LOCK_NAME).write_text(stale)
    for _ in range(3):
      barrier.wait(TIMEOUT)
  join(processes)
  for round_ in range(ROUNDS):
    row = slice(round_ * CONTENDERS, (round_ + 1) * CONTENDERS)
    winner = [pid for pid in winners[row] if pid]
    assert len(winner) == 1 and CRASHED not in winner, f'round {round_}: winners {winner}'
    # Every loser was told who holds it: the winner, not the dead run.
    assert sorted(named[row]) == [0] + winner * (CONTENDERS - 1), f'round {round_}'
  assert not (tmp_path / LOCK_NAME).exists()


def test_taking_and_leaving_the_lock_in_a_tight_loop_never_lets_two_in(tmp_path):
  context = multiprocessing.get_context('spawn')
  barrier = context.Barrier(CONTENDERS)
  inside, most_inside = context.Value('i', 0), context.Value('i', 0)
  taken = context.Value('i', 0)
  join(start(_churn, str(tmp_path), barrier, inside, most_inside, taken))
  assert taken.value == CONTENDERS * CHURN
  assert most_inside.value == 1


def test_unlockable_workdir_is_a_user_error(tmp_path):
  (tmp_path / 'a_file').write_text('')
  with pytest.raises(UserError, match='cannot write the lock .*a_file/.lock'):
    with WorkdirLock(str(tmp_path / 'a_file')):
      pass
