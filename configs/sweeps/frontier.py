"""The frontier: attack success against imperceptibility over trigger kind and strength,
each point a trained model beside the shared clean control; and the classifier on the same
faces.

Base: configs/study.py (its recipe, 20 epochs; its own attack is WaNet's official
defaults, the point 'base'). The other points poison pc = 0.2 of each batch toward the same
target: WaNet at s = 0.5 and 1 (the study's strong arm), BadNets with a patch of 10% of
the side, Blended at alpha = 0.1. The classifier (task.kind = 'classification', 3 x 3
direction classes, its own clean control) is attacked with WaNet's official defaults and
with the strong arm, so the report says whether each kind of model is hijacked. The base,
the strong point and the control are the same runs as the study's seed 0.

  python run.py --mode=sweep --config configs/study.py \\
      --sweep configs/sweeps/frontier.py --workdir runs/frontier
"""

PC = {'attack.pc': 0.2}
CLASSIFIER = {'task.kind': 'classification'}


def get_sweep():
  wanet = [{**PC, 'wanet.s': s} for s in (0.5, 1.0)]
  baselines = [{**PC, 'attack.kind': 'badnets', 'badnets.patch_fraction': 0.1},
               {**PC, 'attack.kind': 'blended', 'blended.alpha': 0.1}]
  classifier = [dict(CLASSIFIER), {**CLASSIFIER, **PC, 'wanet.s': 1.0}]
  return [{}] + wanet + baselines + classifier
