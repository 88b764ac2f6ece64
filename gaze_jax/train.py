"""The training loop: data, pmapped steps, evaluation, logs and checkpoints (the side effects).

A run is a pure function of its config: the batch at step n depends only on (seed, n),
the poisoning keys on (seed, n), and the trigger on attack.seed, so resuming from any
checkpoint reproduces the uninterrupted run bit for bit.
"""
import json
import os
import time

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from gaze_jax import checkpointing
from gaze_jax import config_validation
from gaze_jax import evaluation
from gaze_jax import files
from gaze_jax import input_pipeline
from gaze_jax import metrics_log
from gaze_jax import poisoning
from gaze_jax import train_step as ts
from gaze_jax.errors import UserError
from gaze_jax.workdir_lock import WorkdirLock


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


def train_and_evaluate(config, workdir, show_progress=True):
  """Trains (or resumes) the run in `workdir` and returns its results dict."""
  config_validation.validate(config)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create workdir {workdir}: {e}') from e
  with WorkdirLock(workdir):
    check_same_config(workdir, config)
    return _train(config, workdir, show_progress)


def check_same_config(workdir, config):
  """Refuses to resume (or skip) a run that was started with another config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  new = json.loads(json.dumps(config.to_dict()))
  if saved != new:
    changed = sorted(_differences(saved, new))
    raise UserError(f'{workdir} was started with another config (differs in {", ".join(changed)}); '
                    'use another --workdir, or remove this one to start afresh')


def _differences(a, b, prefix=''):
  for key in sorted(set(a) | set(b)):
    x, y = a.get(key), b.get(key)
    if isinstance(x, dict) and isinstance(y, dict):
      yield from _differences(x, y, prefix + key + '.')
    elif x != y:
      yield prefix + key


def _train(config, workdir, show_progress):
  t = config.train
  is_chief = jax.process_index() == 0
  train_source, test_source = input_pipeline.load_splits(config.data, config.seed)
  steps_per_epoch = input_pipeline.steps_per_epoch(len(train_source), t.batch_size)
  if steps_per_epoch == 0:
    raise UserError(f'train.batch_size={t.batch_size} exceeds the {len(train_source)} '
                    'training examples')
  total_steps = steps_per_epoch * t.num_epochs
  spec = poisoning.AttackSpec.from_config(config)
  state, trigger = ts.initial_state(config, steps_per_epoch)

  ckpts = checkpointing.Checkpoints(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
  try:
    restored = ckpts.restore_latest(state, trigger)
  except BaseException:
    ckpts.close()  # Lets orbax's reader threads end before the error is reported.
    raise
  history = []
  if restored:
    state, trigger, meta = restored
    history = meta['history']
    logging.info('resumed %s from step %d', workdir, int(state.step))
  if is_chief:
    files.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  if trigger and is_chief:
    files.save_arrays(os.path.join(workdir, 'trigger'), trigger)
  start = int(state.step)
  log = metrics_log.MetricsLog(workdir, start, enabled=is_chief)

  step_rng, eval_rng = jax.random.split(jax.random.key(config.seed + 1))
  p_train = ts.pmapped_train_step(spec, t.batch_size, t.flip)
  p_eval = ts.pmapped_eval_step(spec)
  batches = input_pipeline.train_batches(train_source, t.batch_size, config.seed, start_step=start)
  timer = {'images': 0, 'seconds': 0.0}
  bar = tqdm(total=total_steps, initial=start, desc=os.path.basename(workdir.rstrip('/')),
             disable=not (show_progress and is_chief), dynamic_ncols=True)
  try:
    for step in range(start, total_steps):
      batch = next(batches)
      tic = time.perf_counter()
      state, metrics = p_train(state, ts.shard(batch), step_rng, trigger)
      metrics = jax.tree.map(float, jax.device_get(metrics))
      if step > start:  # The first step after a (re)start includes compilation.
        timer['seconds'] += time.perf_counter() - tic
        timer['images'] += t.batch_size
      if not np.isfinite(metrics['loss']):
        raise TrainingDiverged(
            f'loss is {metrics["loss"]} at step {step + 1} of {workdir}; stopped. The last good '
            f'checkpoint (step {ckpts.steps()[-1] if ckpts.steps() else "none"}) is intact; '
            'lower train.learning_rate and run again.')
      done = step + 1
      bar.update(1)
      bar.set_postfix(loss=f'{metrics["loss"]:.4f}', err=f'{metrics["train_error"]:.2f}')
      if done % t.log_every_steps == 0:
        log.write(done, 'train', metrics)
      epoch_end = done % steps_per_epoch == 0
      epoch = done // steps_per_epoch
      if epoch_end and (epoch % t.eval_every_epochs == 0 or done == total_steps):
        summary = evaluation.summarize(
            evaluation.predict_split(p_eval, state, test_source, trigger, eval_rng,
                                     config.eval.batch_size), config.eval.asr_thresholds)
        history.append({'step': done, 'epoch': epoch, 'train_loss': metrics['loss'], **summary})
        log.write(done, 'eval', summary)
        bar.write(f'epoch {epoch}: ' + ', '.join(f'{k} {v:.3f}' for k, v in summary.items()))
      if epoch_end or done % t.checkpoint_every_steps == 0:
        ckpts.save(done, state, trigger, {'history': history, 'epoch': epoch})
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
      'config': config.to_dict(),
  }
  if is_chief:
    files.write_json(os.path.join(workdir, 'results.json'), results)
  return results
