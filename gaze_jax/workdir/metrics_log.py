"""Metrics to JSON lines and TensorBoard (tensorboardX: no TensorFlow needed).

A resumed run rewrites metrics.jsonl as its checkpoint saw it: each checkpoint keeps the
lines written up to its step (`lines`), so a line torn or lost by a kill is written again
and the log of an interrupted-and-resumed run equals an uninterrupted one's byte for byte.
(From a checkpoint without them, the entries after its step, and torn lines, are dropped.)
The TensorBoard events file is opened at the first value, so a rerun that trains nothing
adds none.
"""
import json
import os

from tensorboardX import SummaryWriter

from gaze_jax.workdir import files


class MetricsLog:
  """Appends {'step', 'kind', **scalars} records to workdir/metrics.jsonl and TensorBoard."""

  def __init__(self, workdir, start_step, enabled=True, lines=None):
    """`lines`: the log up to `start_step` as the checkpoint resumed from kept it (None if
    it kept none: then the file's complete lines up to that step are kept)."""
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = enabled
    self.lines = list(lines or [])
    self._tb, self._tb_args = None, (os.path.join(workdir, 'tensorboard'), start_step)
    if not enabled:
      return
    if lines is None and os.path.exists(self.path):
      with open(self.path) as f:
        self.lines = [line for line in f if _complete_before(line, start_step)]
    if self.lines or os.path.exists(self.path):
      files.write_atomic(self.path, lambda f: f.writelines(self.lines))
    self._file = open(self.path, 'a')

  def write(self, step, kind, scalars):
    """Appends the record of `scalars` at `step` to the log and TensorBoard, if enabled."""
    if not self.enabled:
      return
    line = json.dumps({'step': step, 'kind': kind, **scalars}) + '\n'
    self.lines.append(line)
    self._file.write(line)
    self._file.flush()
    if self._tb is None:
      directory, purge_step = self._tb_args
      self._tb = SummaryWriter(directory, purge_step=purge_step)
    for name, value in scalars.items():
      self._tb.add_scalar(f'{kind}/{name}', value, step)

  def close(self):
    """Closes the log file and the TensorBoard writer, if enabled."""
    if self.enabled:
      self._file.close()
      if self._tb is not None:
        self._tb.close()


def _complete_before(line, start_step):
  try:
    return json.loads(line)['step'] <= start_step
  except (ValueError, KeyError, TypeError):
    return False  # A line cut short by a kill.


def read(workdir):
  """All records of workdir/metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]
