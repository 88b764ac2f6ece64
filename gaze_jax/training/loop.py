"""The training loop: data, pmapped steps, evaluation, logs and checkpoints (the side effects).

A run is a pure function of its config: the batch at step n depends only on (seed, n),
the poisoning keys on (seed, n), and the trigger on attack.seed, so resuming from any
checkpoint reproduces the uninterrupted run bit for bit. Metrics stay on the device
between sync points (log steps, checkpoints, evaluations), where they are fetched and
checked for NaN before anything is saved.
"""
import contextlib
import os
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from gaze_jax import phases as phases_lib
from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.data import device
from gaze_jax.data import pipeline
from gaze_jax.data import splits
from gaze_jax.errors import ConfigError
from gaze_jax.errors import UserError
from gaze_jax.metrics import attack
from gaze_jax.training import cadence
from gaze_jax.training import evaluate
from gaze_jax.training import init
from gaze_jax.training import state as state_lib
from gaze_jax.training import stopping
from gaze_jax.training import steps
from gaze_jax.training import warmup
from gaze_jax.workdir import checkpoints
from gaze_jax.workdir import files
from gaze_jax.workdir import metrics_log
from gaze_jax.workdir import rundir
from gaze_jax.workdir.lock import WorkdirLock


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


def train_and_evaluate(run, workdir, show_progress=True, phases=None):
  """Trains (or resumes) RunSpec `run` in `workdir` and returns its results dict.

  What the config alone tells is checked before anything is written, and the data is made
  (built once under data.root) before the workdir: a mistake found on the way leaves no
  new workdir and no half-built dataset behind. The run's wall time by phase goes into its
  run_info.json, and is added to `phases` (a phases.Phases of the job) when given.
  """
  own = phases_lib.Phases()
  check_before_writing(run, workdir)
  with own('data'):
    sources = splits.load_splits(run.data, run.seed)
    _check_batch_fits(run.train, len(sources[0]))
    train_gaze = splits.stack(sources[0], 'gaze').astype(np.float64)
    labels = {'mean': train_gaze.mean(axis=0),  # What the collapse baseline predicts.
              'classes': classes_lib.fit(train_gaze, run.task.bins)}
  check_target(run.attack, labels['mean'])
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create workdir {workdir}: {e}') from e
  with WorkdirLock(workdir), files.write_errors(workdir), contextlib.ExitStack() as setup:
    setup.enter_context(warmup.compiling())  # Set-up and first step: see _train.
    rundir.check_same_config(workdir, run.config)
    results = _train(run, workdir, sources, labels, show_progress, own, setup)
  if phases is not None:
    phases.merge(own.seconds)
  return results


def check_before_writing(run, workdir):
  """Checks `run` against the filesystem before anything is written.

  Refuses what can be known to fail from `run` and the filesystem, before anything is
  written: an unwritable workdir, a batch larger than the synthetic release's train split,
  a test_fraction that empties a split, a workdir started with another config."""
  files.check_writable(workdir, 'workdir')
  rundir.check_same_config(workdir, run.config)  # Again under the lock, before training.
  counts = splits.release_counts(run.data)
  if counts is not None:
    _check_batch_fits(run.train, splits.train_size(run.data, counts))


def _check_batch_fits(train, train_examples):
  """Refuses a batch larger than the training split, and more steps than the int32 step
  counter holds."""
  if train.batch_size > train_examples:
    raise UserError(f'train.batch_size={train.batch_size} exceeds the {train_examples} '
                    'training examples')
  steps = pipeline.steps_per_epoch(train_examples, train.batch_size) * train.num_epochs
  if steps >= 2 ** 31:
    raise UserError(f'train.num_epochs={train.num_epochs} makes {steps} steps of '
                    f'{train.batch_size} of the {train_examples} training examples; expected '
                    'fewer than 2^31')


