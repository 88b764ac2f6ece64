"""Model-level detection by trigger reverse-engineering: is this model backdoored?

In the spirit of Neural Cleanse (Wang et al., S&P 2019) and of its regression versions
DRMGuard (Du et al., arXiv 2411.04811) and SecureGaze (SenSys 2025): a small trigger is
optimised on the defender's clean faces so that the network's outputs on the triggered
faces collapse to one point. A backdoored network has such a shortcut, a clean one does
not, so the smallest spread reachable within a trigger budget tells them apart. Two
trigger families, since the defender does not know the attack:

- 'warp': a k x k x 2 control field upsampled like WaNet's (wanet.upsample_bicubic) to a
  displacement field of at most `max_px` pixels (a tanh bound on the control points),
  applied with WaNet's own grid sampler (wanet.warp); its size is the mean displacement.
- 'patch': a mask and a pattern (sigmoids of free logits), x' = (1 - m) x + m p, as Neural
  Cleanse's; its size is the mask's mean (the share of the image it covers), held under
  `max_area` by a hinge penalty.

Objective on a batch: a regressor's spread (the mean distance, in degrees of pitch and yaw,
of the outputs from their mean: all-to-one backdoors make it small); a classifier's
cross-entropy to a target class c, searched for every class (Neural Cleanse). A small
penalty on the trigger's size keeps it from growing where it does not help. Each
optimisation step (optax Adam on a batch drawn from the pool) is one jitted function,
compiled once per network, family and task.

Scores, measured on held-out clean faces with the recovered trigger:
- regressor: `spread_ratio` = spread of the triggered outputs / spread of the clean ones
  (metrics.attack.spread_deg). Low = backdoored; the model's score is the lowest over the
  families. The recovered target is the triggered outputs' mean direction.
- classifier: `flip_rate` (%), the share of faces not of class c classified as c under
  class c's trigger; the model's score is the highest over classes and families, the
  recovered target that class; and Neural Cleanse's `anomaly_index`, the highest over the
  families of the best class's flip rate among all classes' (scores.anomaly_index; above 2
  flags the model on its own), with that family and class.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gaze_jax import geometry
from gaze_jax.attacks import triggers
from gaze_jax.attacks import wanet
from gaze_jax.defences import scores
from gaze_jax.errors import UserError
from gaze_jax.metrics import attack

FAMILIES = ('warp', 'patch')


@dataclasses.dataclass(frozen=True)
class Settings:
  """The search's knobs (static under jit)."""
  steps: int = 300
  batch: int = 32
  k: int = 4                 # Warp control grid (WaNet's default k).
  max_px: float = 1.0        # Warp bound: displacement of a control point, pixels.
  max_area: float = 0.05     # Patch budget: the mask's mean.
  size_weight: float = 0.05  # Penalty per unit of size (pixels of mean displacement; area).
  budget_weight: float = 50.0  # Hinge penalty per unit of mask mean above max_area.
  warp_lr: float = 0.05
  patch_lr: float = 0.1


def init_params(family, key, size, channels, settings):
  """The free parameters of a trigger family at the start of the search."""
  if family == 'warp':
    return {'theta': 0.1 * jax.random.normal(key, (settings.k, settings.k, 2))}
  if family == 'patch':
    k_mask, k_pattern = jax.random.split(key)
    return {'mask': -3.0 + 0.1 * jax.random.normal(k_mask, (size, size, 1)),
            'pattern': jax.random.normal(k_pattern, (size, size, channels))}
  raise UserError(f'unknown trigger family {family!r}: expected one of {", ".join(FAMILIES)}')


def displacement_px(params, size, settings):
  """(S, S, 2) (x, y) displacement in pixels of a warp's parameters."""
  bound = jnp.tanh(params['theta']) * settings.max_px
  return wanet.upsample_bicubic(bound, size)


def apply(family, params, images01, settings):
  """Images triggered by a family's parameters (pure, differentiable)."""
  size = images01.shape[1]
  if family == 'warp':
    grid = wanet.identity_grid(size) + displacement_px(params, size, settings) / ((size - 1) / 2)
    return wanet.warp(images01, jnp.clip(grid, -1.0, 1.0))
  mask, pattern = jax.nn.sigmoid(params['mask']), jax.nn.sigmoid(params['pattern'])
  return (1.0 - mask) * images01 + mask * pattern


