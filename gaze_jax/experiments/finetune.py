"""Fine-tuning as a defence: the poisoned model trained on clean data for a few epochs.

The WaNet authors call fine-tuning their attack's main limitation, and a published follow-up
found it subdues the WaNet backdoor on gaze. `run` starts EXPERIMENT/finetune from the newest
checkpoint of the experiment's last poisoned arm on its first seed (model variables only:
`model.init_from` is that run directory) with that run's config except DEFAULTS: pc = 0
makes every batch clean, while the trigger, drawn from the unchanged attack.seed, is the
same, so every evaluation still measures the backdoor error. The per-epoch errors join the
experiment's report.
"""
import os

from gaze_jax import config as config_lib
from gaze_jax.errors import UserError
from gaze_jax.report import assemble
from gaze_jax.training import loop
from gaze_jax.workdir import rundir

DEFAULTS = {'attack.pc': 0.0, 'train.num_epochs': 3, 'train.learning_rate': 1e-4,
            'train.warmup_epochs': 0.0}


def finetune_run(poisoned_dir, overrides=None):
  """The poisoned run's config with DEFAULTS, then `overrides` (flat 'section.field' keys)."""
  config = config_lib.apply_overrides(rundir.load_config(poisoned_dir), {
      'model.init_from': os.path.abspath(poisoned_dir), **DEFAULTS, **(overrides or {})})
  return config_lib.validate(config)


def run(workdir, overrides=None, show_progress=True):
  """Fine-tunes (or resumes) workdir/finetune and rewrites workdir's report.

  Returns:
    (per-epoch rows from epoch 0 = the poisoned model, path of report.md).
  """
  found = assemble.main_arm(workdir)
  if found is None:
    raise UserError(f'{workdir} has no finished experiment with a poisoned arm; run the '
                    f'experiment first (python run.py --workdir {workdir})')
  poisoned_dir = os.path.join(*found)
  loop.train_and_evaluate(finetune_run(poisoned_dir, overrides),
                          os.path.join(workdir, 'finetune'), show_progress=show_progress)
  return assemble.finetune_rows(workdir)['rows'], assemble.write_report(workdir)
