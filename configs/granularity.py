"""Output granularity, from regression to classification on the same faces: the main job's
clean control and official WaNet arm (fast recipe, k = 4, s = 0.5, pc = 0.1, noise mode on)
over three seeds, with the task given as 'KIND,BINS' after the file name:
- 'classification,B': B x B equal-count direction classes, cross-entropy; attack success is
  the triggered face classified into the target's class;
- 'binned,B': B equal-count bins per angle, cross-entropy per angle plus train.loss (L1) on
  the softmax's expected angle, as L2CS-Net does for gaze; the gaze is that expectation, so
  it is scored exactly as the regressor (ASR@5°, backdoor error). With
  --config.task.binned_weight=0 the loss is cross-entropy alone and the readout the same, which
  tells the loss apart from the output granularity.
The regressor (L1, configs/fast_calibration.py) and 3 x 3 classes (configs/factors.py) are the
ends of the same axis, on the same seeds, triggers and steps.

  python run.py --config configs/granularity.py:binned,30 --workdir runs/granularity/binned30
  python run.py --config configs/granularity.py:binned,30 --config.task.binned_weight=0 \\
      --workdir runs/granularity/binned30_ce
  python run.py --config configs/granularity.py:classification,12 \\
      --workdir runs/granularity/classification12
"""
import ml_collections

from gaze_jax.configs import default
from gaze_jax.errors import ConfigError


def get_config(task='binned,30'):
  """The fast recipe's control and official arm, three seeds, task 'KIND,BINS'."""
  kind, _, bins = task.partition(',')
  c = default.get_config()
  c.task.kind = kind
  if bins and not bins.isdigit():
    raise ConfigError(f"configs/granularity.py:{task}: expected 'KIND,BINS' with BINS a whole "
                      "number, e.g. 'binned,30'")
  c.task.bins = int(bins) if bins else c.task.bins
  c.experiment.seeds = 3
  c.experiment.arms = ml_collections.ConfigDict({'official': {}})
  return c
