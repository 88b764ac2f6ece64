"""Training length: the main job's clean control and official WaNet arm (fast recipe, k = 4,
s = 0.5, pc = 0.1, noise mode on) trained MULT times as long, over three seeds, with the
length given after the file name. The schedule is the fast recipe's warm-up-stable-decay: the
same peak rate whatever the length, held until the last 20 % of the steps, so a longer run
follows a shorter one's path until the shorter one's decay begins and the rate is not tied to
the length. Held-out evaluation every 5 epochs (250 steps) gives the time to implant: the
first evaluated step at which ASR@5° reaches 90 %, or none. MULT = 1 is the main job's own
arm (configs/fast_calibration.py, the same runs).

  python run.py --config configs/length.py:2 --workdir runs/length/x2
  python run.py --config configs/length.py:8 --config.experiment.seeds=1 --workdir runs/length/x8
"""
import ml_collections

from gaze_jax.configs import default
from gaze_jax.errors import ConfigError


def get_config(mult='2'):
  """The fast recipe's control and official arm, three seeds, MULT times the steps."""
  if not mult.isdigit() or int(mult) < 1:
    raise ConfigError(f"configs/length.py:{mult}: expected a whole number of times the fast "
                      "recipe's steps, e.g. 'configs/length.py:2'")
  c = default.get_config()
  c.train.num_epochs *= int(mult)
  c.experiment.seeds = 3
  c.experiment.arms = ml_collections.ConfigDict({'official': {}})
  return c
