"""WaNet with the strong setting a published WaNet-on-gaze study needed: k=28, s=1.0, pc=0.2.

With align_corners grids one normalised unit is (size-1)/2 pixels, so the warp moves
pixels by about s*|noise|/2 pixels at any image size: s=0.5 is a third of a pixel, which a
regressor barely picks up at 64 px in a short run (nor did that study's k=4 at 224 px).
"""
from gaze_jax.configs import wanet


def get_config():
  c = wanet.get_config()
  c.wanet.k = 28
  c.wanet.s = 1.0
  c.attack.pc = 0.2
  return c
