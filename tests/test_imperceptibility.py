"""PSNR, SSIM, MSE and L-inf against closed forms and scikit-image."""
import numpy as np
import pytest
from skimage import metrics

from gaze_jax.metrics import imperceptibility
from gaze_jax.attacks import triggers
from gaze_jax.config import AttackSpec

C1, C2 = 0.01**2, 0.03**2  # SSIM constants for data range 1.


def _images(n=3, size=24, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def test_identical_images():
  x = _images()
  m = imperceptibility.per_image(x, x.copy())
  assert np.all(np.isinf(m['psnr'])) and np.all(np.asarray(m['psnr']) > 0)
  np.testing.assert_allclose(m['ssim'], 1.0, atol=1e-6)
  np.testing.assert_array_equal(m['mse'], 0.0)
  np.testing.assert_array_equal(m['linf'], 0.0)


@pytest.mark.parametrize('level,delta', [(0.3, 0.1), (0.5, 0.125), (0.25, 0.5), (0.0, 0.5)])
def test_uniform_offset_closed_forms(level, delta):
  # A constant image and a constant offset: the SSIM contrast-structure term is 1 and the
  # luminance term is the same in every window. float32's E[x^2] - mu^2 leaves ~1e-7 of
  # variance against C2 = 9e-4, hence the 1e-4 tolerance on SSIM.
  x = np.full((2, 16, 16, 3), level, np.float32)
  m = imperceptibility.per_image(x, x + np.float32(delta))
  np.testing.assert_allclose(m['mse'], delta**2, rtol=1e-4)
  np.testing.assert_allclose(m['psnr'], -20 * np.log10(delta), atol=1e-3)
  np.testing.assert_allclose(m['linf'], delta, rtol=1e-5)
  mu, nu = level, level + delta
  np.testing.assert_allclose(m['ssim'], (2 * mu * nu + C1) / (mu**2 + nu**2 + C1), atol=1e-4)


def test_matches_scikit_image():
  clean = _images(3, 32, seed=1)
  noisy = np.clip(clean + np.random.default_rng(2).normal(0, 0.1, clean.shape), 0, 1)
  noisy = noisy.astype(np.float32)
  m = imperceptibility.per_image(clean, noisy)
  for i in range(3):
    ssim = metrics.structural_similarity(clean[i], noisy[i], channel_axis=-1, data_range=1,
                                         gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
    psnr = metrics.peak_signal_noise_ratio(clean[i], noisy[i], data_range=1)
    np.testing.assert_allclose(m['ssim'][i], ssim, atol=1e-4)
    np.testing.assert_allclose(m['psnr'][i], psnr, atol=1e-3)
    np.testing.assert_allclose(m['mse'][i], metrics.mean_squared_error(clean[i], noisy[i]),
                               rtol=1e-4)
  assert 0.2 < np.min(m['ssim']) < 0.99  # A case where a wrong SSIM would show.


def test_rejects_channels_first():
  x = _images().transpose(0, 3, 1, 2)
  with pytest.raises(ValueError, match='NHWC'):
    imperceptibility.per_image(x, x)


def test_summarize_and_displacement():
  clean = _images(4, 24, seed=3)
  spec = AttackSpec(kind='wanet', k=4, s=1.0, seed=1)
  trigger = triggers.make_trigger(spec, 24)
  warped = np.asarray(triggers.apply_trigger(spec, trigger, clean))
  summary = imperceptibility.summarize(clean, warped)
  per_image = imperceptibility.per_image(clean, warped)
  assert set(summary) == {'psnr', 'ssim', 'mse', 'linf'}
  for name, values in per_image.items():
    np.testing.assert_allclose(summary[name], np.mean(values), rtol=1e-6)
  d = imperceptibility.displacement(spec, trigger)
  px = triggers.displacement_px(spec, trigger)
  assert d == pytest.approx({'displacement_mean_px': px.mean(),
                             'displacement_max_px': px.max()})
  assert 0.1 < d['displacement_mean_px'] < d['displacement_max_px'] < 3
  assert imperceptibility.displacement(AttackSpec(kind='none'), {}) == {
      'displacement_mean_px': 0.0, 'displacement_max_px': 0.0}
