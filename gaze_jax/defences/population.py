"""The defences on trained runs: a run directory or an experiment workdir in, the results of
every defence asked for out, merged into WORKDIR/defences.json (written atomically).

An experiment workdir (seed{S}/clean, seed{S}/{arm} run directories) is a population:
every poisoned run gets every defence, and the reverse-engineering score of the poisoned
runs against their clean controls gives the model-level detection AUROC (per arm and over
all arms); with experiment.seeds = 10 that is 10 clean against 10 poisoned models per arm.

The defender holds `fraction` of the run's training split (a seeded subset; the largest
fraction for detection and reverse-engineering, each fraction for mitigation) and is
scored on the held-out split, clean and with the run's true trigger.
"""
import dataclasses
import glob
import json
import os
import re
import time

import jax
import numpy as np

from gaze_jax.attacks import triggers
from gaze_jax.data import classes as classes_lib
from gaze_jax.data import splits
from gaze_jax.defences import inputs
from gaze_jax.defences import mitigation
from gaze_jax.defences import network as network_lib
from gaze_jax.defences import reverse
from gaze_jax.defences import scores
from gaze_jax.errors import UserError
from gaze_jax.training import runs
from gaze_jax.workdir import files
from gaze_jax.workdir import lock
from gaze_jax.workdir import rundir

DEFENCES_FILE = 'defences.json'
DEFENCES = inputs.DETECTORS + ('reverse',) + mitigation.MITIGATIONS
CHOICES = DEFENCES + ('all',)
FRACTIONS = (0.01, 0.05, 0.1)
SUPPORTED_TASKS = ('regression', 'classification')  # Outputs read as gaze, or logits.


@dataclasses.dataclass(frozen=True)
class Options:
  """What to run: defences, the defender's fractions, steps, trigger families.

  The defender's clean data are fractions of the training split; the steps are the trigger
  search's and each fine-tuning's; the families are those the reverse-engineering searches."""
  defences: tuple = DEFENCES
  fractions: tuple = FRACTIONS
  steps: int = reverse.Settings.steps
  seed: int = 0
  families: tuple = reverse.FAMILIES


def check_options(names, fractions, steps, families=reverse.FAMILIES):
  """Options from the command line's values; UserError for a bad one."""
  names, families = tuple(names), tuple(families)
  if (not families or not set(families) <= set(reverse.FAMILIES)
      or len(set(families)) < len(families)):
    raise UserError(f'--defence_families={",".join(families)}: expected one or both of '
                    f'{", ".join(reverse.FAMILIES)}')
  for name in names:
    if name not in CHOICES:
      raise UserError(f'--defence={name}: expected one of {", ".join(CHOICES)}')
  if 'all' in names:
    names = DEFENCES
  try:
    fractions = tuple(float(f) for f in fractions)
  except (TypeError, ValueError) as e:
    raise UserError(f'--defence_fractions={fractions}: expected numbers in (0, 1]') from e
  if not fractions or not all(0.0 < f <= 1.0 for f in fractions):
    raise UserError(f'--defence_fractions={fractions}: expected numbers in (0, 1]')
  if steps < 1:
    raise UserError(f'--defence_steps={steps}: expected at least 1')
  return Options(names, fractions, int(steps), families=families)


def find_runs(workdir):
  """Lists the run directories of a workdir.

  [(name, run directory)]: the workdir itself if it is a run directory, else its
  seed{S}/{name} run directories (an experiment workdir): the regressors by seed, then the
  classifier twins by seed, so that a stopped population holds whole seeds of one task."""
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist')
  if os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):
    return [(os.path.basename(os.path.abspath(workdir)), workdir)]
  found = [os.path.relpath(os.path.dirname(p), workdir)
           for pattern in (('*',), ('*', '*'))  # classifier/NAME too.
           for p in glob.glob(os.path.join(workdir, 'seed*', *pattern, rundir.CONFIG_FILE))
           if re.fullmatch(r'seed\d+', os.path.relpath(p, workdir).split(os.sep)[0])]
  if not found:
    raise UserError(f'{workdir} holds no trained run (neither config.json nor '
                    'seed*/NAME/config.json); train one first')
  order = lambda name: (name.count(os.sep), int(name.split(os.sep)[0][len('seed'):]), name)
  return [(name, os.path.join(workdir, name)) for name in sorted(found, key=order)]


