"""The main job in under 10 minutes on 2 CPU cores (`python run.py`): a clean control, WaNet
at its official defaults and a positive control, on the fast recipe.

The fast recipe (benchmarks/recipe.py, the README's recipe table): 48 px faces, 750 steps of
32 (10 epochs of 2,400 training faces), Adam 2e-3 on a warm-up-stable-decay schedule (the
last 20% of the steps decay linearly to zero), held-out evaluation at mid-run and at the end.
Arms, all with k = 4:
- official: s = 0.5, pc = 0.1, cross_ratio = 2 (the WaNet paper's defaults, noise mode on);
- positive: s = 1, pc = 0.2 (the published gaze study's s and pc), noise mode off
  (cross_ratio = 0): the positive control, a WaNet setting that takes hold in this budget.
configs/fast_calibration.py adds the study's strong arm (s = 1, pc = 0.2 with the noise mode)
over three seeds. The classifier twin of the official arm (the same faces and trigger) is one
flag away, on the same workdir: `--config.experiment.classifier_arms="('official',)"`.
"""
import ml_collections

from gaze_jax.configs import study


def get_config():
  c = study.get_config()
  c.data.image_size = 48
  c.train.num_epochs = 10
  c.train.schedule = 'wsd'
  c.train.learning_rate = 2e-3
  c.train.eval_every_epochs = 5  # A checkpoint with each evaluation and every 250 steps.
  c.train.checkpoint_every_steps = 250
  c.experiment.arms = ml_collections.ConfigDict({
      'official': {},
      'positive': {'wanet': {'s': 1.0}, 'attack': {'pc': 0.2, 'cross_ratio': 0.0}},
  })
  return c
