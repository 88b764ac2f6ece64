"""The training loop: data, pmapped steps, evaluation, logs and checkpoints (the side effects).

A run is a pure function of its config: the batch at step n depends only on (seed, n),
the poisoning keys on (seed, n), and the trigger on attack.seed, so resuming from any
checkpoint reproduces the uninterrupted run bit for bit. Metrics stay on the device
between sync points (log steps, checkpoints, evaluations), where they are fetched and
checked for NaN before anything is saved.
"""
import os
import time

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.data import device
from gaze_jax.data import pipeline
from gaze_jax.data import splits
from gaze_jax.errors import ConfigError
from gaze_jax.errors import UserError
from gaze_jax.metrics import attack
from gaze_jax.training import evaluate
from gaze_jax.training import init
from gaze_jax.training import state as state_lib
from gaze_jax.training import steps
from gaze_jax.workdir import checkpoints
from gaze_jax.workdir import files
from gaze_jax.workdir import metrics_log
from gaze_jax.workdir import rundir
from gaze_jax.workdir.lock import WorkdirLock


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


def train_and_evaluate(run, workdir, show_progress=True):
  """Trains (or resumes) RunSpec `run` in `workdir` and returns its results dict."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create workdir {workdir}: {e}') from e
  with WorkdirLock(workdir):
    rundir.check_same_config(workdir, run.config)
    return _train(run, workdir, show_progress)


def check_target(spec, mean):
  """Refuses a fixed target closer than target.min_distance_deg to the training mean gaze:
  a model that merely drifts towards the mean on triggered faces would score as hijacked."""
  if spec.kind == 'none' or spec.target_mode != 'fixed':
    return
  distance = float(attack.error_deg(mean, spec.target_gaze))
  if distance < spec.min_distance_deg:
    raise ConfigError(
        f'config.target.gaze={spec.target_gaze} is {distance:.1f} deg from the training '
        f'mean gaze ({mean[0]:.3f}, {mean[1]:.3f}) rad; expected at least '
        f'target.min_distance_deg={spec.min_distance_deg:g} deg, so that a collapse to the '
        'mean cannot pass for a backdoor (set target.min_distance_deg=0 to allow it)')


def _restore_or_init(ckpts, run, steps_per_epoch):
  """(state, trigger, history): the newest intact checkpoint's, else the initial ones."""
  template = state_lib.abstract_state(run, steps_per_epoch)
  trigger = triggers.make_trigger(run.attack, run.data.image_size)
  try:
    restored = ckpts.restore_latest(template, trigger)
  except BaseException:
    ckpts.close()  # Lets orbax's reader threads end before the error is reported.
    raise
  if restored:
    state, trigger, meta = restored
    return state, trigger, meta['history']
  state, trigger = init.initial_state(run, steps_per_epoch)
  return state, trigger, []


def _train(run, workdir, show_progress):
  t, spec = run.train, run.attack
  is_chief = jax.process_index() == 0
  train_source, test_source = splits.load_splits(run.data, run.seed)
  steps_per_epoch = pipeline.steps_per_epoch(len(train_source), t.batch_size)
  if steps_per_epoch == 0:
    raise UserError(f'train.batch_size={t.batch_size} exceeds the {len(train_source)} '
                    'training examples')
  total_steps = steps_per_epoch * t.num_epochs
  train_gaze = splits.stack(train_source, 'gaze').astype(np.float64)
  mean, classes = train_gaze.mean(axis=0), classes_lib.fit(train_gaze, run.task.bins)
  check_target(spec, mean)
  step_classes = classes if run.task.kind == 'classification' else {}

  ckpts = checkpoints.Checkpoints(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
  state, trigger, history = _restore_or_init(ckpts, run, steps_per_epoch)
  start = int(state.step)
  if start:
    logging.info('resumed %s from step %d', workdir, start)
  if is_chief:
    files.write_json(os.path.join(workdir, rundir.CONFIG_FILE), run.config)
  if trigger and is_chief:
    files.save_arrays(os.path.join(workdir, 'trigger'), trigger)
  if is_chief:  # What predict needs to name a classifier's classes.
    files.save_arrays(os.path.join(workdir, 'classes'), classes)
  log = metrics_log.MetricsLog(workdir, start, enabled=is_chief)

  step_rng = jax.random.split(jax.random.key(run.seed + 1))[0]
  eval_rng = evaluate.eval_key(run.seed)
  batches = pipeline.train_batches(train_source, t.batch_size, run.seed, start_step=start)
  timer = {'images': 0, 'seconds': 0.0, 'since': None}
  bar = tqdm(total=total_steps, initial=start, desc=os.path.basename(workdir.rstrip('/')),
             disable=not (show_progress and is_chief), dynamic_ncols=True)
  try:
    for step in range(start, total_steps):
      batch = next(batches)
      state, metrics = steps.p_train_step(state, device.shard(batch), step_rng, trigger,
                                          step_classes, spec, run.task, t.batch_size, t.flip)
      done = step + 1
      bar.update(1)
      if step == start:  # The first step after a (re)start includes compilation.
        jax.block_until_ready(metrics)
        timer['since'] = time.perf_counter()
      else:
        timer['images'] += t.batch_size
      epoch_end = done % steps_per_epoch == 0
      epoch = done // steps_per_epoch
      evaluate_now = epoch_end and (epoch % t.eval_every_epochs == 0 or done == total_steps)
      save_now = epoch_end or done % t.checkpoint_every_steps == 0
      if not (evaluate_now or save_now or done % t.log_every_steps == 0):
        continue
      metrics = jax.tree.map(float, jax.device_get(metrics))  # A sync point.
      timer['seconds'] += time.perf_counter() - timer['since']
      if not np.isfinite(metrics['loss']):
        raise TrainingDiverged(
            f'loss is {metrics["loss"]} at step {done} of {workdir}; stopped. The last good '
            f'checkpoint (step {ckpts.steps()[-1] if ckpts.steps() else "none"}) is intact; '
            'lower train.learning_rate and run again.')
      bar.set_postfix(loss=f'{metrics["loss"]:.4f}',
                      clean=f'{metrics.get("clean_error", metrics.get("clean_accuracy")):.2f}')
      if done % t.log_every_steps == 0:
        log.write(done, 'train', metrics)
      if evaluate_now:
        summary = evaluate.summarize(
            evaluate.predict_split(state, test_source, trigger, eval_rng, run.eval.batch_size,
                                   spec), run.eval.asr_thresholds, mean, classes, run.task)
        history.append({'step': done, 'epoch': epoch, 'train_loss': metrics['loss'], **summary})
        log.write(done, 'eval', summary)
        bar.write(f'epoch {epoch}: ' + ', '.join(f'{k} {v:.3f}' for k, v in summary.items()))
      if save_now:
        ckpts.save(done, state, trigger, {'history': history, 'epoch': epoch})
      timer['since'] = time.perf_counter()
    ckpts.wait()
  finally:
    bar.close()
    log.close()
    ckpts.close()

  results = {
      'workdir': os.path.abspath(workdir),
      'steps': total_steps,
      'train_examples': len(train_source),
      'test_examples': len(test_source),
      'history': history,
      'final': history[-1] if history else {},
      'train_images_per_second': timer['images'] / timer['seconds'] if timer['seconds'] else None,
      'mean_gaze': mean.tolist(),
      'classes': {k: np.asarray(v).tolist() for k, v in classes.items()},
      'config': run.config,
  }
  if is_chief:
    files.write_json(os.path.join(workdir, rundir.RESULTS_FILE), results)
  return results
