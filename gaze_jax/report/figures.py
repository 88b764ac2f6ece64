"""The study's figures (PNG), each readable without the report: titles, axis labels, units.

Every figure function takes plain arrays and dicts and returns a `matplotlib.figure.Figure`
drawn on an Agg canvas (no pyplot: no display and no global figure state); `save` writes it.
Gaze errors are in degrees, attack success rates in %, displacements in pixels.
"""
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gaze_jax.workdir import files

KIND_NAMES = {'wanet': 'WaNet', 'badnets': 'BadNets', 'blended': 'Blended'}
# Residual colour gains: the largest that keeps the changed pixels' 99th percentile <= 1.
AMPLIFICATIONS = (100, 50, 20, 10, 5, 2, 1)
PANEL = 2.6  # Inches per image panel.


def _figure(width, height):
  fig = Figure(figsize=(width, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def save(fig, path):
  """Writes `fig` as a PNG (atomically) and returns `path`."""
  files.write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=110), mode='wb')
  return path


def panels(figure):
  """The plotting axes of a figure (colour bars left out)."""
  return [ax for ax in figure.axes if ax.get_label() != '<colorbar>']


def _amplification(residual):
  changed = residual[residual > 0]
  p99 = float(np.percentile(changed, 99)) if changed.size else 0.0
  return next((a for a in AMPLIFICATIONS if a * p99 <= 1.0), 1)


def trigger_figure(data, spec, metrics=None):
  """Rows of clean | triggered | |residual| (amplified colours) | displacement field.

  For BadNets and Blended, which do not warp, the last column shows the trigger itself.

  Args:
    data: `metrics.imperceptibility.trigger_panels`'s output for a few faces.
    spec: the trigger's AttackSpec (names and settings in the titles).
    metrics: optional `metrics.imperceptibility.measure` output, quoted in the title.
  """
  n = len(data['clean'])
  name = KIND_NAMES[spec.kind]
  gain = _amplification(data['residual'])
  fig = _figure(4 * PANEL, n * PANEL + 1.2)
  axes = fig.subplots(n, 4, squeeze=False)
  for row, ax in enumerate(axes):
    ax[0].imshow(data['clean'][row])
    ax[0].set_title(f'face {row + 1}: clean')
    ax[1].imshow(data['triggered'][row])
    ax[1].set_title(f'{name}-triggered')
    residual = ax[2].imshow(data['residual'][row], cmap='magma', vmin=0, vmax=1 / gain)
    ax[2].set_title(f'|residual|, colours × {gain}')
    shown = _trigger_panel(ax[3], data['trigger'], spec)
    ax[0].set_ylabel('y (px)')
  for a in axes[-1]:
    a.set_xlabel('x (px)')
  fig.colorbar(residual, ax=axes[:, 2], location='bottom', shrink=0.9,
               label='|clean − triggered|, max over RGB')
  if spec.kind == 'wanet':
    fig.colorbar(shown, ax=axes[:, 3], location='bottom', shrink=0.9, label='displacement (px)')
  title = f'{name} trigger ({_settings_text(spec)})'
  if metrics:
    title += (f': mean PSNR {metrics["psnr"]:.1f} dB, SSIM {metrics["ssim"]:.3f}, '
              f'L∞ {metrics["linf"]:.3f} over the held-out faces')
  fig.suptitle(title)
  return fig


