"""Warp strength s x control grid size k (15 points), the knobs the gaze study needed.

  python run.py --mode=sweep --config configs/wanet.py --sweep configs/sweeps/strength.py \
      --workdir runs/sweep_strength
"""


def get_sweep():
  return [{'wanet.k': k, 'wanet.s': s}
          for k in (4, 16, 28) for s in (0.25, 0.5, 1.0, 1.5, 2.0)]
