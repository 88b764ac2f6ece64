"""How visible a trigger is: per-image PSNR, SSIM, MSE, L-inf and WaNet's pixel displacement.

Every number compares a clean image in [0, 1] with its triggered version (float NHWC, data
range 1). PSNR and SSIM come from dm-pix (the JAX-native implementation; SSIM is Wang et al.'s
with an 11-tap Gaussian window, sigma 1.5, over channels-last images, as scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`).
Identical images have PSNR inf and SSIM 1. LPIPS is not computed: it needs pretrained network
weights that are downloaded at run time, which this offline project cannot do.

The study contrasts WaNet's warp with the visible BadNets patch and Blended pattern, so
`measure_all` measures every kind on the same held-out faces. `triggered_per_image` is
compiled once per attack spec, with the trigger as an argument.
"""
import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from gaze_jax.attacks import triggers
from gaze_jax.data import device

METRICS = ('psnr', 'ssim', 'mse', 'linf', 'displacement_mean_px', 'displacement_max_px')


def per_image(clean01, triggered01):
  """Dict of (N,) arrays: psnr (dB), ssim, mse and linf between matching images."""
  if clean01.shape[-1] not in (1, 3):  # dm-pix's SSIM is silently wrong on NCHW input.
    raise ValueError(f'expected NHWC images with 1 or 3 channels, got {clean01.shape}')
  clean01 = jnp.asarray(clean01, jnp.float32)
  triggered01 = jnp.asarray(triggered01, jnp.float32)
  return {
      'psnr': dm_pix.psnr(clean01, triggered01),
      'ssim': dm_pix.ssim(clean01, triggered01, max_val=1.0),
      'mse': dm_pix.mse(clean01, triggered01),
      'linf': jnp.max(jnp.abs(clean01 - triggered01), axis=(-3, -2, -1)),
  }


def summarize(clean01, triggered01):
  """Means over the images of `per_image`'s metrics, as Python floats."""
  return {name: float(np.mean(v)) for name, v in per_image(clean01, triggered01).items()}


def displacement(spec, trigger):
  """Mean and max over pixels of the trigger's warp displacement, in pixels (0 if no warp)."""
  d = triggers.displacement_px(spec, trigger)
  return {'displacement_mean_px': float(np.mean(d)), 'displacement_max_px': float(np.max(d))}


@functools.partial(jax.jit, static_argnames='spec')
def triggered_per_image(trigger, images_uint8, *, spec):
  """`per_image` of uint8 images against their triggered versions."""
  clean = device.to_unit_range(images_uint8)
  return per_image(clean, triggers.apply_trigger(spec, trigger, clean))


def measure(spec, trigger, images, batch_size=256):
  """Mean imperceptibility metrics of one trigger over uint8 (N, S, S, 3) images."""
  n = len(images)
  batch_size = min(batch_size, n)
  # Zero images pad the last batch, so that one shape (one compilation) serves every batch.
  padded = np.concatenate([images, np.zeros((-n % batch_size,) + images.shape[1:], np.uint8)])
  parts = [jax.device_get(triggered_per_image(trigger, padded[i:i + batch_size], spec=spec))
           for i in range(0, len(padded), batch_size)]
  out = {k: float(np.mean(np.concatenate([p[k] for p in parts])[:n])) for k in parts[0]}
  out.update(displacement(spec, trigger))
  return out


def settings(spec):
  """The knobs that define a trigger's look, for tables and figure titles."""
  per_kind = {
      'wanet': {'k': spec.k, 's': spec.s},
      'badnets': {'patch_fraction': spec.patch_fraction, 'position': spec.position},
      'blended': {'alpha': spec.alpha},
  }
  return {'kind': spec.kind, 'attack_seed': spec.seed, **per_kind.get(spec.kind, {})}


def measure_all(by_kind, images):
  """{kind: metrics and settings} of `triggers.triggers_by_kind`'s output on the same images."""
  return {kind: dict(measure(spec, trigger, images), **settings(spec))
          for kind, (spec, trigger) in by_kind.items()}


def trigger_panels(spec, trigger, images):
  """Computes the arrays that report.figures.trigger_figure draws.

  Arrays for report.figures.trigger_figure: clean and triggered images, their residuals
  and the trigger's own panel (WaNet: the (x, y) displacement field in px; BadNets: the
  patch on grey; Blended: the pattern).

  Args:
    spec: a config.AttackSpec with kind wanet, badnets or blended.
    trigger: its `triggers.make_trigger` state.
    images: uint8 (N, S, S, 3) clean faces.
  """
  clean = np.asarray(device.to_unit_range(images))
  triggered = np.clip(np.asarray(triggers.apply_trigger(spec, trigger, clean)), 0, 1)
  residual = np.abs(triggered - clean).max(axis=-1)
  if spec.kind == 'wanet':
    shown = triggers.displacement_field(spec, trigger)
  elif spec.kind == 'badnets':
    shown = np.where(trigger['mask'] > 0, trigger['patch'], 0.5)[..., 0]
  else:
    shown = np.asarray(trigger['pattern'])
  return {'clean': clean, 'triggered': triggered, 'residual': residual, 'trigger': shown}
