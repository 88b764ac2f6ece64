"""The main job in under 10 minutes on 2 CPU cores (`python run.py`): a clean control, WaNet
at its official defaults and the positive control, on the fast recipe.

The fast recipe (benchmarks/recipe.py and the README's recipe table): 48 px faces, 750 steps
of 32 (10 epochs of 2,400 training faces), Adam 2e-3 on a warm-up-stable-decay schedule
whose last half decays linearly to zero, held-out evaluation at mid-run and at the end.
Arms (k = 4 and WaNet's noise mode, cross_ratio = 2, in both):
- official: s = 0.5, pc = 0.1 (the WaNet paper's defaults);
- strong: s = 1.0, pc = 0.2 (the published gaze study's s and pc): the positive control.
The classifier twin of the official arm (the same faces and trigger) is one flag away:
`--config.experiment.classifier_arms="('official',)"` on the same workdir.
"""
from gaze_jax.configs import study


def get_config():
  c = study.get_config()
  c.data.image_size = 48
  c.train.num_epochs = 10
  c.train.schedule = 'wsd'
  c.train.learning_rate = 2e-3
  c.train.decay_fraction = 0.5
  c.train.eval_every_epochs = 5
  return c
