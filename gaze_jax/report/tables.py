"""Plain-text tables for the terminal, and the one order in which metrics are shown."""
import numpy as np

from gaze_jax.metrics import imperceptibility

ERRORS = ('clean_error', 'backdoor_error', 'noise_error')
ACCURACIES = ('clean_accuracy', 'attack_success', 'noise_accuracy')  # The classifier's, %.


def asr_keys(metrics):
  """The 'asr@TAU' keys of `metrics`, by threshold."""
  return sorted((k for k in metrics if k.startswith('asr@')), key=lambda k: float(k[4:]))


def ordered(metrics):
  """Puts metrics in a fixed order.

  Metrics in one order whether fresh or read back (JSON files sort their keys): errors,
  imperceptibility, ASRs by threshold, then the rest by name."""
  first = [k for k in ERRORS + ACCURACIES + imperceptibility.METRICS if k in metrics]
  asr = asr_keys(metrics)
  rest = sorted(set(metrics) - set(first) - set(asr))
  return {k: metrics[k] for k in first + asr + rest}


def format_table(models):
  """Formats the metrics of models as a plain-text table.

  A plain-text table: one row per model, one column per metric (degrees; ASR and the
  classifier's accuracies in %)."""
  columns = [k for k in ordered({k: None for m in models.values() for k in m})
             if k in ERRORS + ACCURACIES or k.startswith('asr@')]
  rows = [['model'] + columns]
  for name, metrics in models.items():
    rows.append([name] + [_fmt(metrics.get(c)) for c in columns])
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return '\n'.join('  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _fmt(value):
  """2 decimals; [mean, std] over seeds as 'mean±std'; '-' for a missing value."""
  if isinstance(value, (list, tuple)):
    mean, std = value
    return _fmt(mean) + ('' if _fmt(std) == '-' else f'±{_fmt(std)}')
  return '-' if value is None or not np.isfinite(value) else f'{value:.2f}'
