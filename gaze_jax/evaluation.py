"""Held-out evaluation: per-sample predictions gathered from all devices, then the metrics."""
import jax
import numpy as np
from jax.experimental import multihost_utils

from gaze_jax import attack_metrics
from gaze_jax import gaze
from gaze_jax import input_pipeline
from gaze_jax.train_step import shard


def predict_split(p_eval_step, state, source, trigger, key, batch_size):
  """Concatenated per-sample outputs of `eval_step` over `source`, padding removed."""
  parts = []
  for i, (batch, mask) in enumerate(input_pipeline.eval_batches(source, batch_size)):
    out = p_eval_step(state, shard(batch), jax.random.fold_in(key, i), trigger)
    out = jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), out)
    if jax.process_count() > 1:
      out, mask = multihost_utils.process_allgather((out, mask), tiled=True)
    parts.append(jax.tree.map(lambda x, m=np.asarray(mask): x[m], out))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def summarize(preds, thresholds):
  """Mean errors in degrees (and ASR in %) from `predict_split`'s output."""
  if 'backdoor_pred' not in preds:
    return {'clean_error': float(np.mean(gaze.angular_error_deg(preds['clean_pred'],
                                                                 preds['gaze'])))}
  return attack_metrics.summarize(preds['clean_pred'], preds['backdoor_pred'],
                                  preds['noise_pred'], preds['gaze'], preds['target'],
                                  thresholds)
