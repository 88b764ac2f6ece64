"""Wall time by phase (data, compile, train, evaluate, checkpoint, measure, report).

Where a run's or a job's time goes, so that the overheads around training are seen and kept
small: the loop and the main job time their phases with one `Phases` each, write the seconds
into run_info.json and print `table` at the end.
"""
import contextlib
import time

# The phases, in the order a job goes through them; 'train' is the only one that trains.
ORDER = ('data', 'compile', 'train', 'evaluate', 'checkpoint', 'measure', 'report')


class Phases:
  """Seconds spent per phase, added up over the `with phases('name'):` blocks timed."""

  def __init__(self):
    self.seconds = {}

  @contextlib.contextmanager
  def __call__(self, name):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - start)

  def add(self, name, seconds):
    """Adds `seconds` to phase `name`."""
    self.seconds[name] = self.seconds.get(name, 0.0) + seconds

  def merge(self, seconds):
    """Adds another timer's {phase: seconds}."""
    for name, value in seconds.items():
      self.add(name, value)


def rows(seconds, wall):
  """Tabulates the wall time of each phase.

  [(phase, seconds, % of wall)] in ORDER, then 'other' (the wall's rest) and the share of
  the wall that is not training."""
  out = [(name, seconds[name], 100 * seconds[name] / wall) for name in ORDER if name in seconds]
  other = wall - sum(seconds.values())
  out.append(('other', other, 100 * other / wall))
  train = seconds.get('train', 0.0)
  out.append(('not training', wall - train, 100 * (wall - train) / wall))
  return out


def table(seconds, wall):
  """`rows` as aligned text lines, the wall time first."""
  lines = [f'{"wall":<14}{wall:9.1f} s']
  lines += [f'{name:<14}{value:9.1f} s {share:6.1f} %' for name, value, share in
            rows(seconds, wall)]
  return '\n'.join(lines)
