"""The fast recipe (configs/default.py) beside the 64 px study (configs/study.py) at the arms
both ran, over three seeds: official, the study's strong arm (s = 1, pc = 0.2, noise mode on)
and the main job's positive control (the same without the noise mode).

  python run.py --config configs/fast_calibration.py --workdir runs/fast_calibration
"""
import ml_collections

from gaze_jax.configs import default


def get_config():
  c = default.get_config()
  c.experiment.seeds = 3
  c.experiment.arms = ml_collections.ConfigDict({
      'official': {},
      'strong': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2}},
      'positive': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2, 'cross_ratio': 0.0}},
  })
  return c
