"""Pure train and eval steps, data-parallel over devices with `jax.pmap`.

The state is passed unreplicated (`in_axes=None`), as in Flax's ImageNet example;
gradients and BatchNorm statistics are `pmean`-ed over the 'batch' axis, so any device
count computes the update of the same global batch. Images arrive as uint8 and are
scaled to [0, 1] on the device; poisoning happens here, inside the compiled step.
"""
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from gaze_jax import gaze
from gaze_jax import poisoning
from gaze_jax import triggers
from gaze_jax.model import ResNet18Gaze

AXIS = 'batch'


class TrainState(train_state.TrainState):
  batch_stats: Any


def make_schedule(t, steps_per_epoch):
  """The learning-rate schedule of config.train `t`: linear warm-up, then the decay."""
  total = t.num_epochs * steps_per_epoch
  warmup = int(t.warmup_epochs * steps_per_epoch)
  lr = t.learning_rate
  if t.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(lr, max(total - warmup, 1))
  elif t.schedule == 'step':
    decay = optax.piecewise_constant_schedule(
        lr, {int(e * steps_per_epoch) - warmup: 0.1 for e in t.step_epochs})
  elif t.schedule == 'exponential':
    decay = optax.exponential_decay(lr, steps_per_epoch, t.decay_rate)
  else:
    decay = optax.constant_schedule(lr)
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(t, steps_per_epoch):
  """Adam(W) or SGD-momentum with decoupled weight decay, on the configured schedule."""
  schedule = make_schedule(t, steps_per_epoch)
  if t.optimizer == 'adam':
    return optax.adamw(schedule, weight_decay=t.weight_decay)
  return optax.chain(optax.add_decayed_weights(t.weight_decay),
                     optax.sgd(schedule, momentum=t.momentum))


def make_model(config, axis_name=AXIS):
  return ResNet18Gaze(dtype=jnp.dtype(config.model.dtype), conv_impl=config.model.conv_impl,
                      bn_axis_name=axis_name)


def init_variables(config, rng):
  """Freshly initialised model variables (params and batch_stats) for the config's image size."""
  size = config.data.image_size
  init = jax.jit(functools.partial(make_model(config, axis_name=None).init, train=False))
  return init(rng, jnp.zeros((1, size, size, 3)))


def create_train_state(config, variables, steps_per_epoch):
  """A TrainState from model variables, with the config's optimizer."""
  return TrainState.create(apply_fn=make_model(config).apply, params=variables['params'],
                           batch_stats=variables['batch_stats'],
                           tx=make_optimizer(config.train, steps_per_epoch))


def initial_state(config, steps_per_epoch):
  """The step-0 TrainState and the run's trigger.

  `model.init_from` may name torchvision ResNet-18 weights (.safetensors/.pth) or a run
  directory, whose newest intact checkpoint gives the model variables (fine-tuning).
  """
  variables = init_variables(config, jax.random.key(config.seed))
  source = config.model.init_from
  if source and os.path.isdir(source):
    from gaze_jax import runs  # pylint: disable=g-import-not-at-top
    state, _ = runs.restore(source)
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
  elif source:
    from gaze_jax import pretrained  # pylint: disable=g-import-not-at-top
    variables = pretrained.init_variables_from(source, variables)
  spec = poisoning.AttackSpec.from_config(config)
  trigger = triggers.make_trigger(spec, config.data.image_size)
  return replicate(create_train_state(config, variables, steps_per_epoch)), trigger


def replicate(tree):
  """Places a pytree on all local devices the way the pmapped step returns it.

  Without this the first step's input (host values) and output (replicated arrays) differ
  in placement and the step compiles twice.
  """
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (AXIS,))
  return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def to_unit_range(images):
  return images.astype(jnp.float32) / 255.0


def global_rows(local_batch):
  """Indices in the global batch of this device's rows (devices hold contiguous slices)."""
  return jax.lax.axis_index(AXIS) * local_batch + jnp.arange(local_batch)


def train_step(state, batch, rng, trigger, *, spec, global_batch, flip):
  """One poisoned (or clean) L1 step on this device's slice of the global batch."""
  offset = global_rows(batch['image'].shape[0])[0]
  key = jax.random.fold_in(rng, state.step)
  images, labels, roles = poisoning.poison_batch(
      spec, trigger, to_unit_range(batch['image']), batch['gaze'],
      jax.random.fold_in(key, 0), offset, global_batch)
  if flip:
    images, labels = poisoning.flip_augment(images, labels, jax.random.fold_in(key, 1),
                                            global_rows(images.shape[0]))

  def loss_fn(params):
    preds, new_vars = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                                     images, train=True, mutable=['batch_stats'])
    return jnp.mean(jnp.abs(preds - labels)), (preds, new_vars['batch_stats'])

  (loss, (preds, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  batch_stats = jax.lax.pmean(batch_stats, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  errors = gaze.angular_error_deg(preds, labels)
  clean = (roles == 0).astype(jnp.float32)
  metrics = {
      'loss': jax.lax.pmean(loss, AXIS),
      'train_error': jax.lax.psum(jnp.sum(errors * clean), AXIS) /
                     jnp.maximum(jax.lax.psum(jnp.sum(clean), AXIS), 1.0),
  }
  return state, metrics


def eval_step(state, batch, key, trigger, *, spec):
  """Per-sample predictions on clean, triggered and noise-warped images, and attack targets."""
  images = to_unit_range(batch['image'])
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  predict = functools.partial(state.apply_fn, variables, train=False)
  out = {'clean_pred': predict(images), 'gaze': batch['gaze']}
  if spec.kind != 'none':
    out['backdoor_pred'] = predict(triggers.apply_trigger(spec, trigger, images))
    out['noise_pred'] = predict(triggers.apply_noise(spec, trigger, images, key,
                                                     rows=global_rows(images.shape[0])))
    out['target'] = poisoning.attack_targets(spec, batch['gaze'])
  return out


def pmapped_train_step(spec, global_batch, flip):
  """train_step compiled for all local devices: (state, sharded batch, rng, trigger)."""
  step = functools.partial(train_step, spec=spec, global_batch=global_batch, flip=flip)
  # No buffer donation: an asynchronous checkpoint save may still be reading the old state.
  return jax.pmap(step, axis_name=AXIS, in_axes=(None, 0, None, None), out_axes=(None, None))


def pmapped_eval_step(spec):
  """eval_step compiled for all local devices: (state, sharded batch, key, trigger)."""
  return jax.pmap(functools.partial(eval_step, spec=spec), axis_name=AXIS,
                  in_axes=(None, 0, None, None), out_axes=0)


def shard(batch):
  """Splits host arrays (b, ...) into (local_devices, b // local_devices, ...)."""
  n = jax.local_device_count()
  return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)
