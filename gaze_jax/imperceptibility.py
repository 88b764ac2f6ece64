"""How visible a trigger is: per-image PSNR, SSIM, MSE, L-inf and WaNet's pixel displacement.

Every number compares a clean image in [0, 1] with its triggered version (float NHWC, data
range 1). PSNR and SSIM come from dm-pix (the JAX-native implementation; SSIM is Wang et al.'s
with an 11-tap Gaussian window, sigma 1.5, over channels-last images, as scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`).
Identical images have PSNR inf and SSIM 1. LPIPS is not computed: it needs pretrained network
weights that are downloaded at run time, which this offline project cannot do.
"""
import dm_pix
import jax.numpy as jnp
import numpy as np

from gaze_jax import triggers


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
