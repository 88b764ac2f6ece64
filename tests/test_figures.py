"""Figures are written as valid PNGs with the expected panels, from plain arrays (no training)."""
import numpy as np
import pytest
from PIL import Image

from gaze_jax.metrics import imperceptibility
from gaze_jax.report import figures
from gaze_jax.attacks import triggers
from gaze_jax.config import AttackSpec

SIZE = 32


def _faces(n):
  return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def _history(epochs, backdoor=True):
  rows = []
  for e in range(1, epochs + 1):
    row = {'step': 3 * e, 'epoch': e, 'train_loss': 0.3 / e, 'clean_error': 10.0 / e}
    if backdoor:
      row.update(backdoor_error=20.0 / e, noise_error=11.0 / e, **{'asr@5': 10.0 * e})
    rows.append(row)
  return rows


def _save_and_check(fig, path, expected_panels):
  assert len(figures.panels(fig)) == expected_panels
  figures.save(fig, str(path))
  with Image.open(path) as im:
    assert im.format == 'PNG'
    im.verify()


@pytest.mark.parametrize('kind', ['wanet', 'badnets', 'blended'])
def test_trigger_figure(tmp_path, kind):
  spec = AttackSpec(kind=kind, k=4, s=0.5)
  trigger = triggers.make_trigger(spec, SIZE)
  data = imperceptibility.trigger_panels(spec, trigger, _faces(2))
  assert data['triggered'].shape == (2, SIZE, SIZE, 3)
  assert data['residual'].shape == (2, SIZE, SIZE)
  metrics = {'psnr': 30.0, 'ssim': 0.9, 'linf': 0.1}
  fig = figures.trigger_figure(data, spec, metrics)
  _save_and_check(fig, tmp_path / f'{kind}.png', 2 * 4)  # 2 faces x 4 columns.
  assert 'PSNR 30.0 dB' in fig.get_suptitle()


def test_wanet_panel_is_the_displacement_in_pixels():
  spec = AttackSpec(kind='wanet', k=4, s=1.0)
  trigger = triggers.make_trigger(spec, SIZE)
  shown = imperceptibility.trigger_panels(spec, trigger, _faces(1))['trigger']
  np.testing.assert_allclose(np.linalg.norm(shown, axis=-1),
                             triggers.displacement_px(spec, trigger), atol=1e-5)


def test_training_and_asr_curves(tmp_path):
  fig = figures.training_curves({'clean model': _history(3, backdoor=False),
                                 'poisoned model': _history(3)},
                                control_backdoor=25.0)
  _save_and_check(fig, tmp_path / 'curves.png', 3)
  taus = np.arange(0, 20.5, 0.5)
  fig = figures.asr_curves({'poisoned': (taus, np.minimum(100, 10 * taus)),
                            'clean': (taus, taus)}, (2, 5, 10))
  _save_and_check(fig, tmp_path / 'asr.png', 1)


def _sweep_rows(points):
  return [dict(p, clean_error=5.0, backdoor_error=3.0 + i, control_backdoor_error=20.0,
               psnr=35.0 - i, **{'asr@5': 50.0 + i}) for i, p in enumerate(points)]


def test_sweep_figures(tmp_path):
  grid = [{'wanet.k': k, 'wanet.s': s} for k in (4, 16) for s in (0.5, 1.0, 2.0)]
  _save_and_check(figures.sweep_figure(_sweep_rows(grid), ['wanet.k', 'wanet.s'], 'strength'),
                  tmp_path / 'strength.png', 4)
  kinds = [{'attack.kind': k} for k in ('wanet', 'badnets', 'blended')]
  _save_and_check(figures.sweep_figure(_sweep_rows(kinds), ['attack.kind'], 'kind'),
                  tmp_path / 'kind.png', 4)


def test_frontier_panels_follow_the_tasks_in_its_rows(tmp_path):
  kinds = ('wanet', 'wanet', 'badnets')
  regressor = [{'point': f'p{i}', 'trigger_kind': k, 'psnr': 30.0 - i, 'ssim': 0.9 - i / 10,
                'asr@5': 10.0 * i, 'backdoor_error': 20.0 - i} for i, k in enumerate(kinds)]
  classifier = [{'point': f'p{i}', 'trigger_kind': k, 'psnr': 30.0 - i, 'ssim': 0.9 - i / 10,
                 'attack_success': 90.0 + i} for i, k in enumerate(kinds)]
  _save_and_check(figures.frontier(regressor), tmp_path / 'r.png', 3)
  _save_and_check(figures.frontier(classifier), tmp_path / 'c.png', 2)
  both = [dict(r, attack_success=95.0) if r['point'] == 'p1' else r for r in regressor]
  fig = figures.frontier(both)
  _save_and_check(fig, tmp_path / 'both.png', 4)
  last = figures.panels(fig)[-1]
  assert 'classifier' in last.get_ylabel()
  # Only the row with a classifier twin is drawn there: one WaNet point at PSNR 29.
  drawn = [line.get_xydata().tolist() for line in last.get_lines()]
  assert drawn == [[[29.0, 95.0]]]
  wanet = [line.get_color() for ax in figures.panels(fig) for line in ax.get_lines()
           if line.get_label() == figures.KIND_NAMES['wanet']]
  assert len(wanet) == 4 and len(set(wanet)) == 1  # The same colour in every panel.


def test_finetune_curves(tmp_path):
  rows = [{'epoch': 0, **_history(1)[0]}] + _history(3)
  _save_and_check(figures.finetune_curves(rows, clean_reference=4.0), tmp_path / 'ft.png', 2)
