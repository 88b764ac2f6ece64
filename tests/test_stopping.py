"""Stop requests: what SIGINT and SIGTERM do while a run trains, and after.

The end-to-end behaviour (exit status, checkpoint, bitwise resume) is tested through run.py
in tests/test_fault_injection.py; these check the handlers themselves.
"""
import os
import signal
import subprocess
import sys

import pytest

from gaze_jax.training import stopping

SECOND_SIGNAL = """
import os, signal
from gaze_jax.training import stopping
with stopping.StopRequests() as requests:
  os.kill(os.getpid(), signal.SIGTERM)
  print(requests.agreed(1, sync_point=False), flush=True)
  os.kill(os.getpid(), signal.SIGTERM)  # Asked twice: ends here.
  print('went on')
"""


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_a_signal_is_a_request_read_at_the_next_step_and_handlers_are_restored(signum):
  before = signal.getsignal(signum)
  with stopping.StopRequests() as requests:
    assert requests.agreed(1, sync_point=False) == 0
    os.kill(os.getpid(), signum)  # Handled here, at the next bytecode: no exception.
    assert requests.agreed(2, sync_point=False) == signum
  assert signal.getsignal(signum) is before


def test_stopped_says_how_to_resume_with_the_shells_status():
  stopped = stopping.Stopped(signal.SIGTERM, 5, '/w/checkpoints')
  assert str(stopped) == ('stopped at step 5 by SIGTERM; checkpoint saved in /w/checkpoints. '
                          'Rerun the same command to resume.')
  assert stopped.exit_status == 143


def test_a_second_signal_ends_the_process_at_once():
  out = subprocess.run([sys.executable, '-c', SECOND_SIGNAL], capture_output=True, text=True,
                       timeout=120, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == -signal.SIGTERM, out.stderr
  assert out.stdout.split() == [str(int(signal.SIGTERM))]