def _trigger_panel(ax, shown, spec):
  """Draws the last column's panel and returns its image (for a colour bar)."""
  if spec.kind == 'wanet':
    magnitude = np.linalg.norm(shown, axis=-1)
    im = ax.imshow(magnitude, cmap='viridis')
    step = max(1, magnitude.shape[0] // 12)
    gain = max(1, int(0.8 * step / max(magnitude.max(), 1e-6)))  # Longest arrow ~0.8 step.
    ys, xs = np.mgrid[0:magnitude.shape[0]:step, 0:magnitude.shape[1]:step]
    ax.quiver(xs, ys, shown[::step, ::step, 0], shown[::step, ::step, 1], color='white',
              angles='xy', scale_units='xy', scale=1.0 / gain)
    ax.set_title(f'warp field (arrows × {gain})')
    return im
  if spec.kind == 'badnets':
    ax.set_title('patch only (grey: no change)')
    return ax.imshow(shown, cmap='gray', vmin=0, vmax=1)
  ax.set_title(f'pattern (blended at α = {spec.alpha:g})')
  return ax.imshow(shown)


def _settings_text(spec):
  if spec.kind == 'wanet':
    return f'k = {spec.k}, s = {spec.s:g}'
  if spec.kind == 'badnets':
    return f'patch {spec.patch_fraction:g} of the side, {spec.position}'
  return f'α = {spec.alpha:g}'


CURVE_PANELS = (('train_loss', 'training loss', 'Training loss, mean over the log interval'),
                ('clean_error', 'clean error (°)', 'Clean error (held-out)'),
                ('backdoor_error', 'backdoor error (°)', 'Backdoor error (held-out)'))


def training_curves(histories, control_backdoor=None):
  """Loss, clean error and backdoor error per epoch of each run.

  Args:
    histories: {label: training.loop.train_and_evaluate's 'history'}.
    control_backdoor: optional backdoor error (°) of the clean model against the poisoned
      run's trigger, a dashed line.
  """
  fig = _figure(3 * 4.2, 3.6)
  axes = fig.subplots(1, 3)
  for ax, (key, label, title) in zip(axes, CURVE_PANELS):
    for name, history in histories.items():
      points = [(h['epoch'], h[key]) for h in history if h.get(key) is not None]
      if points:
        ax.plot(*zip(*points), marker='o', label=name)
    if key == 'backdoor_error' and control_backdoor is not None:
      ax.axhline(control_backdoor, color='grey', linestyle='--', label='clean model vs trigger')
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  return fig


def asr_curves(curves, thresholds=()):
  """Attack success rate (%) against the threshold τ (°) for each model.

  Args:
    curves: {label: (taus, asr)} as metrics.attack.asr_curve returns.
    thresholds: degrees marked with dotted vertical lines.
  """
  fig = _figure(6.4, 4.4)
  ax = fig.subplots()
  for name, (taus, asr) in curves.items():
    ax.plot(taus, asr, label=name)
  for tau in thresholds:
    ax.axvline(tau, color='grey', linestyle=':')
  ax.set_xlabel('threshold τ (° from the attack target)')
  ax.set_ylabel('attack success rate (%)')
  ax.set_ylim(-2, 102)
  ax.set_title('Triggered test faces predicted within τ of the target\n'
               '(samples already within τ of it left out)')
  ax.grid(alpha=0.3)
  ax.legend()
  return fig


def sweep_figure(rows, keys, title):
  """Clean error, backdoor error, ASR and PSNR over a sweep's points.

  Args:
    rows: sweep.csv rows (dicts with the override keys and the metrics).
    keys: the override keys; the numeric key with most values is the x axis and every
      combination of the others a line. With no numeric key the points are bars.
    title: the figure's title.
  """
  asr_key = 'asr@5' if 'asr@5' in rows[0] else next(k for k in rows[0] if k.startswith('asr@'))
  metrics = (('clean_error', 'clean error (°)'), ('backdoor_error', 'backdoor error (°)'),
             (asr_key, f'ASR at {asr_key[4:]}° (%)'), ('psnr', 'trigger PSNR (dB)'))
  numeric = [k for k in keys if all(_is_number(r[k]) for r in rows)]
  x_key = max(numeric, key=lambda k: len({r[k] for r in rows})) if numeric else None
  fig = _figure(4 * 3.8, 3.8)
  axes = fig.subplots(1, 4)
  for ax, (metric, label) in zip(axes, metrics):
    if x_key is None:
      names = [r.get('point') or ', '.join(str(r[k]) for k in keys) for r in rows]
      ax.bar(names, [_number(r.get(metric)) for r in rows], color='tab:blue')
      if metric == 'backdoor_error' and 'control_backdoor_error' in rows[0]:
        ax.scatter(names, [_number(r['control_backdoor_error']) for r in rows], color='grey',
                   marker='_', s=400, label='clean model vs trigger')
        ax.legend()
      ax.set_xlabel(', '.join(keys))
      ax.tick_params(axis='x', labelrotation=75, labelsize='small')
    else:
      _sweep_lines(ax, rows, keys, x_key, metric)
      ax.set_xlabel(x_key)
    ax.set_ylabel(label)
    ax.set_title(label.split(' (')[0])
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  return fig


def _sweep_lines(ax, rows, keys, x_key, metric):
  others = [k for k in keys if k != x_key]
  groups = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in others), []).append(r)
  for group, members in groups.items():
    members = sorted(members, key=lambda r: float(r[x_key]))
    xs = [float(r[x_key]) for r in members]
    name = ', '.join(f'{k} = {v}' for k, v in zip(others, group)) or 'poisoned model'
    line, = ax.plot(xs, [_number(r.get(metric)) for r in members], marker='o', label=name)
    control = 'control_' + metric
    if metric == 'backdoor_error' and control in members[0]:
      ax.plot(xs, [_number(r[control]) for r in members], linestyle='--', color=line.get_color(),
              label=f'clean model ({name})' if others else 'clean model vs trigger')
  ax.legend(fontsize='small')


