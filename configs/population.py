"""Model populations for the model-level defences: ten seeds of the main job's fast recipe
(configs/default.py), each a clean model beside two attacks implanted on every seed, the main
job's WaNet positive control (s = 1, pc = 0.2, noise mode off) and BadNets (a patch a tenth
of the image side, pc = 0.1), so that the trigger reverse-engineering's AUROC is over 10
clean against 10 backdoored models per attack. Model and trigger seed vary together.

  python run.py --config configs/population.py --workdir runs/population
  python run.py --mode=defend --defence reverse --defence_steps 100 --workdir runs/population
"""
import ml_collections

from gaze_jax.configs import default


def get_config():
  c = default.get_config()
  c.experiment.seeds = 10
  c.experiment.arms = ml_collections.ConfigDict({
      'positive': c.experiment.arms.positive.to_dict(),
      'badnets': {'attack': {'kind': 'badnets'}},
  })
  return c
