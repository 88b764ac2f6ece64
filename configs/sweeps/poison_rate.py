"""Poisoning rate pc: the share of every batch given the trigger and the target gaze.

The count per batch is int(batch_size * pc), truncated as in the official code: with the
default batch of 32, pc = 0.01 poisons no sample (a second clean control; the sweep warns)
and pc = 0.05 one sample per batch.

  python run.py --mode=sweep --sweep configs/sweeps/poison_rate.py --workdir runs/sweep_pc
"""


def get_sweep():
  return [{'attack.pc': pc} for pc in (0.01, 0.05, 0.1, 0.2)]
