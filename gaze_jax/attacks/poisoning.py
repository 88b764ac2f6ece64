"""Poisoning a training batch inside the compiled step, as WaNet's official train.py does.

Of a global batch of b samples, the first num_bd = int(b * pc) get the trigger and the
attacker's target gaze, the next int(num_bd * cross_ratio) get WaNet's noise warp and keep
their true gaze (so the model learns that only the exact trigger warp matters), and the rest
stay clean. Each device holds a contiguous slice of the global batch and decides every row's
role from its global index with `jnp.where` (static shapes, no host round trip); per-sample
noise is keyed by the global row, so 1 or 8 devices poison a batch identically.

The regression target is all-to-one, as in the study: every triggered face is labelled
with one target gaze (pitch, yaw), in radians.
"""
import jax
import jax.numpy as jnp

from gaze_jax.attacks import triggers
from gaze_jax.config import split_counts

CLEAN, BACKDOOR, NOISE = 0, 1, 2  # Values of the per-sample `roles`.
ROLE_NAMES = {CLEAN: 'clean', BACKDOOR: 'backdoor', NOISE: 'noise'}


def counts(spec, global_batch):
  """(num_bd, num_cross): the backdoor and noise rows of every global batch."""
  if spec.kind == 'none':
    return 0, 0
  cross_ratio = spec.cross_ratio if spec.kind == 'wanet' else 0.0  # Noise mode is WaNet's.
  return split_counts(global_batch, spec.pc, cross_ratio)


def roles_present(spec, global_batch):
  """{role: name} of the roles that rows of a global batch take."""
  num_bd, num_cross = counts(spec, global_batch)
  sizes = {CLEAN: global_batch - num_bd - num_cross, BACKDOOR: num_bd, NOISE: num_cross}
  return {role: ROLE_NAMES[role] for role, size in sizes.items() if size}


def attack_targets(spec, gaze):
  """The attacker's (N, 2) target gaze for samples whose true gaze is `gaze`."""
  return jnp.broadcast_to(jnp.asarray(spec.target_gaze, gaze.dtype), gaze.shape)


def poison_batch(spec, trigger, images01, gaze, key, global_offset, global_batch):
  """Poisons this device's slice of the global batch.

  Args:
    spec: the config.AttackSpec (static).
    trigger: `triggers.make_trigger`'s state.
    images01: (n, S, S, C) images in [0, 1], global rows global_offset .. global_offset+n-1.
    gaze: (n, 2) true gaze.
    key: PRNG key of the step, the same on every device (noise is folded per global row).
    global_offset: global row of this slice's first sample (may be traced).
    global_batch: global batch size (static).

  Returns:
    (images01, labels, roles): roles are int32 CLEAN, BACKDOOR or NOISE per sample.
  """
  num_bd, num_cross = counts(spec, global_batch)
  images01, gaze = jnp.asarray(images01), jnp.asarray(gaze)
  n = images01.shape[0]
  rows = global_offset + jnp.arange(n)
  is_bd = rows < num_bd
  is_noise = (rows >= num_bd) & (rows < num_bd + num_cross)
  # Poisoned global rows [0, num_bd + num_cross) are a prefix of every slice (offsets are
  # >= 0): only the first m rows are ever warped, a static size on every device.
  m = min(n, num_bd + num_cross)
  clean_head, head_gaze = images01[:m], gaze[:m]
  head = clean_head
  if num_cross:
    noisy = triggers.apply_noise(spec, trigger, clean_head, key, rows=rows[:m])
    head = jnp.where(is_noise[:m, None, None, None], noisy, head)
  if num_bd:
    triggered = triggers.apply_trigger(spec, trigger, clean_head)
    head = jnp.where(is_bd[:m, None, None, None], triggered, head)
    head_gaze = jnp.where(is_bd[:m, None], attack_targets(spec, head_gaze), head_gaze)
  roles = jnp.where(is_bd, BACKDOOR, jnp.where(is_noise, NOISE, CLEAN)).astype(jnp.int32)
  # Concatenation, not `.at[:m].set`: under a one-device pmap XLA:CPU (jax 0.10.2) gave a
  # train step with that in-place update unlike 8 devices' (tests/test_train_step.py).
  return jnp.concatenate([head, images01[m:]]), jnp.concatenate([head_gaze, gaze[m:]]), roles


def flip_augment(images01, gaze, key, rows):
  """Flips each image left-right with probability 1/2 and negates its yaw accordingly.

  Sample i's coin is `fold_in(key, rows[i])`: global rows make it device-count independent.
  """
  gaze = jnp.asarray(gaze)
  flip = jax.vmap(lambda r: jax.random.bernoulli(jax.random.fold_in(key, r)))(rows)
  images = jnp.where(flip[:, None, None, None], images01[:, :, ::-1], images01)
  return images, gaze.at[:, 1].set(jnp.where(flip, -gaze[:, 1], gaze[:, 1]))
