"""Compiling an experiment's models' steps ahead, while its data is built and its first model
trains.

An experiment trains its models one after another, and each compiles its own train and eval
steps (their attack is static) while a core idles: building the data and compiling are
single-threaded. `ahead` compiles the models' steps ahead of time, in a thread, into JAX's
persistent compilation cache, where each model's own first step then finds them: the same
function of the same shapes lowers to the same program. The first model's come first,
compiled while its data is built; the others' once it has taken its first step. The main
thread's own compilations (a model's set-up and first step, an evaluation, the experiment's
measure, `release` of compiled programs after each seed) hold a lock that the thread takes for
each model's steps, so that the two never compile, load or drop programs at once. Only the
trigger is computed (the state is its shapes, `state.abstract_state`), so no model work or
collective runs out of order.

A compiled program stays loaded in the process until `release` (JAX keeps it), so the thread
compiles one seed ahead, no further: the seed being trained and the next. Compiling every
seed's ahead had kept over a thousand memory maps loaded per eval step, until a ten-seed
population crashed, most likely at the kernel's limit of 65,530 (steps.release_compiled).

Nothing is done without a persistent cache, with several processes (each would compile
alone), on the real release (its size, hence the schedule, is known only once it is read),
or for a task whose train step takes the data's classes (their shapes come from the data).
A compilation that fails here is left to the model's own step to report.
"""
import contextlib
import threading

import jax
from absl import logging

from gaze_jax.attacks import triggers
from gaze_jax.data import device
from gaze_jax.data import pipeline
from gaze_jax.data import splits
from gaze_jax.training import evaluate
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps


# One compilation (or load or release of programs) at a time while `ahead` runs: the thread's
# never overlap the main thread's, nor its release of compiled steps between seeds.
_XLA = threading.RLock()
_FIRST_STEP = threading.Event()  # A model's first step is done: the thread may go on.
_STOP = threading.Event()
_released = threading.Semaphore(0)  # One per seed released; `ahead` makes it anew.


@contextlib.contextmanager
def ahead(seeds):
  """Compiles the steps of the models of `seeds` in a thread while the block runs.

  `seeds`: per seed, its models as (RunSpec, whether it still trains) pairs, in the order
  they train. The thread compiles the first model's steps, waits until a model's first step
  is done (`first_step_done`), then the others' of the first two seeds, and each later
  seed's once the seed two before it is released (`release`), each model's while holding the
  lock of `compiling`. The block's end stops the thread after the compilation under way and
  waits for it, error or not, so that none is left running as the process exits."""
  global _released  # pylint: disable=global-statement
  thread = None
  _FIRST_STEP.clear()
  _STOP.clear()
  _released = threading.Semaphore(0)
  seeds = [list(models) for models in seeds]
  if jax.config.jax_compilation_cache_dir and jax.process_count() == 1 and any(seeds):
    thread = threading.Thread(target=_compile_all, args=(seeds, _released), name='warmup',
                              daemon=True)
    thread.start()
  try:
    yield
  finally:
    if thread:
      _STOP.set()
      _FIRST_STEP.set()
      _released.release()
      thread.join()


def release():
  """Drops every compiled program (steps.release_compiled) under the lock, after a seed.

  The thread of `ahead` may then compile the seed after the next."""
  with _XLA:
    steps.release_compiled()
  _released.release()


def compiling():
  """The lock of the sections that compile, load or release programs.

  The main thread holds it for a model's set-up and first step, an evaluation, the
  experiment's measure and its release of a seed's compiled steps; the thread for each
  model's steps."""
  return _XLA


def first_step_done():
  """Called by the training loop once a model's first step has run (compiled)."""
  _FIRST_STEP.set()


def _compile_all(seeds, released):
  count = 0
  for seed, models in enumerate(seeds):
    if seed >= 2:
      released.acquire()  # The seed two before is done and its programs dropped.
    if _STOP.is_set():
      return
    for run, trains in models:
      if count == 1:
        _FIRST_STEP.wait()
      count += 1
      if _STOP.is_set():
        return
      try:
        with _XLA:
          compile_steps(run, trains)
      except Exception:  # pylint: disable=broad-except
        logging.debug('compiling %s ahead failed', run.config, exc_info=True)


def compile_steps(run, trains=True):
  """Compiles RunSpec `run`'s eval step and, if it `trains` (a regressor), its train step.

  Returns False, compiling nothing, if their shapes cannot be known before its data is
  read."""
  counts = splits.release_counts(run.data)
  if counts is None:
    return False
  steps_per_epoch = pipeline.steps_per_epoch(splits.train_size(run.data, counts),
                                             run.train.batch_size)
  size = run.data.image_size
  state = state_lib.abstract_state(run, steps_per_epoch)  # Shapes only: nothing computed.
  trigger = triggers.make_trigger(run.attack, size)
  if trains and run.task.kind == 'regression':
    batch = device.shard(pipeline.step_template(run.train.batch_size, size))
    step_rng = jax.random.split(jax.random.key(0))[0]
    steps.make_train_step(run).lower(state, batch, step_rng, trigger, {}).compile()
  batch = device.shard(pipeline.step_template(run.eval.batch_size, size))
  steps.make_eval_step(run.attack).lower(steps.inference_state(state), batch,
                                         evaluate.eval_key(run.seed), trigger).compile()
  return True
