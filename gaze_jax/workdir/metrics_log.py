"""Metrics to JSON lines and TensorBoard (tensorboardX: no TensorFlow needed).

A resumed run first drops the entries written after its checkpoint's step, so the
log of an interrupted-and-resumed run equals that of an uninterrupted one.
"""
import json
import os

from tensorboardX import SummaryWriter

from gaze_jax.workdir import files


class MetricsLog:
  """Appends {'step', 'kind', **scalars} records to workdir/metrics.jsonl and TensorBoard."""

  def __init__(self, workdir, start_step, enabled=True):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = enabled
    if not enabled:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if _complete_before(line, start_step)]
      files.write_atomic(self.path, lambda f: f.writelines(kept))
    self._file = open(self.path, 'a')
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=start_step)

  def write(self, step, kind, scalars):
    if not self.enabled:
      return
    self._file.write(json.dumps({'step': step, 'kind': kind, **scalars}) + '\n')
    self._file.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(f'{kind}/{name}', value, step)

  def close(self):
    if self.enabled:
      self._file.close()
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