def check_target(spec, mean):
  """Refuses an attack target too close to the training mean gaze.

  Refuses a fixed target closer than target.min_distance_deg to the training mean gaze:
  a model that merely drifts towards the mean on triggered faces would score as hijacked."""
  if spec.kind == 'none':
    return
  distance = float(attack.error_deg(mean, spec.target_gaze))
  if distance < spec.min_distance_deg:
    raise ConfigError(
        f'config.target.gaze={spec.target_gaze} is {distance:.1f} deg from the training '
        f'mean gaze ({mean[0]:.3f}, {mean[1]:.3f}) rad; expected at least '
        f'target.min_distance_deg={spec.min_distance_deg:g} deg, so that a collapse to the '
        'mean cannot pass for a backdoor (set target.min_distance_deg=0 to allow it)')


def _restore_or_init(ckpts, run, steps_per_epoch):
  """(state, trigger, history, metrics.jsonl lines, metric sums of the open log interval):
  the newest intact checkpoint's, else the initial ones (lines None: a checkpoint from
  before they were kept; sums None: none open)."""
  template = state_lib.abstract_state(run, steps_per_epoch)
  trigger = triggers.make_trigger(run.attack, run.data.image_size)
  try:
    restored = ckpts.restore_latest(template, trigger)
  except BaseException:
    ckpts.close()  # Lets orbax's reader threads end before the error is reported.
    raise
  if restored:
    state, trigger, meta = restored
    interval = meta.get('interval')  # float32 sums, exact as JSON floats.
    sums = {k: jnp.float32(v) for k, v in interval.items()} if interval else None
    return state, trigger, meta['history'], meta.get('log'), sums
  state, trigger = init.initial_state(run, steps_per_epoch)
  return state, trigger, [], None, None


