"""The main job: a clean control and a poisoned model on the same data, every metric, the report.

Layout of an experiment workdir: `clean/` and `poisoned/` run directories (each resumable on
its own), `results.json` (both models' metrics, the ASR-vs-tau curves, the imperceptibility
of every trigger kind), the figures and `report.md`. `finetune/` (finetune.py) and
`sweeps/NAME/` (sweep.py, when run with such a workdir) join the report when present.
Rerunning on a finished workdir retrains nothing and rewrites the report.
"""
import os

import jax

from gaze_jax import config as config_lib
from gaze_jax.attacks import triggers
from gaze_jax.data import splits
from gaze_jax.metrics import attack
from gaze_jax.metrics import imperceptibility
from gaze_jax.report import assemble
from gaze_jax.report import figures
from gaze_jax.training import evaluate
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.workdir import files
from gaze_jax.workdir import rundir

FIGURE_FACES = 3  # Test faces in each trigger figure.
CONTROL = {'attack.kind': 'none'}  # The control: the same run without the attack.


def predictions(run, state, trigger):
  """Per-sample predictions of `state` on run's held-out split (evaluate.predict_split)."""
  _, test_source = splits.load_splits(run.data, run.seed)
  return evaluate.predict_split(state, test_source, trigger, jax.random.key(run.seed + 2),
                                run.eval.batch_size, run.attack)


def run(run_spec, workdir, show_progress=True):
  """Trains both models (resuming where possible), measures, writes results and the report.

  Returns:
    The summary written to workdir/results.json (without the runs), with 'report': the
    path of report.md.
  """
  clean_dir, poisoned_dir = os.path.join(workdir, 'clean'), os.path.join(workdir, 'poisoned')
  results = {'clean': loop.train_and_evaluate(config_lib.derive(run_spec, CONTROL), clean_dir,
                                              show_progress=show_progress)}
  summary = {'models': {'clean': results['clean']['final']}, 'attack': run_spec.attack.kind,
             'seed': run_spec.seed, 'protocol': run_spec.data.protocol,
             'image_size': run_spec.data.image_size,
             'counts': {'train': results['clean']['train_examples'],
                        'test': results['clean']['test_examples']}}
  by_kind = triggers.triggers_by_kind(run_spec.attack, run_spec.data.image_size)
  if run_spec.attack.kind != 'none':
    results['poisoned'] = loop.train_and_evaluate(run_spec, poisoned_dir,
                                                  show_progress=show_progress)
    spec = run_spec.attack
    poisoned_state, trigger = runs.restore(poisoned_dir)
    by_kind[spec.kind] = (spec, trigger)  # The run's own saved trigger.
    clean_state, _ = runs.restore(clean_dir)
    # The clean model's variables in the poisoned state's pytree (its optimizer is a static
    # field), so the compiled eval step serves both.
    clean_state = poisoned_state.replace(params=clean_state.params,
                                         batch_stats=clean_state.batch_stats)
    preds = {'poisoned': predictions(run_spec, poisoned_state, trigger),
             'clean': predictions(run_spec, clean_state, trigger)}
    summary['models'] = {
        'clean': evaluate.summarize(preds['clean'], run_spec.eval.asr_thresholds),
        'poisoned': results['poisoned']['final']}
    summary['asr_curves'] = _asr_curves(preds)
  _, test_source = splits.load_splits(run_spec.data, run_spec.seed)
  images = splits.stack(test_source, 'image')
  summary['stealth'] = imperceptibility.measure_all(by_kind, images)
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, rundir.RESULTS_FILE), dict(summary, runs=results))
    for kind, (spec, trigger) in by_kind.items():
      data = imperceptibility.trigger_panels(spec, trigger, images[:FIGURE_FACES])
      figures.save(figures.trigger_figure(data, spec, summary['stealth'][kind]),
                   os.path.join(workdir, f'triggers_{kind}.png'))
    summary['report'] = assemble.write_report(workdir)
  return summary


def _asr_curves(preds):
  curves = {}
  for name, p in preds.items():
    taus, asr = attack.asr_curve(p['backdoor_pred'], p['gaze'], p['target'])
    curves['taus'] = taus.tolist()
    curves[name] = asr.tolist()
  return curves
