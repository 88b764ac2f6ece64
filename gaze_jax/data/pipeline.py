"""Host input pipeline: random-access sources -> grain batches of uint8 images and labels.

`train_batches` and `eval_batches` turn a source (data/splits.py) into this host's share of
each global batch. Images stay uint8 on the host; scaling happens on the device.

Training order is a pure function of (seed, step): epoch e is grain's seeded
permutation number e of the training set, cut into global batches of
`global_batch_size` (the remainder of each epoch is dropped), and host i takes rows
[i * b, (i + 1) * b) of each, b = global_batch_size // process_count. Resuming at a
step therefore needs nothing but the step.
"""
import sys

import grain
import jax
import numpy as np

TRAIN_KEYS = ('image', 'gaze', 'head_pose')
EVAL_KEYS = TRAIN_KEYS + ('person_id', 'index')
STEP_KEYS = ('image', 'gaze')  # What the compiled train and eval steps read of a batch.
# Row reads (array_record lookup + zlib) run in threads; zlib releases the GIL.
READ_OPTIONS = grain.ReadOptions(num_threads=4, prefetch_buffer_size=256)


def steps_per_epoch(num_examples, global_batch_size):
  """Whole global batches per epoch (the remainder is dropped)."""
  return num_examples // global_batch_size


def step_inputs(batch):
  """The part of a batch the compiled steps take (STEP_KEYS).

  One signature for train and eval batches, which `step_template` can stand for before any
  data exists."""
  return {k: batch[k] for k in STEP_KEYS}


def step_template(rows, image_size):
  """Zeros shaped and typed as `step_inputs` of a batch of `rows` faces of `image_size`.

  What compiling a step ahead of its data needs (training/warmup.py)."""
  return {'image': np.zeros((rows, image_size, image_size, 3), np.uint8),
          'gaze': np.zeros((rows, 2), np.float32)}


def _host_share(global_batch_size, process_index, process_count):
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f'batch size {global_batch_size} is not divisible by the '
                     f'{process_count} processes')
  return process_index, global_batch_size // process_count


def _select(keys):
  return lambda example: {k: np.asarray(example[k]) for k in keys}


def train_batches(source, global_batch_size, seed, start_step=0, process_index=None,
                  process_count=None):
  """Infinite iterator of this host's training batches from step start_step on.

  Each batch is a dict: image uint8 (b, H, W, 3), gaze and head_pose float32 (b, 2),
  b = global_batch_size // process_count. The iterator also has grain's
  get_state()/set_state(), relative to start_step.
  """
  process_index, local = _host_share(global_batch_size, process_index, process_count)
  num_examples = len(source)
  steps = steps_per_epoch(num_examples, global_batch_size)
  if steps == 0:
    raise ValueError(f'{num_examples} training examples are fewer than one batch of '
                     f'{global_batch_size}')
  # Index e * n + j of `shuffled` is row j of epoch e's permutation. grain seeds
  # epoch e with seed + e, so the seed is hashed first: runs with seeds s and s + 1
  # must not share permutations.
  grain_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
  shuffled = grain.MapDataset.source(source).shuffle(seed=grain_seed)

  def row(m):  # This host's m-th row from step 0 -> its example.
    step, r = divmod(m, local)
    epoch, batch = divmod(step, steps)
    return shuffled[epoch * num_examples + batch * global_batch_size
                    + process_index * local + r]

  rows = grain.MapDataset.range(start_step * local, sys.maxsize).map(row)
  return iter(rows.map(_select(TRAIN_KEYS)).to_iter_dataset(READ_OPTIONS).batch(local))


def eval_batches(source, batch_size, process_index=None, process_count=None):
  """This host's (batch, mask) pairs over the whole source, in order.

  batch_size is global, as in train_batches; every host yields the same number of
  batches. Rows past the end of the source are zeros with mask False. Batches have
  EVAL_KEYS (train's keys plus person_id and index).
  """
  process_index, local = _host_share(batch_size, process_index, process_count)
  num_examples = len(source)
  num_batches = -(-num_examples // batch_size)
  select = _select(EVAL_KEYS)
  padding = {k: np.zeros_like(v) for k, v in select(source[0]).items()}

  def row(m):  # This host's m-th row -> (example or padding, mask).
    step, r = divmod(m, local)
    i = step * batch_size + process_index * local + r
    return (select(source[i]), True) if i < num_examples else (padding, False)

  rows = grain.MapDataset.range(num_batches * local).map(row)
  return iter(rows.to_iter_dataset(READ_OPTIONS).batch(local))
