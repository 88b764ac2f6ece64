"""The main job: a clean control and poisoned arms on the same data and seeds, every metric,
the report.

`config.experiment.arms` names the poisoned models trained beside one clean control (each
arm overrides only the attack sections, so the control serves them all; no arms: one arm
'poisoned' with the config's own attack), and `config.experiment.seeds` repeats the whole
design with seed + i and attack.seed + i, so results come with their spread and a paired
comparison. Layout of an experiment workdir: `seed{S}/clean` and `seed{S}/{arm}` run
directories (each resumable on its own; the runs of seed S are the same whatever the number
of seeds, so adding seeds reuses them), `results.json` (every model's metrics on every
seed, the control measured against each arm's trigger with the same noise draws, summaries
over seeds, ASR curves, backdoor-error distributions and imperceptibility), the figures
and `report.md`. `finetune/` (finetune.py) and `sweeps/NAME/` (sweep.py) join the report.
Rerunning on a finished workdir retrains nothing and rewrites the report.
"""
import os
import time

import jax
import numpy as np

from gaze_jax import config as config_lib
from gaze_jax import phases as phases_lib
from gaze_jax.attacks import triggers
from gaze_jax.data import splits
from gaze_jax.metrics import attack
from gaze_jax.metrics import imperceptibility
from gaze_jax.metrics import seeds as seed_stats
from gaze_jax.report import assemble
from gaze_jax.report import figures
from gaze_jax.training import evaluate
from gaze_jax.training import loop
from gaze_jax.training import runs
from gaze_jax.training import warmup
from gaze_jax.workdir import files
from gaze_jax.workdir import rundir

FIGURE_FACES = 3  # Test faces in each trigger figure.
CONTROL = {'attack.kind': 'none'}  # The control: the same run without the attack.
CLASSIFIER = 'classifier/'  # Prefix of the classifier twins' run directories and arms.
AS_CLASSIFIER = {'task.kind': 'classification'}
COMPARED = ('clean_error', 'backdoor_error', 'noise_error', 'asr@5',  # Paired over seeds.
            'clean_accuracy', 'attack_success', 'noise_accuracy')


def arms(run_spec):
  """((name, overrides), ...) of the poisoned arms; () for a clean config without arms."""
  if run_spec.experiment.arms:
    return run_spec.experiment.arms
  return () if run_spec.attack.kind == 'none' else (('poisoned', ()),)


def seed_runs(run_spec):
  """[(seed, {control name: RunSpec}, {arm: RunSpec})] of every seed of the design.

  The controls are 'clean' and, when experiment.classifier_arms names arms, 'classifier/clean';
  the classifier twin of arm NAME is the arm 'classifier/NAME' (control_name gives its
  control)."""
  out = []
  for i in range(run_spec.experiment.seeds):
    base = config_lib.derive(run_spec, {'seed': run_spec.seed + i,
                                        'attack.seed': run_spec.attack.seed + i})
    controls = {'clean': config_lib.derive(base, CONTROL)}
    arm_runs = {name: config_lib.derive(base, dict(overrides))
                for name, overrides in arms(run_spec)}
    if run_spec.experiment.classifier_arms:
      controls[CLASSIFIER + 'clean'] = config_lib.derive(controls['clean'], AS_CLASSIFIER)
      arm_runs.update({CLASSIFIER + name: config_lib.derive(arm_runs[name], AS_CLASSIFIER)
                       for name in run_spec.experiment.classifier_arms})
    out.append((base.seed, controls, arm_runs))
  return out


def control_name(arm):
  """The control an arm is measured against: its classifier's or the regressor's."""
  return CLASSIFIER + 'clean' if arm.startswith(CLASSIFIER) else 'clean'


def seed_dir(workdir, seed):
  """The folder of seed `seed`'s runs in an experiment workdir."""
  return os.path.join(workdir, f'seed{seed}')


def predictions(run, state, trigger):
  """Per-sample predictions of `state` on run's held-out split, with the run's noise draws."""
  _, test_source = splits.load_splits(run.data, run.seed)
  return evaluate.predict_split(state, test_source, trigger, evaluate.eval_key(run.seed),
                                run.eval.batch_size, run.attack)