def defender_count(n_train, fraction):
  """How many of the n training examples the defender holds: max(2, round(fraction * n))."""
  return min(n_train, max(2, int(round(fraction * n_train))))


def defender_indices(n_train, fraction, seed):
  """Draws the indices of the defender's clean subset.

  Indices of the defender's clean subset: a seeded max(2, round(fraction * n)) of the n
  training examples, in a seeded order that makes each smaller fraction's subset a prefix of
  a larger one's (so mitigation draws every fraction from one pool, mitigation.finetune)."""
  return np.random.default_rng([seed, 7]).permutation(n_train)[:defender_count(n_train, fraction)]


def load_data(run):
  """Loads a run's training and test data for the defences.

  {'train_images', 'train_gaze', 'test_images', 'test_gaze'} (images in [0, 1]),
  'mean' and 'classes' (the training split's, as training computed them)."""
  train, test = splits.load_splits(run.data, run.seed)
  train_gaze = splits.stack(train, 'gaze').astype(np.float64)
  return {'train_images': splits.stack(train, 'image').astype(np.float32) / 255.0,
          'train_gaze': train_gaze.astype(np.float32),
          'test_images': splits.stack(test, 'image').astype(np.float32) / 255.0,
          'test_gaze': splits.stack(test, 'gaze').astype(np.float32),
          'mean': train_gaze.mean(axis=0), 'classes': classes_lib.fit(train_gaze, run.task.bins)}


def defend_run(run_dir, options, poisoned=True, log=lambda line: None):
  """{defence: result} for the run in `run_dir`, and the recovered triggers' arrays.

  A clean run (poisoned=False) gets only 'reverse', for the population's negatives. Each
  defence (and mitigation fraction) is logged with its wall seconds, which stay out of the
  results (a machine's facts, not what the defence computed).
  """
  clock = [time.perf_counter()]

  def done(what):
    now = time.perf_counter()
    log(f'  {what}: {now - clock[0]:.0f} s')
    clock[0] = now

  run = runs.load(run_dir)
  state, trigger = runs.restore(run_dir, run)
  net = network_lib.from_run(run, state)
  data = load_data(run)
  done('model and data')
  key = jax.random.key(options.seed)
  n_train = len(data['train_images'])
  pool_idx = defender_indices(n_train, max(options.fractions), options.seed)
  pool, pool_gaze = data['train_images'][pool_idx], data['train_gaze'][pool_idx]
  clean = data['test_images']
  spec = run.attack
  out, arrays = {'attack': spec.kind, 'task': run.task.kind}, {}
  settings = dataclasses.replace(reverse.Settings(), steps=options.steps)
  found = None
  wants_reverse = 'reverse' in options.defences or 'unlearn' in options.defences
  if wants_reverse:
    summary, found = reverse.reverse_engineer(
        net, pool, clean, jax.random.fold_in(key, 1), settings, families=options.families,
        true_spec=spec if poisoned else None, true_trigger=trigger if poisoned else None)
    done('reverse')
    if 'reverse' in options.defences:
      out['reverse'] = summary
    arrays = _trigger_arrays(found, spec, trigger, clean.shape[1], settings, poisoned)
  if not poisoned:
    return out, arrays
  triggered = np.asarray(triggers.apply_trigger(spec, trigger, clean))
  for d, name in enumerate(inputs.DETECTORS):
    if name in options.defences:
      out[name] = inputs.detect(name, net, clean, triggered, pool, jax.random.fold_in(key, 2 + d))
      done(name)
  measure = lambda n: mitigation.evaluate(n, clean, data['test_gaze'], spec, trigger,
                                          data['mean'], data['classes'])
  before = measure(net) if set(mitigation.MITIGATIONS) & set(options.defences) else None
  for m, name in enumerate(mitigation.MITIGATIONS):
    if name not in options.defences:
      continue
    out[name] = {}
    for fraction in options.fractions:
      count = defender_count(n_train, fraction)  # The pool's first faces are this fraction's.
      mkey = jax.random.fold_in(key, 10 + m)
      kwargs = {'classes': data['classes'], 'steps': options.steps, 'count': count}
      extra = {}
      if name == 'prune':
        pruned, mask, channels = mitigation.prune(net, pool[:count])
        tuned, _ = mitigation.finetune(pruned, pool, pool_gaze, mkey, head_mask=mask, **kwargs)
        extra = {'pruned_channels': len(channels), 'ratio': mitigation.PRUNE_RATIO,
                 'pruned_only': measure(pruned)}
      elif name == 'unlearn':
        family = summary['family']
        tuned, _ = mitigation.finetune(net, pool, pool_gaze, mkey, trigger=(family, settings),
                                       trigger_params=found[family], **kwargs)
        extra = {'family': family}
      else:
        tuned, _ = mitigation.finetune(net, pool, pool_gaze, mkey, **kwargs)
      out[name][f'{fraction:g}'] = dict(mitigation.before_after(before, measure(tuned)),
                                        examples=count, steps=options.steps, **extra)
      done(f'{name} on {fraction:g} of the training split')
  return out, arrays