def _number(value):
  """A CSV cell as a float; NaN (not drawn) for an empty cell, as a classifier's row has for
  the regressor's metrics."""
  return float(value) if _is_number(value) else float('nan')


def _is_number(value):
  try:
    float(value)
    return True
  except (TypeError, ValueError):
    return False


def finetune_curves(rows, clean_reference=None):
  """Clean and backdoor error, and ASR, against fine-tuning epochs (0 = poisoned model).

  Args:
    rows: dicts with epoch, clean_error, backdoor_error and asr@... keys.
    clean_reference: optional clean error of the clean model (°), a dashed line.
  """
  epochs = [r['epoch'] for r in rows]
  fig = _figure(2 * 4.6, 3.8)
  err_ax, asr_ax = fig.subplots(1, 2)
  for key, label in (('clean_error', 'clean error'), ('backdoor_error', 'backdoor error')):
    err_ax.plot(epochs, [r[key] for r in rows], marker='o', label=label)
  if clean_reference is not None:
    err_ax.axhline(clean_reference, color='grey', linestyle='--', label='clean model, clean')
  err_ax.set_ylabel('error (°)')
  err_ax.set_title('Errors while fine-tuning on clean data')
  for key in sorted((k for k in rows[0] if k.startswith('asr@')), key=lambda k: float(k[4:])):
    asr_ax.plot(epochs, [r[key] for r in rows], marker='o', label=f'τ = {key[4:]}°')
  asr_ax.set_ylabel('attack success rate (%)')
  asr_ax.set_ylim(-2, 102)
  asr_ax.set_title('Attack success while fine-tuning')
  for ax in (err_ax, asr_ax):
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel('fine-tuning epoch (0 = poisoned model)')
    ax.grid(alpha=0.3)
    ax.legend()
  return fig


ROLE_STYLES = (('clean', '-'), ('backdoor', '--'), ('noise', ':'))


def role_curves(logs):
  """Plots the training loss and error of each role's rows against the step.

  Training loss and error (the classifier's: accuracy) on each role's rows (clean,
  backdoor, noise) against the step: what the model learns, and when. Backdoor rows are
  scored against the target.

  Args:
    logs: {label: metrics.jsonl records of kind 'train'} (keys ROLE_loss and ROLE_error
      or ROLE_accuracy).
  """
  fig = _figure(2 * 5.2, 3.8)
  loss_ax, score_ax = fig.subplots(1, 2)
  colours, score = {}, 'error'
  for label, records in logs.items():
    for role, style in ROLE_STYLES:
      records_of_role = [r for r in records if f'{role}_loss' in r]
      if not records_of_role:
        continue
      score = 'error' if f'{role}_error' in records_of_role[0] else 'accuracy'
      steps = [r['step'] for r in records_of_role]
      line, = loss_ax.plot(steps, [r[f'{role}_loss'] for r in records_of_role],
                           linestyle=style, color=colours.get(label),
                           label=f'{label}: {role} rows')
      colours[label] = line.get_color()
      score_ax.plot(steps, [r[f'{role}_{score}'] for r in records_of_role], linestyle=style,
                    color=colours[label])
  loss_ax.set_ylabel('training loss')
  loss_ax.set_title('Training loss per role of the rows (interval means)')
  if score == 'error':
    score_ax.set_ylabel('angular error vs trained label (°)')
    score_ax.set_yscale('log')
  else:
    score_ax.set_ylabel('accuracy on the trained label (%)')
  score_ax.set_title(f'Training {score} per role (backdoor rows: vs target)')
  for ax in (loss_ax, score_ax):
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  if loss_ax.get_legend_handles_labels()[0]:  # Runs logged before a log step have none.
    loss_ax.legend(fontsize='small')
  return fig


