"""Mitigation: remove the backdoor with the defender's clean data, and measure what it cost.

- `finetune`: every weight trained on the clean faces (L1 to the gaze, or cross-entropy to
  its class), BatchNorm statistics updated, optax Adam, one jitted step.
- `prune` (Fine-Pruning, Liu et al., RAID 2018): the last stage's channels ranked by their
  mean activation on the clean faces (the globally pooled post-ReLU output of the last
  block, the network's penultimate features), the least active `ratio` of them pruned by
  zeroing their rows of the head's kernel (which is exactly zeroing those channels, since
  the pooling is linear), then `finetune` with the pruned rows held at zero.
- `unlearn` (Neural Cleanse's unlearning): `finetune` where UNLEARN_SHARE of every batch
  carries the reverse-engineered trigger (reverse.py) with its TRUE label.

`evaluate` gives the held-out metrics before and after (metrics.attack / classification)
and the inputs of BackdoorBench's defence effectiveness rating (scores.effectiveness).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gaze_jax.attacks import poisoning
from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.defences import reverse
from gaze_jax.defences import scores
from gaze_jax.errors import UserError
from gaze_jax.metrics import attack
from gaze_jax.metrics import classification

MITIGATIONS = ('finetune', 'prune', 'unlearn')
STEPS = 300
BATCH = 32
LEARNING_RATE = 1e-4
PRUNE_RATIO = 0.5     # Share of the last stage's channels Fine-Pruning removes.
UNLEARN_SHARE = 0.2   # Share of each unlearning batch that carries the recovered trigger.
ACC_TAU = 5.0         # Degrees: a regressor's clean "accuracy" and ASR threshold for DER.


def _labels(network, gaze, classes):
  gaze = np.asarray(gaze, np.float32)
  if network.task == 'classification':
    return np.asarray(classes_lib.classify(gaze, classes))
  return gaze


def _mask_head(params, head_mask):
  fc = dict(params['fc'], kernel=params['fc']['kernel'] * head_mask[:, None])
  return dict(params, fc=fc)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _step(module, batch, lr, classify, trigger, carry, images, labels, count, key, i,
          trigger_params, head_mask):
  """One fine-tuning step: a batch drawn from the first `count` faces, Adam, the head's
  pruned rows held at zero."""
  tx = optax.adam(lr)
  n_triggered = int(round(UNLEARN_SHARE * batch)) if trigger is not None else 0

  def loss_fn(params, stats, x, y):
    out, new = module.apply({'params': params, 'batch_stats': stats}, x, train=True,
                            mutable=['batch_stats'])
    if classify:
      loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, y))
    else:
      loss = jnp.mean(jnp.abs(out - y))
    return loss, new['batch_stats']

  params, stats, opt = carry
  idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, count)
  x, y = images[idx], labels[idx]
  if n_triggered:  # True labels kept: the trigger must stop mattering.
    x = jnp.concatenate([reverse.apply(trigger[0], trigger_params, x[:n_triggered],
                                       trigger[1]), x[n_triggered:]])
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
  updates, opt = tx.update(grads, opt, params)
  return (_mask_head(optax.apply_updates(params, updates), head_mask), stats, opt), loss


def _train(module, variables, images, labels, count, key, steps, batch, lr, classify, trigger,
           trigger_params, head_mask):
  # A Python loop over one jitted step, not a lax.scan: XLA:CPU runs the convolutions of a
  # loop body far slower than the same step at top level (about 24x here, with the Eigen
  # convolutions run.py selects). The steps are dispatched without waiting on each other.
  params = _mask_head(variables['params'], head_mask)
  carry = (params, variables['batch_stats'], optax.adam(lr).init(params))
  losses = []
  for i in range(steps):
    carry, loss = _step(module, batch, lr, classify, trigger, carry, images, labels, count,
                        key, i, trigger_params, head_mask)
    losses.append(loss)
  return {'params': carry[0], 'batch_stats': carry[1]}, jnp.stack(losses)


def finetune(network, images01, gaze, key, classes=None, steps=STEPS, batch=BATCH,
             lr=LEARNING_RATE, trigger=None, trigger_params=None, head_mask=None, count=None):
  """(fine-tuned Network, per-step losses) on clean faces and their true gaze.

  Batches are drawn from the first `count` faces alone, a traced number: fine-tuning on
  nested subsets of one pool (the defender's fractions), pruned or not, runs one compiled
  step (unlearning, whose trigger is static, another).

  Args:
    network: network.Network.
    images01, gaze: the defender's clean (N, S, S, C) faces in [0, 1] and (N, 2) gaze.
    count: None (all N), or how many of the first faces the defender holds (1..N).
    key: PRNG key of the batches.
    classes: data.classes.fit's classes (the classifier's labels).
    trigger: None, or (family, reverse.Settings) of a recovered trigger that
      UNLEARN_SHARE of each batch carries, with `trigger_params` its parameters.
    head_mask: None, or (F,) 0/1 multipliers held on the head kernel's rows.
  """
  images01 = np.asarray(images01, np.float32)
  if images01.ndim != 4 or len(images01) < 1 or len(gaze) != len(images01):
    raise UserError(f'fine-tuning needs clean faces and their gaze, got {images01.shape} '
                    f'faces and {np.shape(gaze)} labels')
  if steps < 1:
    raise UserError(f'fine-tuning steps: expected at least 1, got {steps}')
  count = len(images01) if count is None else count
  if not 1 <= count <= len(images01):
    raise UserError(f'fine-tuning count: expected 1..{len(images01)} faces, got {count}')
  classify = network.task == 'classification'
  if classify and classes is None:
    raise UserError('fine-tuning a classifier needs its classes')
  features = network.variables['params']['fc']['kernel'].shape[0]
  head_mask = np.ones(features, np.float32) if head_mask is None else head_mask
  variables, losses = _train(network.module, network.variables, jnp.asarray(images01),
                             jnp.asarray(_labels(network, gaze, classes)), jnp.int32(count),
                             key, steps, batch, lr, classify, trigger, trigger_params,
                             jnp.asarray(head_mask, jnp.float32))
  return network.replace(variables), np.asarray(losses)


def channel_ranking(network, images01):
  """Ranks the last stage's channels by their mean activation on clean faces.

  (order, mean activation): the last stage's channels from least to most active on
  the clean faces (stable order), and each channel's mean activation."""
  activation = np.asarray(network.features(images01), np.float64).mean(axis=0)
  return np.argsort(activation, kind='stable'), activation


