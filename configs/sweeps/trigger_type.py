"""Trigger type: WaNet's warp against the visible BadNets patch and Blended pattern,
with the same targets, poisoning rate and metrics (settings from the base config).

  python run.py --mode=sweep --sweep configs/sweeps/trigger_type.py --workdir runs/sweep_kind
"""


def get_sweep():
  return [{'attack.kind': kind} for kind in ('wanet', 'badnets', 'blended')]