def trigger_size(family, params, size, settings):
  """A warp's mean displacement (pixels) or a patch mask's mean (share of the image)."""
  if family == 'warp':
    return jnp.mean(jnp.linalg.norm(displacement_px(params, size, settings), axis=-1))
  return jnp.mean(jax.nn.sigmoid(params['mask']))


def spread_loss(outputs):
  """Mean distance (degrees of pitch and yaw) of (N, 2) gaze outputs from their mean."""
  diff = jnp.degrees(outputs - jnp.mean(outputs, axis=0))
  return jnp.mean(jnp.sqrt(jnp.sum(diff ** 2, axis=-1) + 1e-8))


def _objective(outputs, target_class):
  if target_class is None:
    return spread_loss(outputs)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      outputs, jnp.full(outputs.shape[:1], target_class)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _step(module, family, settings, classify, carry, variables, pool01, key, i, target_class):
  """One optimisation step of the trigger on a batch drawn from the pool."""
  size = pool01.shape[1]
  lr = settings.warp_lr if family == 'warp' else settings.patch_lr

  def loss_fn(p, images):
    outputs = module.apply(variables, apply(family, p, images, settings), train=False)
    size_now = trigger_size(family, p, size, settings)
    loss = _objective(outputs, target_class if classify else None)
    loss += settings.size_weight * size_now
    if family == 'patch':
      loss += settings.budget_weight * jax.nn.relu(size_now - settings.max_area)
    return loss

  p, opt = carry
  idx = jax.random.randint(jax.random.fold_in(key, i), (settings.batch,), 0, pool01.shape[0])
  loss, grads = jax.value_and_grad(loss_fn)(p, pool01[idx])
  updates, opt = optax.adam(lr).update(grads, opt, p)
  return (optax.apply_updates(p, updates), opt), loss


def _optimise(module, family, variables, pool01, key, settings, classify, target_class):
  # A Python loop over one jitted step (see mitigation._train: XLA:CPU runs convolutions in
  # a lax.scan body far slower), dispatched without waiting on each other.
  size, channels = pool01.shape[1], pool01.shape[3]
  k_init, k_batches = jax.random.split(key)
  params = init_params(family, k_init, size, channels, settings)
  lr = settings.warp_lr if family == 'warp' else settings.patch_lr
  carry, losses = (params, optax.adam(lr).init(params)), []
  for i in range(settings.steps):
    carry, loss = _step(module, family, settings, classify, carry, variables, pool01,
                        k_batches, i, target_class)
    losses.append(loss)
  return carry[0], jnp.stack(losses)


def search(network, family, pool01, key, settings=Settings(), target_class=None):
  """(parameters, per-step losses) of the trigger of `family` recovered on `pool01`."""
  pool01 = np.asarray(pool01, np.float32)
  if pool01.ndim != 4 or len(pool01) < 2:
    raise UserError(f'reverse: expected at least 2 clean faces (N, H, W, C), got shape '
                    f'{pool01.shape}')
  classify = network.task == 'classification'
  if classify and target_class is None:
    raise UserError('reverse: a classifier needs a target class to search for')
  # The module, not a bound method, is the static key: one compilation serves every run
  # of the same network (a population), whatever its variables.
  params, losses = _optimise(network.module, family, network.variables, jnp.asarray(pool01),
                             key, settings, classify, target_class if classify else 0)
  return jax.device_get(params), np.asarray(losses)


def triggered_outputs(network, family, params, images01, settings=Settings()):
  """Host outputs of `network` on images triggered by recovered parameters."""
  fn = jax.jit(lambda x: apply(family, params, x, settings))
  images01 = np.asarray(images01, np.float32)
  return network.outputs(np.concatenate([np.asarray(fn(images01[i:i + 128]))
                                         for i in range(0, len(images01), 128)]))


def similarity(family, params, true_spec, true_trigger, size, settings=Settings()):
  """Scores how well a recovered trigger matches the planted one.

  How well a recovered trigger matches the planted one, or None where they differ in
  kind: a warp, the cosine of the two displacement fields; a patch, the share of the
  recovered mask's mass inside the BadNets patch."""
  if family == 'warp' and true_spec.kind == 'wanet':
    true = np.asarray(triggers.displacement_field(true_spec, true_trigger)).ravel()
    found = np.asarray(displacement_px(params, size, settings)).ravel()
    return float(true @ found / max(np.linalg.norm(true) * np.linalg.norm(found), 1e-12))
  if family == 'patch' and true_spec.kind == 'badnets':
    mask = np.asarray(jax.nn.sigmoid(params['mask']))[..., 0]
    return float((mask * true_trigger['mask'][..., 0]).sum() / max(mask.sum(), 1e-12))
  return None


