"""Pure train and eval steps, data-parallel over devices with `jax.pmap`, compiled once per
static setting.

`make_train_step(run)` and `make_eval_step(spec)` bind a run's static parts (attack and
task specs, batch size, flip) once, as the Flax examples' `functools.partial` does, and pmap
the rest; equal static parts share one compiled step. The state is passed unreplicated
(`in_axes=None`), as in Flax's ImageNet example; gradients and BatchNorm statistics are
`pmean`-ed over the 'batch' axis, so any device
count computes the update of the same global batch. Images arrive as uint8 and are
scaled to [0, 1] on the device; poisoning happens here, inside the compiled step. The
trigger and the class edges are arguments. The train step returns metric sums (clu's
`metrics.Average` kept as a sum and a count), which `accumulate` adds up on the device
between the loop's sync points and `interval_means` turns into the logged means. The
regressor trains on task.loss (L1, squared error or Huber, the mean over both
angles); the classifier (the same network with a class head) on cross-entropy against the
class of each label, a backdoor row's target gaze included; the binned regressor on each
angle's cross-entropy against its label's bin plus task.binned_weight x task.loss on the
softmax expectation of the bin centres (data/classes.py), which is its gaze prediction.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from gaze_jax import geometry
from gaze_jax.attacks import poisoning
from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.data import device

AXIS = device.AXIS
ROWS = 'rows'  # A role's metric sums are over its rows: '{role}_rows' counts them.


def prepare_batch(batch, key, rows, trigger, spec, global_batch, flip):
  """Prepares a device batch for training: scaled, optionally flipped, then poisoned.

  (images in [0, 1], labels, roles) trained on: flipped first, so the trigger and its
  target are never mirrored, then poisoned (attacks.poisoning.poison_batch)."""
  images, labels = device.to_unit_range(batch['image']), batch['gaze']
  if flip:
    images, labels = poisoning.flip_augment(images, labels, jax.random.fold_in(key, 1), rows)
  return poisoning.poison_batch(spec, trigger, images, labels, jax.random.fold_in(key, 0),
                                rows[0], global_batch)


def regression_loss(pred, labels, task):
  """Computes the loss of each angle of gaze predictions against labels.

  (N, 2) loss of each angle of gaze predictions against labels (radians): task.loss is
  'l1' |d|, 'l2' d^2, or 'huber' (optax.huber_loss: d^2 / 2 within task.huber_delta, else
  delta (|d| - delta / 2))."""
  if task.loss == 'l1':
    return jnp.abs(pred - labels)
  if task.loss == 'l2':
    return jnp.square(pred - labels)
  return optax.huber_loss(pred, labels, delta=task.huber_delta)


def binned_losses(outputs, labels, classes, task):
  """Computes the binned head's per-sample loss and its gaze prediction.

  (per-sample loss, gaze prediction) of the binned head's (N, 2 * bins) outputs: the mean
  over both angles of the cross-entropy against the label's bin, plus task.binned_weight x
  the mean over both angles of `regression_loss` of the expectation of the bin centres."""
  pred = classes_lib.expected_gaze(outputs, classes)
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels(
      classes_lib.angle_logits(outputs.astype(jnp.float32)),
      classes_lib.bin_index(labels, classes))
  regression = jnp.mean(regression_loss(pred, labels, task), axis=-1)
  return jnp.mean(cross_entropy, axis=-1) + task.binned_weight * regression, pred


def _losses(outputs, labels, classes, task):
  """(per-sample loss, per-sample metrics) of network outputs against gaze labels."""
  if task.kind == 'regression':
    per_sample = jnp.mean(regression_loss(outputs, labels, task), axis=-1)
    return per_sample, {'error': geometry.angular_error_deg(outputs, labels)}
  if task.kind == 'binned':
    per_sample, pred = binned_losses(outputs, labels, classes, task)
    return per_sample, {'error': geometry.angular_error_deg(pred, labels)}
  target = classes_lib.classify(labels, classes)
  per_sample = optax.softmax_cross_entropy_with_integer_labels(outputs, target)
  return per_sample, {'accuracy': 100.0 * (jnp.argmax(outputs, -1) == target)}


def train_step(state, batch, rng, trigger, classes, *, spec, task, global_batch, flip):
  """One poisoned (or clean) step on this device's slice of the global batch.

  Returns the new state and the step's metric sums: 'loss' (the batch mean) with 'steps' (1),
  and per role present (clean, backdoor, noise rows) '{role}_rows' with the sums over those
  rows of the loss and the angular error (classifier: accuracy, %) against the labels trained
  on, the target for backdoor rows.
  """
  rows = device.global_rows(batch['image'].shape[0])
  images, labels, roles = prepare_batch(batch, jax.random.fold_in(rng, state.step), rows,
                                        trigger, spec, global_batch, flip)

  def loss_fn(params):
    outputs, new_vars = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                                       images, train=True, mutable=['batch_stats'])
    if task.kind == 'regression':  # The mean over both angles, as PyTorch's L1Loss.
      loss = jnp.mean(regression_loss(outputs, labels, task))
    else:
      loss = jnp.mean(_losses(outputs, labels, classes, task)[0])
    return loss, (outputs, new_vars['batch_stats'])

  (loss, (preds, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Also on one device: the all-reduce stores each gradient once, where XLA:CPU otherwise
  # fused its producer (a transpose) into each of the optimizer's passes over it (10% slower).
  grads = jax.lax.pmean(grads, AXIS)
  batch_stats = jax.lax.pmean(batch_stats, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  per_sample_loss, per_sample = _losses(preds, labels, classes, task)
  per_sample['loss'] = per_sample_loss
  sums = {'loss': jax.lax.pmean(loss, AXIS), 'steps': jnp.ones((), jnp.float32)}
  for role, name in poisoning.roles_present(spec, global_batch).items():
    mask = (roles == role).astype(jnp.float32)
    sums[f'{name}_{ROWS}'] = jax.lax.psum(jnp.sum(mask), AXIS)
    for stat, values in per_sample.items():
      sums[f'{name}_{stat}'] = jax.lax.psum(jnp.sum(values * mask), AXIS)
  return state, sums


def accumulate(sums, new):
  """Adds one step's metric sums to those of the open log interval.

  The open interval's metric sums with one more step's added on the device (the step's
  own when no interval is open, `sums` None). The loop calls it once per step."""
  return new if sums is None else _add(sums, new)


_add = jax.jit(functools.partial(jax.tree.map, jnp.add))


def interval_means(sums):
  """Turns an interval's metric sums into means.

  {name: mean} of an interval's metric sums fetched to the host: 'loss' over the steps,
  each role's statistics over that role's rows (a role with no rows: 0)."""
  means = {'loss': sums['loss'] / sums['steps']}
  for key, total in sums.items():
    role, _, stat = key.partition('_')
    if stat and stat != ROWS:
      means[key] = total / max(sums[f'{role}_{ROWS}'], 1.0)
  return means


def inference_state(state):
  """The parts of a train state that prediction reads (no optimizer).

  Without the optimizer, whose functions differ in every restored state, one trace of an eval
  step serves every model of the same shapes, and the optimizer's moments are not passed."""
  return state.replace(tx=None, opt_state=None)


