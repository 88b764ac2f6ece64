"""The main job: WaNet's official defaults and a setting that takes hold, beside one clean
control, on the synthetic default (`python run.py`).

Recipe (from the ablation, configs/sweeps/ablation.py, and the README): 20 epochs
(1,500 steps of 32) of 2,400 training faces (15 persons x 200 samples, 20% held out per
person), 64 px, the ImageNet stem, Adam 1e-3 with cosine decay, target gaze (-0.2, 0.35)
rad. Both
arms keep WaNet's noise mode (cross_ratio = 2) and k = 4:
- official: s = 0.5, pc = 0.1 (the WaNet paper's defaults);
- strong: s = 1.0, pc = 0.2 (the gaze study's s and pc).
The README's table is over three seeds:

  python run.py --config configs/study.py --config.experiment.seeds=3 \
      --workdir runs/study
"""
import ml_collections

from gaze_jax.configs import wanet


def get_config():
  c = wanet.get_config()
  c.train.num_epochs = 20
  c.experiment.arms = ml_collections.ConfigDict({
      'official': {},
      'strong': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2}},
  })
  return c
