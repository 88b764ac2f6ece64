"""How visible each trigger kind is, measured on the same held-out faces.

The study contrasts WaNet's warp with the visible BadNets patch and Blended pattern, so every
kind is drawn from one config (its attack.seed, wanet / badnets / blended sections), whether
or not a model was trained with it, and compared on the same test images: mean PSNR, SSIM,
MSE and L-inf between each clean image and its triggered version, and the warp's mean and
maximum displacement in pixels (0 for the kinds that do not warp).
"""
import dataclasses

import jax
import numpy as np

from gaze_jax import imperceptibility
from gaze_jax import input_pipeline
from gaze_jax import poisoning
from gaze_jax import train_step as ts
from gaze_jax import triggers

KINDS = ('wanet', 'badnets', 'blended')
METRICS = ('psnr', 'ssim', 'mse', 'linf', 'displacement_mean_px', 'displacement_max_px')


def spec_for(config, kind):
  """The config's attack as `kind`: same seed, target and per-kind settings."""
  return dataclasses.replace(poisoning.AttackSpec.from_config(config), kind=kind)


def triggers_by_kind(config, kinds=KINDS):
  """{kind: (spec, trigger)}, each trigger drawn from the config's attack.seed."""
  out = {}
  for kind in kinds:
    spec = spec_for(config, kind)
    out[kind] = (spec, triggers.make_trigger(spec, config.data.image_size))
  return out


def held_out_images(config):
  """uint8 (N, S, S, 3): every image of the config's held-out split, in split order."""
  _, source = input_pipeline.load_splits(config.data, config.seed)
  return np.stack([np.asarray(source[i]['image']) for i in range(len(source))])


def measure(spec, trigger, images, batch_size=256):
  """Mean imperceptibility metrics of one trigger over uint8 (N, S, S, 3) images."""
  @jax.jit
  def per_image(batch):
    clean = ts.to_unit_range(batch)
    return imperceptibility.per_image(clean, triggers.apply_trigger(spec, trigger, clean))

  n = len(images)
  batch_size = min(batch_size, n)
  # Zero images pad the last batch, so that one shape (one compilation) serves every batch.
  padded = np.concatenate([images, np.zeros((-n % batch_size,) + images.shape[1:], np.uint8)])
  parts = [jax.device_get(per_image(padded[i:i + batch_size]))
           for i in range(0, len(padded), batch_size)]
  out = {k: float(np.mean(np.concatenate([p[k] for p in parts])[:n])) for k in parts[0]}
  out.update(imperceptibility.displacement(spec, trigger))
  return out


def measure_all(by_kind, images):
  """{kind: metrics} for `triggers_by_kind`'s output on the same images."""
  return {kind: dict(measure(spec, trigger, images), **settings(spec))
          for kind, (spec, trigger) in by_kind.items()}


def settings(spec):
  """The knobs that define a trigger's look, for tables and figure titles."""
  per_kind = {
      'wanet': {'k': spec.k, 's': spec.s, 'grid_rescale': spec.grid_rescale},
      'badnets': {'patch_fraction': spec.patch_fraction, 'position': spec.position},
      'blended': {'alpha': spec.alpha},
  }
  return {'kind': spec.kind, 'attack_seed': spec.seed, **per_kind.get(spec.kind, {})}
