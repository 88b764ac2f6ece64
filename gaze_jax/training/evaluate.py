"""Held-out evaluation: per-sample predictions gathered from all devices, then the metrics."""
import jax
import numpy as np
from jax.experimental import multihost_utils

from gaze_jax.data import classes as classes_lib
from gaze_jax.data import device
from gaze_jax.data import pipeline
from gaze_jax.metrics import attack
from gaze_jax.metrics import classification
from gaze_jax.training import steps


def eval_key(seed):
  """Derives the PRNG key of a run's held-out noise-mode draws from its seed.

  The PRNG key of a run's held-out noise-mode draws: the same for every model evaluated
  on the run's data (the poisoned model, its clean control), so their noise errors compare
  on the same noise."""
  return jax.random.fold_in(jax.random.key(seed), 1)


def predict_split(state, source, trigger, key, batch_size, spec):
  """Concatenated per-sample outputs of `steps.eval_step` over `source`, padding removed."""
  parts, eval_step = [], steps.make_eval_step(spec)
  state = steps.inference_state(state)
  for i, (batch, mask) in enumerate(pipeline.eval_batches(source, batch_size)):
    out = device.unshard(eval_step(state, device.shard(pipeline.step_inputs(batch)),
                                   jax.random.fold_in(key, i), trigger))
    if jax.process_count() > 1:
      out, mask = multihost_utils.process_allgather((out, mask), tiled=True)
    parts.append(jax.tree.map(lambda x, m=np.asarray(mask): x[m], out))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


PREDICTIONS = ('clean_pred', 'backdoor_pred', 'noise_pred')  # predict_split's model outputs.


def as_gaze(preds, task, classes):
  """Turns each model output into the gaze it stands for.

  `predict_split`'s output with each model output as the gaze it stands for: the binned
  head's logits become their expectation (data.classes.expected_gaze); a regressor's or
  classifier's outputs are returned as they are."""
  if task.kind != 'binned':
    return preds
  return {k: (np.asarray(classes_lib.expected_gaze(v, classes), np.float32)
              if k in PREDICTIONS else v) for k, v in preds.items()}


def summarize(preds, thresholds, mean, classes, task):
  """Computes the metrics of `predict_split`'s output.

  The metrics of `predict_split`'s output: for a gaze prediction (the regressor and the
  binned regressor), mean errors in degrees, ASR in %, spread, collapse baseline, robust
  error and trigger shift (metrics.attack) and its accuracy and attack success in the
  classifier's terms; for the classifier, the WaNet paper's accuracies
  (metrics.classification). `mean` and `classes`: the training set's mean gaze and classes."""
  attacked = 'backdoor_pred' in preds
  if task.kind == 'classification':
    return classification.classifier_summary(
        preds['clean_pred'], preds.get('backdoor_pred'), preds.get('noise_pred'),
        preds['gaze'], preds.get('target'), classes)
  preds = as_gaze(preds, task, classes)
  cells = classification.regressor_cell_accuracy(preds['clean_pred'], preds['gaze'], classes)
  if not attacked:
    return {**attack.clean_summary(preds['clean_pred'], preds['gaze']), **cells}
  return {**attack.summarize(preds['clean_pred'], preds['backdoor_pred'], preds['noise_pred'],
                             preds['gaze'], preds['target'], thresholds, mean),
          **classification.regressor_cell_metrics(preds['backdoor_pred'], preds['gaze'],
                                                  preds['target'], classes), **cells}