def measure_arm(arm, arm_dir, control_state, control_results):
  """The poisoned model and the control, both against the arm's trigger, and the trigger.

  `control_state` is the control's trained state, and `control_results` (the control run's
  results) give the training set's mean gaze and classes, the same for the arm (same data
  and seed)."""
  # The poisoned model's are its last evaluation's, kept by the loop (one process: with
  # several, each computes them, as the prediction is a collective).
  final = os.path.join(arm_dir, rundir.PREDICTIONS_DIR)
  kept = jax.process_count() == 1 and rundir.finished(arm_dir) and os.path.isdir(final)
  if kept:  # The trigger is a function of the attack's config, as the loop made it.
    trigger = triggers.make_trigger(arm.attack, arm.data.image_size)
    preds = {'poisoned': files.load_arrays(final)}
  else:
    poisoned_state, trigger = runs.restore(arm_dir)
    preds = {'poisoned': predictions(arm, poisoned_state, trigger)}
  preds['control'] = predictions(arm, control_state, trigger)
  _, test_source = splits.load_splits(arm.data, arm.seed)
  mean = np.asarray(control_results['mean_gaze'])
  classes = {k: np.asarray(v, np.float32) for k, v in control_results['classes'].items()}
  out = {name: evaluate.summarize(p, arm.eval.asr_thresholds, mean, classes, arm.task)
         for name, p in preds.items()}
  # The first evaluation at which the attack took hold; results.json is the chief's alone.
  history = rundir.read_results(arm_dir)['history'] if rundir.finished(arm_dir) else []
  out['time_to_implant'] = attack.time_to_implant(
      history, attack.IMPLANT_KEY if arm.task.predicts_gaze() else 'attack_success')
  if arm.task.predicts_gaze():  # The curves of a gaze prediction.
    out['asr_curves'] = {}
    out['quantiles'] = {}
    for name, p in preds.items():
      p = evaluate.as_gaze(p, arm.task, classes)
      taus, asr = attack.asr_curve(p['backdoor_pred'], p['gaze'], p['target'])
      out['asr_curves'].update(taus=taus.tolist(), **{name: asr.tolist()})
      out['quantiles'][name] = attack.backdoor_error_quantiles(p['backdoor_pred'],
                                                               p['target']).tolist()
  out['stealth'] = dict(imperceptibility.measure(arm.attack, trigger,
                                                 splits.stack(test_source, 'image')),
                        **imperceptibility.settings(arm.attack))
  return out


def summarize_seeds(per_seed, arm_names):
  """{arm: {'poisoned', 'control': {metric: [mean, std]}, 'paired': {metric: paired}}}."""
  out = {}
  for name in arm_names:
    results = [s['arms'][name] for s in per_seed]
    out[name] = {role: seed_stats.aggregate([r[role] for r in results])
                 for role in ('poisoned', 'control')}
    out[name]['stealth'] = seed_stats.aggregate([r['stealth'] for r in results])
    # Per seed: whether it meets the bar (metrics.attack.takes_hold), and when it got there.
    out[name]['seeds_held'] = sum(attack.takes_hold(r['poisoned'], r['control'])
                                  for r in results)
    out[name]['seeds_total'] = len(results)
    out[name]['time_to_implant'] = [r.get('time_to_implant') for r in results]
    out[name]['paired'] = {m: seed_stats.paired([r['poisoned'][m] for r in results],
                                                [r['control'][m] for r in results])
                           for m in COMPARED if m in results[0]['poisoned']}
  out['clean'] = seed_stats.aggregate([s['clean'] for s in per_seed])
  return out


