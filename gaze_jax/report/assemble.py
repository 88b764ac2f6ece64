"""An experiment workdir's report: figures and report.md from the JSON and CSV files its runs,
sweeps and fine-tuning left behind, so a report can be rebuilt without training."""
import glob
import os

from gaze_jax.config import TRIGGER_KINDS
from gaze_jax.report import figures
from gaze_jax.report import markdown
from gaze_jax.workdir import rundir


def write_report(workdir):
  """Figures from workdir's JSON/CSV outputs and report.md beside them; returns its path."""
  results = rundir.read_json(os.path.join(workdir, rundir.RESULTS_FILE))
  run_results = results['runs']
  main = run_results.get('poisoned', run_results['clean'])
  models = results['models']
  quality = {k: results['stealth'][k] for k in TRIGGER_KINDS}  # JSON sorted them by name.
  figs = {name: f'{name}.png' for name in (f'triggers_{k}' for k in quality)
          if os.path.exists(os.path.join(workdir, f'{name}.png'))}
  histories = {f'{name} model': r['history'] for name, r in run_results.items()}
  control = models['clean'].get('backdoor_error')  # Present when there is a poisoned run.
  figs['training_curves'] = _save(figures.training_curves(histories, control), workdir,
                                  'training_curves')
  if 'asr_curves' in results:
    curves = results['asr_curves']
    figs['asr_curve'] = _save(figures.asr_curves(
        {f'{name} model': (curves['taus'], curves[name]) for name in ('poisoned', 'clean')},
        main['config']['eval']['asr_thresholds']), workdir, 'asr_curve')
  data = {'config': main['config'], 'counts': results['counts'], 'models': models,
          'stealth': quality, 'figures': figs,
          'sweeps': {os.path.basename(os.path.dirname(path)):
                     markdown.read_sweep(os.path.dirname(path), workdir)
                     for path in sorted(glob.glob(os.path.join(workdir, 'sweeps', '*',
                                                               'sweep.csv')))}}
  data['finetune'] = finetune_rows(workdir)
  if data['finetune']:
    figs['finetune'] = _save(figures.finetune_curves(data['finetune']['rows'],
                                                     models['clean']['clean_error']),
                             workdir, 'finetune')
  return markdown.write(os.path.join(workdir, 'report.md'), data)


def finetune_rows(workdir):
  """{'rows': per-epoch metrics from 0 (the poisoned model), 'config'} of workdir/finetune,
  or None before it has finished."""
  runs = [os.path.join(workdir, run) for run in ('poisoned', 'finetune')]
  if not all(rundir.finished(r) for r in runs):
    return None
  poisoned, tuned = (rundir.read_results(r) for r in runs)
  return {'rows': [dict(poisoned['final'], epoch=0)] + tuned['history'],
          'config': tuned['config']}


def _save(figure, workdir, name):
  figures.save(figure, os.path.join(workdir, name + '.png'))
  return name + '.png'
