"""Many models in one compiled train step: `steps.train_step` vmapped over stacked models.

Each of the M models keeps its own parameters, BatchNorm statistics, optimizer state and
step count, its own batch (data order), PRNG key (poisoning noise, flips) and trigger; only
what is static is shared: the network and optimizer (one `apply_fn` and `tx`), the attack and
task specs, the batch size and flip. So M seeds of one arm train together, and so do the
clean control and a poisoned model when `poisoned` says which models train on the poisoned
batch (the control's rows all stay clean, as with attack.kind 'none').

Model m of the stacked step computes what `steps.p_train_step` computes for it alone, up to
float reassociation: vmap turns its convolutions into grouped ones and its matmuls into
batched ones, whose sums XLA may order differently (tests/test_multi.py). Metrics come back
stacked, (M,) per name; a control's backdoor and noise metrics are 0 (it has no such rows).
"""
import jax
import jax.numpy as jnp

from gaze_jax.training import steps


def stack(trees):
  """Stacks equally shaped pytrees along a new leading model axis.

  Static fields (a TrainState's `apply_fn` and `tx`) are taken from the first tree: the
  models must share the network and optimizer config, which is what makes them static.
  """
  leaves = [jax.tree.leaves(tree) for tree in trees]
  treedef = jax.tree.structure(trees[0])
  if any(len(l) != len(leaves[0]) for l in leaves):
    raise ValueError('stack: the models differ in structure (network or optimizer config)')
  return jax.tree.unflatten(treedef, [jnp.stack(column) for column in zip(*leaves)])


def unstack(tree, index):
  """Model `index` of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)


def train_steps(states, batches, rngs, trigger, classes, poisoned, spec, task, global_batch,
                flip):
  """`steps.train_step` of every model (leading axis of states, batches, rngs, trigger and
  poisoned) on this device's slices of their global batches."""
  def one(state, batch, rng, trigger_, poisoned_):
    return steps.train_step(state, batch, rng, trigger_, classes, spec, task, global_batch,
                            flip, poisoned_)
  return jax.vmap(one)(states, batches, rngs, trigger, poisoned)


# train_steps on all local devices: (stacked states, batches as (M, devices, b, ...), rngs
# (M,), stacked triggers, classes, poisoned (M,) bool, spec, task, global_batch, flip).
p_train_steps = jax.pmap(train_steps, axis_name=steps.AXIS,
                         in_axes=(None, 1, None, None, None, None), out_axes=(None, None),
                         static_broadcasted_argnums=(6, 7, 8, 9))