def prune(network, images01, ratio=PRUNE_RATIO):
  """Prunes the least active channels of the last stage from the head.

  (pruned Network, (F,) 0/1 mask, pruned channel indices): the least active
  ceil(ratio * F) channels cut from the head."""
  if not 0.0 <= ratio < 1.0:
    raise UserError(f'prune ratio: expected a fraction in [0, 1), got {ratio}')
  order, _ = channel_ranking(network, images01)
  pruned = np.sort(order[:int(np.ceil(ratio * len(order)))])
  mask = np.ones(len(order), np.float32)
  mask[pruned] = 0.0
  params = network.variables['params']
  fc = dict(params['fc'], kernel=params['fc']['kernel'] * mask[:, None])
  return network.replace(dict(network.variables, params=dict(params, fc=fc))), mask, pruned


def evaluate(network, clean01, gaze, spec, trigger, mean_gaze=None, classes=None):
  """Measures a network on clean and triggered held-out faces.

  Held-out metrics of `network` on clean faces and the same faces with the run's
  trigger, with 'acc' and 'asr' (%) for the defence effectiveness rating."""
  gaze = np.asarray(gaze, np.float32)
  triggered = np.asarray(triggers.apply_trigger(spec, trigger, jnp.asarray(clean01)))
  targets = np.asarray(poisoning.attack_targets(spec, jnp.asarray(gaze)))
  clean_out, backdoor_out = network.outputs(clean01), network.outputs(triggered)
  if network.task == 'classification':
    out = classification.classifier_summary(clean_out, backdoor_out, None, gaze, targets,
                                            classes)
    return dict(out, acc=out['clean_accuracy'], asr=out['attack_success'])
  out = attack.summarize(clean_out, backdoor_out, None, gaze, targets, (ACC_TAU,), mean_gaze)
  out.pop('noise_error')
  acc = float(100.0 * np.mean(attack.error_deg(clean_out, gaze) <= ACC_TAU))
  return dict(out, acc=acc, asr=out[attack.asr_name(ACC_TAU)])


def before_after(before, after):
  """{'before', 'after', 'der'}: the metrics and BackdoorBench's DER between them."""
  return {'before': before, 'after': after, 'der': scores.effectiveness(before, after)}