def run(run_spec, workdir, show_progress=True):
  """Runs an experiment: trains its models, measures them and reports.

  Trains every model of the design (resuming where possible), measures, writes
  results.json and the report.

  Returns:
    The summary written to workdir/results.json (without the runs' histories), with
    'report': the path of report.md.
  """
  start = time.perf_counter()
  phases = phases_lib.Phases()
  design = seed_runs(run_spec)
  for seed, controls, arm_runs in design:  # Every run's config before anything trains.
    for name, spec in {**controls, **arm_runs}.items():
      rundir.check_same_config(os.path.join(seed_dir(workdir, seed), name), spec.config)
  # The models' steps compile in a thread, the first's while its data is built.
  every = [[(spec, not rundir.finished(os.path.join(seed_dir(workdir, seed), name)))
            for name, spec in {**controls, **arm_runs}.items()]
           for seed, controls, arm_runs in design]
  results, per_seed = {}, []
  with warmup.ahead(every):
    for seed, controls, arm_runs in design:
      directory = seed_dir(workdir, seed)
      for name, spec in {**controls, **arm_runs}.items():
        results[f'seed{seed}/{name}'] = loop.train_and_evaluate(
            spec, os.path.join(directory, name), show_progress=show_progress, phases=phases)
      with phases('measure'), warmup.compiling():  # Each control restored once, for all arms.
        restored = {c: runs.restore(os.path.join(directory, c))[0]
                    for c in sorted({control_name(name) for name in arm_runs})}
        measured = {name: measure_arm(arm, os.path.join(directory, name),
                                      restored[control_name(name)],
                                      results[f'seed{seed}/{control_name(name)}'])
                    for name, arm in arm_runs.items()}
      per_seed.append({'seed': seed, 'clean': results[f'seed{seed}/clean']['final'],
                       'arms': measured})
      warmup.release()
  names = [name for name, _ in arms(run_spec)]
  classifier_names = [CLASSIFIER + name for name in run_spec.experiment.classifier_arms]
  first = results[f'seed{design[0][0]}/clean']
  summary = {'protocol': run_spec.data.protocol, 'image_size': run_spec.data.image_size,
             'seed': run_spec.seed, 'seeds': [s for s, _, _ in design], 'arms': names,
             'classifier_arms': classifier_names,
             'counts': {'train': first['train_examples'], 'test': first['test_examples']},
             'mean_gaze': first['mean_gaze'], 'per_seed': per_seed,
             'summary': summarize_seeds(per_seed, names + classifier_names)}
  # The first seed's triggers on the same faces: each arm's, and the kinds no arm uses
  # (BadNets, Blended baselines), drawn from the first arm's settings and seed.
  report_start = time.perf_counter()
  _, base_controls, base_arms = design[0]
  base_arms = {name: arm for name, arm in base_arms.items() if name in names}
  _, test_source = splits.load_splits(base_controls['clean'].data, base_controls['clean'].seed)
  images = splits.stack(test_source, 'image')
  size = run_spec.data.image_size
  by_name = {name: (arm.attack, triggers.make_trigger(arm.attack, size))
             for name, arm in base_arms.items()}
  base_attack = next(iter(base_arms.values())).attack if base_arms else run_spec.attack
  used = {arm.attack.kind for arm in base_arms.values()}
  by_name.update({kind: pair for kind, pair in triggers.triggers_by_kind(base_attack, size).items()
                  if kind not in used})
  # The arms' are the first seed's, measured beside their models; the baselines' measured here.
  summary['stealth'] = {**{name: per_seed[0]['arms'][name]['stealth'] for name in base_arms},
                        **imperceptibility.measure_all(
                            {k: v for k, v in by_name.items() if k not in base_arms}, images)}
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, rundir.RESULTS_FILE), dict(summary, runs=results))
    for name, (spec, trigger) in by_name.items():
      data = imperceptibility.trigger_panels(spec, trigger, images[:FIGURE_FACES])
      figures.save(figures.trigger_figure(data, spec, summary['stealth'][name]),
                   os.path.join(workdir, f'triggers_{name}.png'))
    summary['report'] = assemble.write_report(workdir)
  phases.add('report', time.perf_counter() - report_start)
  summary['phases'] = phases.seconds
  summary['wall_seconds'] = time.perf_counter() - start
  if jax.process_index() == 0:  # This machine's facts, beside the bitwise results.json.
    files.write_json(os.path.join(workdir, rundir.RUN_INFO_FILE),
                     {'wall_seconds': summary['wall_seconds'], 'phases': phases.seconds})
  return summary
