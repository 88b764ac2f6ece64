"""Fine-tuning as a defence: the poisoned model trained on clean data for a few epochs.

The WaNet authors call fine-tuning their attack's main limitation, and a published follow-up
found it subdues the WaNet backdoor on gaze. `run` starts EXPERIMENT/finetune from the newest
checkpoint of EXPERIMENT/poisoned (model variables only: `model.init_from` is that run
directory) with the poisoned run's config except DEFAULTS: pc = 0 makes every batch clean,
while the trigger, drawn from the unchanged attack.seed, is the same, so every evaluation
still measures the backdoor error. The per-epoch errors join the experiment's report.
"""
import os

from gaze_jax import experiment
from gaze_jax import runs
from gaze_jax import sweep
from gaze_jax import train
from gaze_jax.errors import UserError

DEFAULTS = {'attack.pc': 0.0, 'train.num_epochs': 3, 'train.learning_rate': 1e-4,
            'train.warmup_epochs': 0.0}


def finetune_config(poisoned_dir, overrides=None):
  """The poisoned run's config with DEFAULTS, then `overrides` (flat 'section.field' keys)."""
  config = runs.load_config(poisoned_dir)
  config.model.init_from = os.path.abspath(poisoned_dir)
  return sweep.apply_overrides(config, {**DEFAULTS, **(overrides or {})})


def run(workdir, overrides=None, show_progress=True):
  """Fine-tunes (or resumes) workdir/finetune and rewrites workdir's report.

  Returns:
    (per-epoch rows from epoch 0 = the poisoned model, path of report.md).
  """
  poisoned_dir = os.path.join(workdir, 'poisoned')
  if not os.path.exists(os.path.join(poisoned_dir, 'results.json')):
    raise UserError(f'{workdir} has no finished poisoned run; run the experiment first '
                    f'(python run.py --workdir {workdir})')
  config = finetune_config(poisoned_dir, overrides)
  run_dir = os.path.join(workdir, 'finetune')
  train.train_and_evaluate(config, run_dir, show_progress=show_progress)
  path = experiment.write_report(workdir)
  return experiment.finetune_rows(workdir)['rows'], path
