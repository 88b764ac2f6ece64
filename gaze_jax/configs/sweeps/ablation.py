"""Why the default does not take hold: one factor at a time from the official defaults.

Each point is a poisoned model beside a clean control trained the same way (points that
change training, data or model get their own control). The last two points combine factors:
the setting that takes hold (gaze_jax/configs/study.py's strong arm), and the same with half
the faces, so half the steps, for the same 20 epochs. Base: gaze_jax/configs/wanet.py
(k = 4, s = 0.5, pc = 0.1, cross_ratio = 2, 10 epochs, 64 px, ImageNet stem, flat faces).
The model stem is compared at 32 px, where the official WaNet code would use its 3x3 stem
(at 64 px it costs 16x the compute of the ImageNet stem).

  python run.py --mode=sweep --sweep gaze_jax/configs/sweeps/ablation.py \\
      --workdir runs/default/sweeps/ablation
"""


def get_sweep():
  return [
      {},                                       # The official defaults.
      {'train.num_epochs': 20},                 # Training length ...
      {'attack.cross_ratio': 0.0},              # No noise mode.
      {'wanet.s': 1.0},                         # Warp strength.
      {'attack.pc': 0.2},                       # Poisoning rate.
      {'data.synthetic.texture': 1.0},          # Fine texture on the faces.
      {'wanet.k': 8},                           # Control grid size.
      {'wanet.k': 28},
      {'data.image_size': 32},                  # Image size (and the stem's baseline).
      {'data.synthetic.samples_per_person': 400},  # ... in data: twice the faces.
      {'data.image_size': 32, 'model.stem': 'cifar'},
      {'wanet.k': 16},
      {'wanet.s': 1.5},
      {'attack.pc': 0.3},
      {'train.num_epochs': 30},
      # Positive control: the study's strong setting, at two training lengths.
      {'train.num_epochs': 20, 'wanet.s': 1.0, 'attack.pc': 0.2},
      {'train.num_epochs': 20, 'data.synthetic.samples_per_person': 100, 'wanet.s': 1.0,
       'attack.pc': 0.2},
  ]