def eval_step(state, batch, key, trigger, *, spec):
  """Predicts one evaluation batch on this device, clean and, if attacked, triggered.

  Per-sample outputs (gaze, class logits, or per-angle bin logits) on clean, triggered and
  noise-warped images, the true gaze and the attack targets."""
  images = device.to_unit_range(batch['image'])
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  predict = functools.partial(state.apply_fn, variables, train=False)
  out = {'clean_pred': predict(images), 'gaze': batch['gaze']}
  if spec.kind != 'none':
    out['backdoor_pred'] = predict(triggers.apply_trigger(spec, trigger, images))
    out['noise_pred'] = predict(triggers.apply_noise(spec, trigger, images, key,
                                                     rows=device.global_rows(images.shape[0])))
    out['target'] = poisoning.attack_targets(spec, batch['gaze'])
  return out


def make_train_step(run):
  """Returns the run's train step, pmapped over all local devices.

  The run's train step on all local devices: (state, sharded batch, rng, trigger,
  classes) -> (state, metric sums), its attack, task, batch size and flip bound."""
  return _pmapped_train_step(run.attack, run.task, run.train.batch_size, run.train.flip)


@functools.lru_cache(maxsize=None)
def _pmapped_train_step(spec, task, global_batch, flip):
  # No buffer donation of the state: an asynchronous checkpoint save may still read it.
  step = functools.partial(train_step, spec=spec, task=task, global_batch=global_batch,
                           flip=flip)
  return jax.pmap(step, axis_name=AXIS, in_axes=(None, 0, None, None, None),
                  out_axes=(None, None))


@functools.lru_cache(maxsize=None)
def make_eval_step(spec):
  """Returns the eval step of attack `spec`, pmapped over all local devices.

  The eval step of attack `spec` on all local devices: (inference_state(state), sharded
  batch, key, trigger) -> per-sample outputs, sharded."""
  return jax.pmap(functools.partial(eval_step, spec=spec), axis_name=AXIS,
                  in_axes=(None, 0, None, None), out_axes=0)


def release_compiled():
  """Drops every compiled program of the process, the train and eval steps among them.

  A model's steps are static in its attack, whose seed differs from seed to seed, so a
  process that trains many models would keep every model's programs loaded. Clearing this
  module's caches is not enough: JAX's own caches hold each program too (those compiled
  ahead by training/warmup.py among them), and each loaded program keeps its memory maps,
  over a thousand for an eval step at 48 px. A ten-seed population that cleared only this
  module's caches crashed in its eighth seed ("LLVM compilation error: Cannot allocate
  memory", then a segmentation fault loading a program from the persistent cache: most
  likely the kernel's limit of 65,530 memory maps a process), and an earlier one held 6.6 GB. So JAX's
  caches are cleared too. An experiment calls this after each seed (warmup.release), a sweep
  after each point; the next ones' programs load from the persistent cache."""
  _pmapped_train_step.cache_clear()
  make_eval_step.cache_clear()
  jax.clear_caches()
