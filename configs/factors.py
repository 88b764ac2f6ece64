"""The answer's factors one at a time, over three seeds of the fast recipe: the arms of
configs/fast_calibration.py (official; the study's strong arm, s and pc doubled together; the
positive control, the same without the noise mode) beside arms that change one knob of the
official defaults (k = 4, s = 0.5, pc = 0.1, cross_ratio = 2):
- s_only: s = 1;  pc_only: pc = 0.2;  no_noise: cross_ratio = 0;
- k8, k16: the control grid k = 8 and 16 at the official s (a finer, more local warp);
and the classifier on the same faces and trigger (3 x 3 direction classes, cross-entropy, its
own control) under the official defaults. Every arm shares the seed's clean control, and the
runs of configs/fast_calibration.py are the same runs (a workdir holding them reuses them).

  python run.py --config configs/factors.py --workdir runs/fast_calibration
"""
import ml_collections

from gaze_jax.configs import fast_calibration


def get_config():
  c = fast_calibration.get_config()
  c.experiment.arms.update({
      's_only': {'wanet': {'s': 1.0}},
      'pc_only': {'attack': {'pc': 0.2}},
      'no_noise': {'attack': {'cross_ratio': 0.0}},
      'k8': {'wanet': {'k': 8}},
      'k16': {'wanet': {'k': 16}},
  })
  c.experiment.classifier_arms = ('official',)
  return c
