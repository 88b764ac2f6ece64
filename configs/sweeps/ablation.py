"""Why the official defaults do not take hold: training length against trigger strength.

Each point is a poisoned model beside a clean control trained the same way (points that
change training get their own control). Base: configs/wanet.py (k = 4, s = 0.5,
pc = 0.1, cross_ratio = 2, 10 epochs = 750 steps of 32, 64 px, ImageNet stem, flat faces).
The points: the official defaults and the study's strong arm (s = 1, pc = 0.2), each at 750
and 1,500 steps, and the classifier on the same faces (3 x 3 direction classes, its own
control) under the official defaults at 750 steps. The first four are the same runs as the
main job's (configs/default.py) and the study's seed 0 (same config, same numbers),
so a workdir holding those reuses them.
Further factors (cross_ratio, k, s or pc alone, `data.synthetic.texture`, image size,
`model.stem`) are one line each, e.g. {'attack.cross_ratio': 0.0}.

  python run.py --mode=sweep --config configs/wanet.py \\
      --sweep configs/sweeps/ablation.py --workdir runs/ablation
"""
STRONG = {'wanet.s': 1.0, 'attack.pc': 0.2}
CLASSIFIER = {'task.kind': 'classification'}


def get_sweep():
  return [
      {},                                       # The official defaults, 750 steps.
      {'train.num_epochs': 20},                 # ... 1,500 steps.
      dict(STRONG),                             # Warp strength and rate doubled, 750 steps.
      {'train.num_epochs': 20, **STRONG},       # ... 1,500 steps: the positive control.
      dict(CLASSIFIER),                         # The same trigger and budget, classified.
  ]
