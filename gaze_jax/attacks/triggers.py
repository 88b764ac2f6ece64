"""One interface over the backdoor triggers: WaNet's warp and the BadNets / Blended baselines.

The comparison "invisible warp vs visible trigger" must use the same model, data, targets and
metrics, so every trigger is a pair of a per-run state drawn once from the attack seed
(`make_trigger`, host NumPy, saved with the checkpoint) and pure functions that apply it to
float NHWC images in [0, 1] inside the compiled step. `spec` is a `config.AttackSpec`.

- 'wanet': state {'noise_grid': (S, S, 2)}; the fixed warp of `wanet.trigger_grid`.
- 'badnets' (Gu et al. 2017): state {'patch': (S, S, 1), 'mask': (S, S, 1)}; a square of side
  round(patch_fraction * S) px at the configured position is replaced by a seeded random
  black-and-white pattern (the same in every channel).
- 'blended' (Chen et al. 2017): state {'pattern': (S, S, 3)} uniform [0, 1] noise;
  images become (1 - alpha) * image + alpha * pattern.
- 'none': no state; images pass unchanged.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gaze_jax.attacks import wanet
from gaze_jax.config import TRIGGER_KINDS


def make_trigger(spec, image_size, channels=3):
  """The per-run trigger state for `spec.kind`, drawn from `spec.seed` (dict of np arrays)."""
  key = jax.random.key(spec.seed)
  if spec.kind == 'wanet':
    return {'noise_grid': np.asarray(wanet.noise_grid(key, spec.k, image_size))}
  if spec.kind == 'badnets':
    side = max(1, round(spec.patch_fraction * image_size))
    top, left = {
        'bottom_right': (image_size - side, image_size - side),
        'top_left': (0, 0),
        'center': ((image_size - side) // 2, (image_size - side) // 2),
    }[spec.position]
    pattern = jax.random.bernoulli(key, 0.5, (side, side, 1))
    patch = np.zeros((image_size, image_size, 1), np.float32)
    mask = np.zeros_like(patch)
    patch[top:top + side, left:left + side] = np.asarray(pattern)
    mask[top:top + side, left:left + side] = 1.0
    return {'patch': patch, 'mask': mask}
  if spec.kind == 'blended':
    pattern = jax.random.uniform(key, (image_size, image_size, channels))
    return {'pattern': np.asarray(pattern)}
  return {}


def _trigger_grid(spec, trigger):
  noise = jnp.asarray(trigger['noise_grid'])
  return wanet.trigger_grid(wanet.identity_grid(noise.shape[0]), noise, spec.s)


def apply_trigger(spec, trigger, images01):
  """Triggered versions of (N, S, S, C) images in [0, 1]."""
  if spec.kind == 'wanet':
    return wanet.warp(images01, _trigger_grid(spec, trigger))
  if spec.kind == 'badnets':
    mask = trigger['mask']
    return images01 * (1.0 - mask) + trigger['patch'] * mask
  if spec.kind == 'blended':
    return (1.0 - spec.alpha) * images01 + spec.alpha * trigger['pattern']
  return images01


def apply_noise(spec, trigger, images01, key, rows=None):
  """WaNet noise-mode images (trigger warp plus fresh per-pixel noise); others unchanged.

  Args:
    spec: the attack.
    trigger: `make_trigger`'s state.
    images01: (N, S, S, C) images in [0, 1].
    key: PRNG key of this call.
    rows: (N,) integer ids of the samples (default 0..N-1); sample i's noise is drawn with
      `fold_in(key, rows[i])`, so the same id gives the same noise whatever the batching.
  """
  if spec.kind != 'wanet':
    return images01
  if rows is None:
    rows = jnp.arange(images01.shape[0])
  grid = _trigger_grid(spec, trigger)
  grids = jax.vmap(lambda r: wanet.cross_grid(jax.random.fold_in(key, r), grid))(rows)
  return wanet.warp(images01, grids)


def displacement_field(spec, trigger):
  """(S, S, 2) (x, y) source offset in pixels of each output pixel under the trigger warp.

  Zeros for the kinds that do not warp; 'none' has no state and hence no size: a scalar 0.
  """
  if spec.kind == 'wanet':
    size = trigger['noise_grid'].shape[0]
    grid = _trigger_grid(spec, trigger)
    return np.asarray((grid - wanet.identity_grid(size)) * ((size - 1) / 2))  # Grid unit in px.
  if not trigger:
    return np.zeros(())
  size = next(iter(trigger.values())).shape[0]
  return np.zeros((size, size, 2), np.float32)


def displacement_px(spec, trigger):
  """(S, S) length in pixels of the trigger warp's displacement (see displacement_field)."""
  field = displacement_field(spec, trigger)
  return np.asarray(jnp.linalg.norm(field, axis=-1)) if field.ndim else field


def triggers_by_kind(spec, image_size, kinds=TRIGGER_KINDS):
  """Makes a trigger of every kind from one attack spec.

  {kind: (spec, trigger)}: `spec` as each kind (same seed, target and settings), each
  trigger drawn from spec.seed, so that every kind can be compared on the same faces."""
  out = {}
  for kind in kinds:
    kind_spec = dataclasses.replace(spec, kind=kind)
    out[kind] = (kind_spec, make_trigger(kind_spec, image_size))
  return out
