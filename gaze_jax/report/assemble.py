"""An experiment workdir's report: figures and report.md from the JSON and CSV files its runs,
sweeps and fine-tuning left behind, so a report can be rebuilt without training."""
import glob
import os

from gaze_jax.metrics import attack
from gaze_jax.report import defences as report_defences
from gaze_jax.report import figures
from gaze_jax.report import markdown
from gaze_jax.workdir import metrics_log
from gaze_jax.workdir import rundir

# The bar a poisoned arm must meet to count as taking hold (metrics.attack.takes_hold, here
# on the means over seeds).
HOLD_ASR5, HOLD_BACKDOOR, HOLD_CLEAN_COST = (attack.HOLD_ASR5, attack.HOLD_BACKDOOR,
                                             attack.HOLD_CLEAN_COST)
HOLD_SUCCESS, HOLD_ACCURACY_COST = attack.HOLD_SUCCESS, attack.HOLD_ACCURACY_COST


def model_rows(results):
  """The rows of an experiment's models table.

  {row label: metrics ([mean, std] over seeds)}: per arm, the control against the arm's
  trigger, then the poisoned model; the control alone for a clean experiment."""
  summary = results['summary']
  if not results['arms']:
    return {'clean control': summary['clean']}
  rows = {}
  for arm in all_arms(results):
    control = 'classifier control' if arm in results.get('classifier_arms', ()) else 'control'
    rows[f'{control} vs {arm} trigger'] = summary[arm]['control']
    rows[arm] = summary[arm]['poisoned']
  return rows


def all_arms(results):
  """The regressor's arms, then their classifier twins ('classifier/NAME')."""
  return results['arms'] + results.get('classifier_arms', [])


def frontier_rows(results):
  """The frontier figure's rows of an experiment's regressor arms, [] with fewer than two.

  Each arm's trigger kind, its PSNR and SSIM, ASR@5° and backdoor error, and its classifier
  twin's attack success where the experiment trained one ('classifier/ARM'), as means over
  seeds (figures.frontier's rows)."""
  summary = results['summary']
  twins = {name.split('/', 1)[1]: name for name in results.get('classifier_arms', [])}
  rows = [{'point': arm, 'trigger_kind': results['stealth'][arm]['kind'],
           **{m: summary[arm]['stealth'][m][0] for m in ('psnr', 'ssim')},
           **{m: summary[arm]['poisoned'][m][0] for m in ('asr@5', 'backdoor_error')},
           **({'attack_success': summary[twins[arm]]['poisoned']['attack_success'][0]}
              if arm in twins else {})}
          for arm in results['arms'] if 'asr@5' in summary[arm]['poisoned']]
  return rows if len(rows) >= 2 else []


def verdict(arm_summary):
  """Whether an arm takes hold by the bar.

  Whether an arm takes hold by the bar (ASR@5 >= 90 %, backdoor error <= 2°, clean error
  within 0.5° of the control's), with the numbers that decide it."""
  p, c = arm_summary['poisoned'], arm_summary['control']
  held = attack.takes_hold({k: v[0] for k, v in p.items()}, {k: v[0] for k, v in c.items()})
  seeds = _seeds_text(arm_summary)
  if 'attack_success' in p:  # The classifier.
    success, cost = p['attack_success'][0], c['clean_accuracy'][0] - p['clean_accuracy'][0]
    return (f"{'takes hold' if held else 'does not take hold'} by the bar (attack success ≥ "
            f'{HOLD_SUCCESS:g} %, clean accuracy within {HOLD_ACCURACY_COST:g} points of the '
            f'control): attack success {success:.1f} %, clean accuracy {-cost:+.1f} points '
            'against the control.' + seeds)
  asr, backdoor = p['asr@5'][0], p['backdoor_error'][0]
  cost = p['clean_error'][0] - c['clean_error'][0]
  return (f"{'takes hold' if held else 'does not take hold'} by the bar (ASR@5° ≥ "
          f'{HOLD_ASR5:g} %, backdoor error ≤ {HOLD_BACKDOOR:g}°, clean error within '
          f'{HOLD_CLEAN_COST:g}° of the control): ASR@5° {asr:.1f} %, backdoor error '
          f"{backdoor:.2f}° (collapse baseline {p['collapse_backdoor_error'][0]:.2f}°), clean "
          f'error {cost:+.2f}° against the control.' + seeds)


def _seeds_text(arm_summary):
  """' k of n seeds meet the bar; ASR@5° ≥ 90 % first at step ... (per seed).', from the
  seeds summary's counts (absent in results written before they were kept: '')."""
  text = ''
  if 'seeds_held' in arm_summary:
    text += f" {arm_summary['seeds_held']} of {arm_summary['seeds_total']} seeds meet the bar."
  steps = arm_summary.get('time_to_implant')
  metric = 'attack success' if 'attack_success' in arm_summary['poisoned'] else 'ASR@5°'
  if steps and any(s is not None for s in steps):
    text += (f' {metric} ≥ {attack.IMPLANT_LEVEL:g} % first at step '
             f"{', '.join('never' if s is None else str(s) for s in steps)} (per seed).")
  elif steps:
    text += f' {metric} never reached {attack.IMPLANT_LEVEL:g} % at an evaluation.'
  return text


