"""Recipe probe: the main job's fast recipe (configs/default.py) with positive-control
candidates beside the official arm: the study's strong arm, twice its warp (s = 2), the strong
arm without the noise mode (the main job's positive control) and BadNets."""
import ml_collections

from gaze_jax.configs import default


def get_config():
  c = default.get_config()
  c.experiment.arms = ml_collections.ConfigDict({
      'official': {},
      'strong': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2}},
      's2': {'wanet': {'s': 2.0}, 'attack': {'pc': 0.2}},
      'strong_nonoise': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2, 'cross_ratio': 0.0}},
      'badnets': {'attack': {'kind': 'badnets'}},
  })
  return c
