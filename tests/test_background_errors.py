"""workdir/background_errors.py: the libraries' background noise leaves the terminal, and
everything else still reaches it."""
import subprocess
import sys
import textwrap

import pytest

# An unawaited coroutine collected, then an exception ignored in a __del__ of our own making.
SCRIPT = textwrap.dedent('''
    import gc, sys
    from gaze_jax.workdir import background_errors
    if sys.argv[1] == 'divert':
      background_errors.divert()
    async def restore():
      pass
    restore()
    gc.collect()
    class Ours:
      def __del__(self):
        raise ValueError('ours')
    Ours()
    gc.collect()
''')


def stderr_of(mode):
  return subprocess.run([sys.executable, '-c', SCRIPT, mode], capture_output=True, text=True,
                        check=True).stderr


@pytest.mark.parametrize('mode', ['divert', 'plain'])
def test_an_unawaited_coroutine_is_silenced_and_our_own_errors_are_not(mode):
  stderr = stderr_of(mode)
  assert ("coroutine 'restore' was never awaited" in stderr) == (mode == 'plain'), stderr
  assert 'ValueError: ours' in stderr  # Not a library's: printed either way.