def write_report(workdir):
  """Figures from workdir's JSON/CSV outputs and report.md beside them; returns its path."""
  results = rundir.read_json(os.path.join(workdir, rundir.RESULTS_FILE))
  runs, arms = results['runs'], results['arms']
  first = f"seed{results['seeds'][0]}"
  main = runs[f'{first}/{arms[-1]}' if arms else f'{first}/clean']
  figs = {f'triggers_{name}': f'triggers_{name}.png' for name in results['stealth']
          if os.path.exists(os.path.join(workdir, f'triggers_{name}.png'))}
  names = ['clean'] + arms
  histories = {name: runs[f'{first}/{name}']['history'] for name in names}
  figs['training_curves'] = _save(figures.training_curves(histories), workdir,
                                  'training_curves')
  logs = {name: [r for r in metrics_log.read(os.path.join(workdir, first, name))
                 if r['kind'] == 'train'] for name in names}
  figs['role_curves'] = _save(figures.role_curves(logs), workdir, 'role_curves')
  measured = results['per_seed'][0]['arms']
  if arms and 'asr_curves' in measured[arms[0]]:  # The regressor's gaze curves.
    figs['asr_curve'] = _save(figures.asr_curves(
        {f'{arm}: {role}': (measured[arm]['asr_curves']['taus'], measured[arm]['asr_curves'][role])
         for arm in arms for role in ('poisoned', 'control')},
        main['config']['eval']['asr_thresholds']), workdir, 'asr_curve')
    levels = attack.QUANTILES.tolist()
    figs['error_cdf'] = _save(figures.error_cdf(
        {f'{arm}: {role}': (levels, measured[arm]['quantiles'][role])
         for arm in arms for role in ('poisoned', 'control')},
        measured[arms[0]]['poisoned']['collapse_backdoor_error']), workdir, 'error_cdf')
  if frontier_rows(results):
    figs['frontier'] = _save(figures.frontier(frontier_rows(results)), workdir, 'frontier')
  data = {'config': main['config'], 'counts': results['counts'],
          'models': model_rows(results), 'seeds': results['seeds'],
          'arms': {arm: runs[f'{first}/{arm}']['config'] for arm in all_arms(results)},
          'paired': ({arm: results['summary'][arm]['paired'] for arm in all_arms(results)}
                     if len(results['seeds']) > 1 else {}),
          'verdicts': {arm: verdict(results['summary'][arm]) for arm in all_arms(results)},
          'classifier_absent': (arms[0] if arms and not results.get('classifier_arms') and
                                main['config']['task']['kind'] == 'regression' else None),
          'stealth': {name: results['stealth'][name]  # The arms first: JSON sorted the names.
                      for name in arms + sorted(set(results['stealth']) - set(arms))},
          'figures': figs,
          'sweeps': {os.path.basename(os.path.dirname(path)):
                     markdown.read_sweep(os.path.dirname(path), workdir)
                     for path in sorted(glob.glob(os.path.join(workdir, 'sweeps', '*',
                                                               'sweep.csv')))}}
  data['finetune'] = finetune_rows(workdir)
  if data['finetune']:
    figs['finetune'] = _save(figures.finetune_curves(data['finetune']['rows'],
                                                     results['summary']['clean']['clean_error'][0]),
                             workdir, 'finetune')
  data['defences'] = report_defences.read(workdir)  # --mode=defend's results.
  if data['defences']:
    data['defence_figures'] = report_defences.save_figures(workdir)
  return markdown.write(os.path.join(workdir, 'report.md'), data)


def main_arm(workdir):
  """Finds an experiment's main poisoned model.

  (seed directory, arm) of an experiment's main poisoned model, the one fine-tuning and
  predict use: its last arm on its first seed; None before the experiment has finished."""
  path = os.path.join(workdir, rundir.RESULTS_FILE)
  if not os.path.exists(path):
    return None
  results = rundir.read_json(path)
  if not results.get('arms'):
    return None
  return os.path.join(workdir, f"seed{results['seeds'][0]}"), results['arms'][-1]


def finetune_rows(workdir):
  """The fine-tuning table's rows and config, or None.

  {'rows': per-epoch metrics from 0 (the poisoned model), 'config'} of the fine-tuned
  arm, or None before it has finished."""
  found = main_arm(workdir)
  if found is None:
    return None
  directory, arm = found
  runs = [os.path.join(directory, arm), os.path.join(workdir, 'finetune')]
  if not all(rundir.finished(r) for r in runs):
    return None
  poisoned, tuned = (rundir.read_results(r) for r in runs)
  return {'rows': [dict(poisoned['final'], epoch=0)] + tuned['history'],
          'config': tuned['config'], 'arm': arm}


def _save(figure, workdir, name):
  figures.save(figure, os.path.join(workdir, name + '.png'))
  return name + '.png'
