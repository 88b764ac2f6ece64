"""Many models in one compiled train step: `steps.train_step` of each, side by side.

Each of the M models keeps everything of its own: parameters, BatchNorm statistics,
optimizer state and step count, batch (data order), PRNG key (poisoning noise, flips),
trigger and attack spec, so the clean control (attack.kind 'none') and poisoned models, or
several seeds, train together. They share the network and optimizer config (one compiled
program), the task, the batch size and flip.

Each model is computed by the same operations as `steps.p_train_step` computes it alone, so
its results equal the separate step's (tests/test_multi.py); one program lets XLA run one
model's operations while another's leave cores idle. `jax.vmap` over stacked models was
slower on XLA:CPU (2 models at 0.58x of two separate steps on one core): it turns every
convolution into a grouped one and every matmul into a batched one.
"""
import jax

from gaze_jax.training import steps


def train_steps(states, batches, rngs, triggers, classes, specs, task, global_batch, flip):
  """`steps.train_step` of every model: tuples of states, this device's batch slices, keys,
  triggers and (static) attack specs, one entry per model; returns (states, metrics)."""
  outs = [steps.train_step(state, batch, rng, trigger, classes, spec, task, global_batch, flip)
          for state, batch, rng, trigger, spec in zip(states, batches, rngs, triggers, specs)]
  return tuple(out[0] for out in outs), tuple(out[1] for out in outs)


# train_steps on all local devices: (states, sharded batches, rngs, triggers, classes, specs,
# task, global_batch, flip), the first four and specs tuples with one entry per model.
p_train_steps = jax.pmap(train_steps, axis_name=steps.AXIS,
                         in_axes=(None, 0, None, None, None), out_axes=(None, None),
                         static_broadcasted_argnums=(5, 6, 7, 8))
