"""Recipe probe: the fast recipe's design with a third arm, WaNet at twice the positive
control's warp strength (s = 2, pc = 0.2), to find which positive control takes hold."""
import ml_collections

from gaze_jax.configs import study


def get_config():
  c = study.get_config()
  c.data.image_size = 48
  c.train.num_epochs = 10
  c.train.schedule = 'wsd'
  c.train.learning_rate = 2e-3
  c.train.eval_every_epochs = 5
  c.experiment.arms = ml_collections.ConfigDict({
      'official': {},
      'strong': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2}},
      's2': {'wanet': {'s': 2.0}, 'attack': {'pc': 0.2}},
      'strong_nonoise': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2, 'cross_ratio': 0.0}},
      'badnets': {'attack': {'kind': 'badnets'}},
  })
  return c