def _gaze_result(network, family, params, clean01, clean_out, settings):
  out = triggered_outputs(network, family, params, clean01, settings)
  centre = np.asarray(geometry.vector_to_pitchyaw(
      np.asarray(geometry.pitchyaw_to_vector(out.astype(np.float64))).mean(axis=0)))
  spread, clean_spread = attack.spread_deg(out), attack.spread_deg(clean_out)
  return {'spread_deg': spread, 'clean_spread_deg': clean_spread,
          'spread_ratio': spread / max(clean_spread, 1e-12),
          'recovered_target': [float(v) for v in centre]}, out


def reverse_engineer(network, pool01, clean01, key, settings=Settings(), families=FAMILIES,
                     true_spec=None, true_trigger=None):
  """Every family's recovered trigger on `pool01`, scored on held-out `clean01`.

  Returns:
    (summary dict, {family: params}): the summary has per family its size, score and
    recovered target, the model's `score` (regressor: the lowest spread_ratio; classifier:
    the highest flip_rate, %), the `family` that reached it and its `recovered_target`
    (gaze, radians; or class); with `true_spec`/`true_trigger` also the distance of the
    recovered target to a fixed true target and each family's `similarity`.
  """
  clean01 = np.asarray(clean01, np.float32)
  size = clean01.shape[1]
  classify = network.task == 'classification'
  clean_out = network.outputs(clean01)
  results, found = {}, {}
  for f, family in enumerate(families):
    fkey = jax.random.fold_in(key, f)
    if not classify:
      params, losses = search(network, family, pool01, fkey, settings)
      result, _ = _gaze_result(network, family, params, clean01, clean_out, settings)
    else:
      result, params = _best_class(network, family, pool01, clean01, clean_out, fkey,
                                   settings)
      losses = np.zeros(1)
    result['size'] = float(trigger_size(family, params, size, settings))
    result['final_loss'] = float(losses[-1])
    if true_spec is not None:
      result['similarity'] = similarity(family, params, true_spec, true_trigger, size,
                                        settings)
    results[family], found[family] = result, params
  key_name = 'flip_rate' if classify else 'spread_ratio'
  pick = (max if classify else min)(results, key=lambda fam: results[fam][key_name])
  summary = {'families': results, 'family': pick, 'score': results[pick][key_name],
             'score_name': key_name, 'recovered_target': results[pick]['recovered_target']}
  if classify:  # Flagged on its own, without a clean population (Neural Cleanse's rule):
    # the family whose classes stand out most (a universal patch flips every class alike).
    outlier = max(results, key=lambda fam: results[fam]['anomaly_index'])
    summary.update(anomaly_index=results[outlier]['anomaly_index'], anomaly_family=outlier,
                   anomaly_target=results[outlier]['recovered_target'])
  if true_spec is not None and not classify and true_spec.kind != 'none':
    summary['target_distance_deg'] = float(attack.error_deg(
        np.asarray(summary['recovered_target']), np.asarray(true_spec.target_gaze)))
  return summary, found


def _best_class(network, family, pool01, clean01, clean_out, key, settings):
  """A classifier's search for every class: ({'flip_rate' of the best class, 'per_class',
  'recovered_target', Neural Cleanse's 'anomaly_index' over the classes' flip rates}, that
  class's parameters)."""
  clean_class = np.argmax(clean_out, -1)
  rates, params_by_class = [], []
  for c in range(clean_out.shape[-1]):
    params, _ = search(network, family, pool01, jax.random.fold_in(key, c), settings, c)
    logits = triggered_outputs(network, family, params, clean01, settings)
    others = clean_class != c
    rates.append(float(100.0 * np.mean(np.argmax(logits, -1)[others] == c))
                 if others.any() else 0.0)
    params_by_class.append(params)
  best = int(np.argmax(rates))
  return {'flip_rate': rates[best], 'per_class': rates, 'recovered_target': best,
          'anomaly_index': scores.anomaly_index(rates)}, params_by_class[best]