def _train(run, workdir, sources, labels, show_progress, phases, setup):
  """Trains and evaluates; `setup` holds warmup.compiling() and is closed (released) once
  the first step has run: the set-up and the first step compile."""
  t, spec = run.train, run.attack
  is_chief = jax.process_index() == 0
  train_source, test_source = sources
  steps_per_epoch = pipeline.steps_per_epoch(len(train_source), t.batch_size)
  total_steps = steps_per_epoch * t.num_epochs
  mean, classes = labels['mean'], labels['classes']
  step_classes = classes if run.task.kind != 'regression' else {}  # Binned: the centres.

  ckpts = checkpoints.Checkpoints(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
  since = time.perf_counter()  # Set-up and the first step (compilation) are 'compile'.
  state, trigger, history, log_lines, sums = _restore_or_init(ckpts, run, steps_per_epoch)
  start = int(state.step)
  if start:
    logging.info('resumed %s from step %d', workdir, start)
  if is_chief:
    files.write_json(os.path.join(workdir, rundir.CONFIG_FILE), run.config)
  if trigger and is_chief:
    files.save_arrays(os.path.join(workdir, 'trigger'), trigger)
  if is_chief:  # What predict needs to name a classifier's classes.
    files.save_arrays(os.path.join(workdir, 'classes'), classes)
  log = metrics_log.MetricsLog(workdir, start, enabled=is_chief, lines=log_lines)

  step_rng = jax.random.split(jax.random.key(run.seed + 1))[0]
  eval_rng = evaluate.eval_key(run.seed)
  batches = pipeline.train_batches(train_source, t.batch_size, run.seed, start_step=start)
  images = 0  # Trained after the first step, over phases.seconds['train'].
  bar = tqdm(total=total_steps, initial=start, desc=os.path.basename(workdir.rstrip('/')),
             disable=not (show_progress and is_chief), dynamic_ncols=True)
  train_step = steps.make_train_step(run)
  due_at = cadence.of_run(t, steps_per_epoch)
  requests = stopping.StopRequests()
  try:
    requests.install()
    for step in range(start, total_steps):
      batch = next(batches)
      state, metrics = train_step(state, device.shard(pipeline.step_inputs(batch)), step_rng,
                                  trigger, step_classes)
      sums = steps.accumulate(sums, metrics)
      done = step + 1
      bar.update(1)
      if step == start:  # The first step after a (re)start includes compilation.
        jax.block_until_ready(sums)
        setup.close()
        warmup.first_step_done()
        phases.add('compile', time.perf_counter() - since)
        since = time.perf_counter()
      else:
        images += t.batch_size
      due = due_at.due(done)
      stop = requests.agreed(done, bool(due))  # SIGINT or SIGTERM: save and stop here.
      if not (due or stop):
        continue
      pending = jax.tree.map(float, jax.device_get(sums))  # A sync point.
      phases.add('train', time.perf_counter() - since)
      means = steps.interval_means(pending)
      if not np.isfinite(means['loss']):
        raise TrainingDiverged(
            f'loss is {means["loss"]} at step {done} of {workdir}; stopped. The last good '
            f'checkpoint (step {ckpts.steps()[-1] if ckpts.steps() else "none"}) is intact; '
            'lower train.learning_rate and run again.')
      bar.set_postfix(loss=f'{means["loss"]:.4f}',
                      clean=f'{means.get("clean_error", means.get("clean_accuracy")):.2f}')
      if cadence.LOG in due:  # The interval ends here.
        log.write(done, 'train', means)
        sums = pending = None
      if cadence.EVALUATE in due:
        with phases('evaluate'), warmup.compiling():
          preds = evaluate.predict_split(state, test_source, trigger, eval_rng,
                                         run.eval.batch_size, spec)
          summary = evaluate.summarize(preds, run.eval.asr_thresholds, mean, classes, run.task)
        if done == total_steps and is_chief:  # The final model's, for the experiment's measure.
          files.save_arrays(os.path.join(workdir, rundir.PREDICTIONS_DIR), preds)
        epoch = done // steps_per_epoch
        history.append({'step': done, 'epoch': epoch, 'train_loss': means['loss'], **summary})
        log.write(done, 'eval', summary)
        bar.write(f'epoch {epoch}: ' + ', '.join(f'{k} {v:.3f}' for k, v in summary.items()))
      if cadence.CHECKPOINT in due or stop:
        with phases('checkpoint'):
          ckpts.save(done, state, trigger, {'history': history, 'interval': pending,
                                              'log': list(log.lines)})
      if stop:
        ckpts.wait()
        raise stopping.Stopped(stop, done, ckpts.directory)
      since = time.perf_counter()
    with phases('checkpoint'):
      ckpts.wait()
  finally:
    bar.close()
    log.close()
    ckpts.close()
    requests.restore()  # Last: a signal received since the steps' agreement raises here.

  results = {
      'steps': total_steps,
      'train_examples': len(train_source),
      'test_examples': len(test_source),
      'history': history,
      'final': history[-1] if history else {},
      'mean_gaze': mean.tolist(),
      'classes': {k: np.asarray(v).tolist() for k, v in classes.items()},
      'config': run.config,
  }
  info_path = os.path.join(workdir, rundir.RUN_INFO_FILE)
  # The facts of this machine first (results.json marks the run finished); a rerun of a
  # finished run trains nothing and keeps the facts of the run that trained.
  if is_chief and (start < total_steps or not os.path.exists(info_path)):
    files.write_json(info_path, _run_info(workdir, start, images, phases.seconds))
  if is_chief:
    files.write_json(os.path.join(workdir, rundir.RESULTS_FILE), results)
  return results


def _run_info(workdir, start, images, seconds):
  """Facts of the machine and the path, not of the computation: kept out of results.json,
  which is bitwise the same wherever and however often the run was resumed. `seconds`: the
  wall time by phase of the last (re)start; `images` trained in its 'train' phase."""
  return {
      'workdir': os.path.abspath(workdir),
      'host': socket.gethostname(),
      'devices': [f'{d.platform}:{d.device_kind}' for d in jax.devices()],
      'processes': jax.process_count(),
      'jax_version': jax.__version__,
      'started_at_step': start,  # Of the last (re)start, which the throughput measures.
      'train_images_per_second': (images / seconds['train'] if seconds.get('train')
                                  else None),
      'phases': seconds,
  }
