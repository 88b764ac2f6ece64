"""The train state: model variables, the optimizer and its schedule (no I/O).

`initial_variables` initialises a model; `abstract_state` gives the same state's shapes and
dtypes without computing anything (`jax.eval_shape`), placed as the pmapped step returns it,
which is what restoring a checkpoint needs.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from gaze_jax.data import device
from gaze_jax.models import resnet


class TrainState(train_state.TrainState):
  """Flax's train state (step, params, optimizer) with the model's batch statistics."""
  batch_stats: Any


def make_schedule(t, steps_per_epoch):
  """The learning-rate schedule of TrainSpec `t`: linear warm-up, then the decay.

  'wsd' (warm-up, stable, decay) keeps the peak rate until the last `decay_fraction` of the
  steps, so that a longer run is the shorter one continued at the same rate, not a different
  curve: training length and learning rate can be told apart."""
  total = t.num_epochs * steps_per_epoch
  warmup = int(t.warmup_epochs * steps_per_epoch)
  lr = t.learning_rate
  if t.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(lr, max(total - warmup, 1))
  else:  # 'wsd': flat until the last decay_fraction of all steps (0: none), then linear.
    decay_steps = int(round(t.decay_fraction * total))
    stable = max(total - warmup - decay_steps, 0)
    decay = optax.join_schedules([optax.constant_schedule(lr),
                                  optax.linear_schedule(lr, 0.0, max(decay_steps, 1))], [stable])
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(t, steps_per_epoch):
  """Adam(W) or SGD-momentum with decoupled weight decay, on TrainSpec `t`'s schedule."""
  schedule = make_schedule(t, steps_per_epoch)
  if t.optimizer == 'adam':
    return optax.adamw(schedule, weight_decay=t.weight_decay)
  return optax.chain(optax.add_decayed_weights(t.weight_decay),
                     optax.sgd(schedule, momentum=t.momentum))


def model(run, axis_name=None):
  """The network of RunSpec `run`: its model spec with its task's outputs."""
  return _network(run.model, run.task.outputs(), axis_name)


@functools.lru_cache(maxsize=None)
def _network(model_spec, outputs, axis_name):
  """One module per network: the states built on it share their `apply_fn` (a bound method
  is equal only on the same module), so a step traced for one state serves them all."""
  return resnet.from_spec(model_spec, outputs, axis_name)


def initial_variables(run, rng):
  """Freshly initialised variables (params, batch_stats) of RunSpec `run`'s network."""
  return _jitted_init(run.model, run.task.outputs(), run.data.image_size)(rng)


@functools.lru_cache(maxsize=None)
def _jitted_init(model_spec, outputs, size):
  """The compiled initialiser of one network and input size: compiled once per process,
  so the models of an experiment (and the tests) share it (it took seconds per model)."""
  init = functools.partial(resnet.from_spec(model_spec, outputs).init, train=False)
  return jax.jit(lambda rng: init(rng, jnp.zeros((1, size, size, 3))))


def create(run, variables, steps_per_epoch):
  """The step-0 TrainState of RunSpec `run` from model variables, on every local device."""
  state = TrainState.create(apply_fn=model(run, device.AXIS).apply,
                            params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=make_optimizer(run.train, steps_per_epoch))
  return device.replicate(state)


def abstract_state(run, steps_per_epoch):
  """`create`'s TrainState as shapes and dtypes (nothing computed), placed like it."""
  def fresh():
    variables = initial_variables(run, jax.random.key(run.seed))
    return create(run, variables, steps_per_epoch)
  sharding = device.replicated_sharding()
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      jax.eval_shape(fresh))
