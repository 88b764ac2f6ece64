"""The frontier: attack success against imperceptibility over trigger strength, each point a
trained model beside the shared clean control; and the classifier on the same faces.

Base: gaze_jax/configs/study.py (its recipe; its own attack is WaNet's official defaults).
All trigger kinds poison pc = 0.2 of each batch toward the same target: WaNet over its warp
strength s (and k), BadNets over its patch size, Blended over its blend weight. The
classifier (task.kind = 'classification', 3 x 3 direction classes, its own clean control)
is attacked with the same triggers at the official defaults and over s, so the report can
say at which strength each kind of model is hijacked.

  python run.py --mode=sweep --config gaze_jax/configs/study.py \\
      --sweep gaze_jax/configs/sweeps/frontier.py --workdir runs/default/sweeps/frontier
"""

PC = {'attack.pc': 0.2}
CLASSIFIER = {'task.kind': 'classification'}


def get_sweep():
  wanet = [{**PC, 'wanet.s': s} for s in (0.5, 1.0, 1.5)] + [{**PC, 'wanet.s': 1.0, 'wanet.k': 8}]
  badnets = [{**PC, 'attack.kind': 'badnets', 'badnets.patch_fraction': f} for f in (0.05, 0.1)]
  blended = [{**PC, 'attack.kind': 'blended', 'blended.alpha': a} for a in (0.1, 0.2)]
  classifier = [dict(CLASSIFIER), {**CLASSIFIER, **PC, 'wanet.s': 1.0}]
  return [{}] + wanet + badnets + blended + classifier