def _trigger_arrays(found, spec, trigger, size, settings, poisoned):
  """{name: array} for the figure of the recovered trigger beside the true one."""
  arrays = {}
  if 'warp' in found:
    arrays['recovered_warp_px'] = np.asarray(reverse.displacement_px(found['warp'], size,
                                                                     settings))
  if 'patch' in found:
    arrays['recovered_mask'] = np.asarray(jax.nn.sigmoid(found['patch']['mask']))
  if poisoned and spec.kind == 'wanet':
    arrays['true_warp_px'] = np.asarray(triggers.displacement_field(spec, trigger))
  if poisoned and spec.kind == 'badnets':
    arrays['true_mask'] = np.asarray(trigger['mask'])
  return arrays


def population_detection(results):
  """Measures model-level detection over a population of runs.

  Model-level detection over a population: AUROC of the reverse-engineering score of
  poisoned runs against the clean runs of the same task, over all of a task's arms
  ('regression', 'classification') and per arm (the run's name without its seed folder,
  e.g. 'poisoned', 'classifier/poisoned'); None without both clean and poisoned runs.

  The score is oriented HIGH = backdoored: a regressor's -spread_ratio, a classifier's
  flip rate. Each group's 'by_family' holds the same detection with one trigger family's
  score alone (the model's score is the best over the families)."""
  clean, arms = {}, {}
  for name, r in results.items():
    if 'reverse' not in r:
      continue
    sign, rev = (1.0 if r['task'] == 'classification' else -1.0), r['reverse']
    s = {None: sign * rev['score']}
    s.update({fam: sign * x[rev['score_name']] for fam, x in rev['families'].items()
              if rev.get('score_name') in x})
    arm = name.split(os.sep, 1)[-1]
    if r['attack'] == 'none':
      clean.setdefault(r['task'], []).append(s)
    else:
      arms.setdefault((r['task'], arm), []).append(s)
  out = {}
  for task in sorted(clean):
    mine = {arm: v for (t, arm), v in sorted(arms.items()) if t == task}
    if mine:
      out[task] = _detection(clean[task], [s for v in mine.values() for s in v])
      out.update({arm: _detection(clean[task], v) for arm, v in mine.items()})
  return out or None