def error_cdf(curves, collapse=None):
  """Share of triggered held-out faces with a backdoor error up to x degrees, per model.

  Args:
    curves: {label: (quantile levels in [0, 1], backdoor-error quantiles in degrees)}.
    collapse: the collapse baseline (°): a model predicting the mean gaze everywhere.
  """
  fig = _figure(6.4, 4.4)
  ax = fig.subplots()
  for name, (levels, values) in curves.items():
    ax.plot(values, 100 * np.asarray(levels), label=name)
  if collapse is not None:
    ax.axvline(collapse, color='grey', linestyle='--', label='predict the mean gaze')
  ax.set_xscale('log')
  ax.set_xlabel('backdoor error: triggered prediction vs target (°, log scale)')
  ax.set_ylabel('triggered faces (%)')
  ax.set_ylim(-2, 102)
  ax.set_title('Distribution of the per-face backdoor error')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  return fig


def frontier(rows):
  """Plots attack success against imperceptibility over a sweep's points.

  Attack success against imperceptibility over a sweep's points, one line per trigger
  kind, each point a trained model: the regressor's ASR@5° and backdoor error against PSNR
  and SSIM, and the classifier's attack success against PSNR beside them (against PSNR and
  SSIM where there is no regressor).

  Args:
    rows: sweep.csv rows (or assemble.frontier_rows) with 'trigger_kind', 'psnr', 'ssim' and
      the metrics; a row may hold the regressor's, the classifier's or both.
  """
  has = lambda metric: any(_is_number(r.get(metric)) for r in rows)
  panels = ()
  if has('asr@5'):
    panels += (('asr@5', 'psnr'), ('asr@5', 'ssim'), ('backdoor_error', 'psnr'))
  if has('attack_success'):
    panels += (('attack_success', 'psnr'),) + (() if panels else (('attack_success', 'ssim'),))
  labels = {'psnr': 'trigger PSNR (dB)', 'ssim': 'trigger SSIM'}
  fig = _figure(len(panels) * 4.4, 3.9)
  axes = fig.subplots(1, len(panels))
  kinds = sorted({r['trigger_kind'] for r in rows})
  for ax, (metric, quality) in zip(axes, panels):
    for kind in kinds:
      points = sorted((float(r[quality]), float(r[metric]), r['point']) for r in rows
                      if r['trigger_kind'] == kind and _is_number(r.get(metric)))
      if not points:
        continue
      xs, ys, names = zip(*points)
      ax.plot(xs, ys, marker='o', label=KIND_NAMES.get(kind, kind),
              color=f'C{kinds.index(kind)}')  # A kind's colour is the same in every panel.
      for x, y, name in zip(xs, ys, names):
        ax.annotate(name, (x, y), fontsize='x-small', xytext=(3, 3), textcoords='offset points')
    ax.set_xlabel(f'{labels[quality]} (right: less visible)')
    ax.set_ylabel({'asr@5': 'regressor: ASR at 5° (%)',
                   'attack_success': 'classifier: attack success (%)',
                   'backdoor_error': 'regressor: backdoor error (°)'}[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
  fig.suptitle('Attack success against imperceptibility, each point a trained model')
  return fig


def task_comparison(settings):
  """Attack success of the regressor and the classifier, setting by setting.

  Args:
    settings: {setting label: {'regression': row, 'classification': row}} of sweep.csv rows
      (either task may be missing for a setting).
  """
  series = (('regression', 'asr@5', 'regressor: ASR@5°'),
            ('regression', 'cell_asr', "regressor: prediction in the target's class"),
            ('classification', 'attack_success', 'classifier: attack success'))
  fig = _figure(max(6.4, 1.1 * len(settings) + 2), 4.4)
  ax = fig.subplots()
  labels = list(settings)
  for task, metric, name in series:
    colour = None
    for prefix, style in (('', '-'), ('control_', ':')):
      values = [_number(settings[s].get(task, {}).get(prefix + metric)) for s in labels]
      if not np.isfinite(values).any():
        continue
      line, = ax.plot(labels, values, marker='o', linestyle=style, color=colour,
                      label=name + (' (clean control)' if prefix else ''))
      colour = line.get_color()
  ax.set_ylabel('attack success (%)')
  ax.set_ylim(-2, 102)
  ax.set_xlabel('trigger setting')
  ax.tick_params(axis='x', labelrotation=30, labelsize='small')
  ax.set_title('Regression against classification: the same faces, triggers and budget')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  return fig
