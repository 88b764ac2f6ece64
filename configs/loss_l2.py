"""One factor of the answer, the loss: the main job's control and official arm (fast recipe)
trained with mean squared error instead of L1, over three seeds, to set beside the L1 arms of
configs/fast_calibration.py (same seeds, data, triggers and steps).

  python run.py --config configs/loss_l2.py --workdir runs/loss_l2
"""
import ml_collections

from gaze_jax.configs import default


def get_config():
  c = default.get_config()
  c.train.loss = 'l2'
  c.experiment.seeds = 3
  c.experiment.arms = ml_collections.ConfigDict({'official': {}})
  return c
