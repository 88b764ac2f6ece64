"""Why the official defaults do not take hold: one factor at a time from them.

Each point is a poisoned model beside a clean control trained the same way (points that
change training, data, model or task get their own control). Base: gaze_jax/configs/wanet.py
(k = 4, s = 0.5, pc = 0.1, cross_ratio = 2, 10 epochs = 750 steps of 32, 64 px, ImageNet
stem, flat faces). Points that combine factors: the study's strong arm (s = 1, pc = 0.2)
at 10 and 20 epochs, and the classifier on the same faces (3 x 3 direction classes) under
the official defaults and under the strong arm. BadNets and Blended at their defaults
(pc = 0.1) say whether any trigger takes hold in this budget. The points come in the order
they were run: the first four are the same runs as the main job's
(gaze_jax/configs/default.py) and the study's seed 0 (same config, same numbers), so a
workdir holding those reuses them.

  python run.py --mode=sweep --config gaze_jax/configs/wanet.py \\
      --sweep gaze_jax/configs/sweeps/ablation.py --workdir runs/ablation
"""
STRONG = {'wanet.s': 1.0, 'attack.pc': 0.2}
CLASSIFIER = {'task.kind': 'classification'}


def get_sweep():
  return [
      {},                                       # The official defaults, 750 steps.
      {'train.num_epochs': 20},                 # Training length: 1,500 steps.
      dict(STRONG),                             # Warp strength and rate together ...
      {'train.num_epochs': 20, **STRONG},       # ... at 1,500 steps.
      dict(CLASSIFIER),                         # The classifier on the same faces.
      {'attack.cross_ratio': 0.0},              # No noise mode.
      {**CLASSIFIER, **STRONG},
      {'attack.kind': 'badnets'},               # Other triggers, same rate and budget.
      {'attack.kind': 'blended'},
      {'attack.pc': 0.2},                       # One factor at a time.
      {'wanet.s': 1.0},
      {'wanet.k': 8},                           # 64 px: 16, 8, 2.3 px cells for k = 4, 8, 28.
      {'data.image_size': 32},
      {'data.synthetic.texture': 1.0},          # Fine texture on the faces.
      {'wanet.k': 28},
  ]
