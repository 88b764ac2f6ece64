"""WaNet-poisoned gaze regressor (official defaults k=4, s=0.5, pc=0.1, cross_ratio=2).

The strong setting a published WaNet-on-gaze study needed at 224 px is
`--config.wanet.k=28 --config.wanet.s=1.0 --config.attack.pc=0.2`.
The warp moves pixels by about s*|noise|/2 pixels whatever the image size, so the same
s is relatively stronger on small images than at 224 px.
"""
from gaze_jax.configs import clean


def get_config():
  c = clean.get_config()
  c.attack.kind = 'wanet'
  return c