def _detection(clean, poisoned):
  """scores.detection of the models' scores ({family or None: score} each), with
  'by_family': the detection by each family's score that every model has."""
  out = scores.detection([s[None] for s in clean], [s[None] for s in poisoned])
  families = set.intersection(*(set(s) for s in clean + poisoned)) - {None}
  out['by_family'] = {fam: scores.detection([s[fam] for s in clean], [s[fam] for s in poisoned])
                      for fam in sorted(families)}
  return out


def settings_of(options):
  """The settings a defences file records: what every result in it was computed with."""
  return {'fractions': list(options.fractions), 'steps': options.steps, 'seed': options.seed,
          'strip_blends': inputs.STRIP_BLENDS, 'strip_alpha': inputs.STRIP_ALPHA,
          'prune_ratio': mitigation.PRUNE_RATIO, 'unlearn_share': mitigation.UNLEARN_SHARE,
          'families': list(options.families),
          'reverse': dataclasses.asdict(reverse.Settings(steps=options.steps))}


def defend(workdir, options=Options(), log=print):
  """Runs the defences on every run of `workdir` and merges their results.

  Runs the defences on every run of `workdir`, merges them into workdir/defences.json
  and returns what it holds. The file is rewritten after each run, so a stopped population
  keeps what it finished, and a rerun with the same settings skips the runs that already
  hold every defence asked for (other settings redo them, and the file records the last
  settings)."""
  found = find_runs(workdir)
  if len(found) > 1:  # A population's runs still training (or stopped) wait their turn.
    unfinished = [name for name, run_dir in found if not rundir.finished(run_dir)]
    for name in unfinished:
      log(f'{name}: not finished training, skipped')
    found = [(name, d) for name, d in found if name not in unfinished]
    if not found:
      raise UserError(f'{workdir} holds no finished run; finish its training first')
  specs = {name: runs.load(d) for name, d in found}
  for name, r in specs.items():
    if r.task.kind not in SUPPORTED_TASKS:
      raise UserError(f"{name}: task.kind={r.task.kind!r} is not defended yet; the defences "
                      f"take {' and '.join(SUPPORTED_TASKS)}")
  poisoned = [name for name, r in specs.items() if r.attack.kind != 'none']
  if not poisoned:
    name = found[0][0]
    raise UserError(f"{found[0][1]} has no trigger (attack.kind='none'): nothing to defend "
                    'against; point --workdir at a poisoned run or an experiment workdir'
                    if len(found) == 1 else f'{workdir} holds no poisoned run ({name} ...)')
  if not rundir.finished(found[0][1]):  # One run directory.
    raise UserError(f'{found[0][1]} has not finished training; run its training to the end '
                    'first')
  path = os.path.join(workdir, DEFENCES_FILE)
  files.check_writable(path, 'defences file')
  with lock.WorkdirLock(workdir):  # One defence job per workdir: both would write the file.
    saved = rundir.read_json(path) if os.path.exists(path) else {}
    settings = settings_of(options)
    same = json.loads(json.dumps(settings)) == saved.get('settings')
    results = saved.get('runs', {})
    saved.update(runs=results, settings=settings)
    with_clean = len(found) > 1 and 'reverse' in options.defences
    for name, run_dir in found:
      is_poisoned = name in poisoned
      if not is_poisoned and not with_clean:
        continue
      wanted = options.defences if is_poisoned else ('reverse',)
      if same and set(wanted) <= set(results.get(name, {})):
        log(f'{name}: kept from {path} ({", ".join(wanted)})')
        continue
      log(f'defending {name} ({specs[name].attack.kind}): {", ".join(options.defences)}')
      out, arrays = defend_run(run_dir, options, poisoned=is_poisoned, log=log)
      results[name] = {**results.get(name, {}), **out}
      if arrays:
        files.save_arrays(os.path.join(workdir, 'defences', name.replace(os.sep, '_')), arrays)
      _write(path, saved)
    _write(path, saved)
    return saved


def _write(path, saved):
  """Writes the defences file with the population's detection over the runs it holds."""
  population = population_detection(saved['runs'])
  if population is not None:
    saved['population'] = population
  files.write_json(path, saved)
