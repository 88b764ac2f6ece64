"""Host batches onto the devices: sharding over local devices, replication, [0, 1] scaling.

Data parallelism is `jax.pmap` over the local devices with the axis AXIS; each device holds
a contiguous slice of the global batch, so `global_rows` gives a row's index in it.
"""
import jax
import jax.numpy as jnp
import numpy as np

AXIS = 'batch'


def shard(batch):
  """Splits host arrays (b, ...) into (local_devices, b // local_devices, ...)."""
  n = jax.local_device_count()
  return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)


def unshard(tree):
  """(local_devices, b, ...) device outputs as host (local_devices * b, ...) arrays."""
  return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), tree)


def replicated_sharding():
  """The placement of a pmapped step's unreplicated outputs: every local device."""
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def replicate(tree):
  """Places a pytree on all local devices the way the pmapped step returns it.

  Without this the first step's input (host values) and output (replicated arrays) differ
  in placement and the step compiles twice.
  """
  return jax.device_put(tree, replicated_sharding())


def to_unit_range(images):
  """uint8 images -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def global_rows(local_batch):
  """Indices in the global batch of this device's rows (inside pmap over AXIS)."""
  return jax.lax.axis_index(AXIS) * local_batch + jnp.arange(local_batch)
