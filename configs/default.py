"""The main job in 10 minutes on 2 CPU cores (`python run.py`): the study's control and two
arms (configs/study.py) at half its training length.

In this budget (750 steps of 32 per model) neither arm takes hold: WaNet with its noise
mode needs about 1,100 to 1,500 steps here (the ablation, README "The answer"), so the
report of this job shows the budget's answer, and configs/study.py the study's.
"""
from gaze_jax.configs import study


def get_config():
  c = study.get_config()
  c.train.num_epochs = 10
  return c
