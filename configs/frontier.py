"""The frontier on the fast recipe: attack success against imperceptibility over trigger
strength, each arm a poisoned model beside the seed's clean control, over three seeds (pc = 0.1
throughout):
- WaNet at its official k = 4 and noise mode, s = 0.25, 0.5, 1 and 1.5 ('official' is s = 0.5
  and 's_only' s = 1, the same runs as configs/factors.py's);
- BadNets with a patch of 5 and 10 % of the side ('badnets10' the same runs as
  configs/population.py's 'badnets');
- Blended at alpha = 0.05, 0.1 and 0.2.
The report draws the frontier (ASR@5° and backdoor error against PSNR and SSIM, means over
seeds).

  python run.py --config configs/frontier.py --workdir runs/frontier
"""
import ml_collections

from gaze_jax.configs import default


def get_config():
  c = default.get_config()
  c.experiment.seeds = 3
  arms = {'official': {}, 's_only': {'wanet': {'s': 1.0}}}
  arms.update({f's{s:g}'.replace('.', ''): {'wanet': {'s': s}} for s in (0.25, 1.5)})
  arms.update({f'badnets{round(100 * f)}': {'attack': {'kind': 'badnets'},
                                           'badnets': {'patch_fraction': f}}
               for f in (0.05, 0.1)})
  arms.update({f'blended{round(100 * a)}': {'attack': {'kind': 'blended'},
                                           'blended': {'alpha': a}}
               for a in (0.05, 0.1, 0.2)})
  c.experiment.arms = ml_collections.ConfigDict(arms)
  return c
