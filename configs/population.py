"""Model populations for the model-level defences: ten seeds of the main job's fast recipe
(configs/default.py), each a clean model beside every attack the input-level defences are
scored on, so that the trigger reverse-engineering's AUROC is over 10 clean against 10
poisoned models per attack:
- positive: the main job's WaNet positive control (s = 1, pc = 0.2, noise mode off);
- strong: the study's strong arm (s = 1, pc = 0.2, noise mode on);
- official: WaNet's official defaults (k = 4, s = 0.5, pc = 0.1, noise mode on), which this
  budget does not implant: a population poisoned but not backdoored;
- badnets: a patch a tenth of the image side, pc = 0.1;
- blended: a random pattern at alpha = 0.1, pc = 0.1.
Model and trigger seed vary together. The runs of configs/fast_calibration.py and
configs/frontier.py (blended10) are the same runs for their seeds. The classifier on the same
faces, with its own clean twin, under the official defaults, is one flag away on the same
workdir (it reuses the regressors), ten seeds of it too:

  python run.py --config configs/population.py \
      --config.experiment.classifier_arms="('official',)" --workdir runs/population

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
      'strong': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2}},
      'official': c.experiment.arms.official.to_dict(),
      'badnets': {'attack': {'kind': 'badnets'}},
      'blended': {'attack': {'kind': 'blended'}, 'blended': {'alpha': 0.1}},
  })
  return c
