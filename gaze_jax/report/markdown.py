"""report.md: every number this code produced, beside the published figures it answers.

`render` is a pure function of one dict (built by report/assemble.py and the sweeps from their
JSON and CSV outputs), so a report can be re-rendered, and tested, without training;
`read_sweep` and `write` are its file edges. Sections whose data is absent are left out.
Published figures are quoted constants, marked as such, never mixed into the tables of
numbers produced here.
"""
import csv
import json
import math
import os

from gaze_jax.report import defences
from gaze_jax.report import tables
from gaze_jax.workdir import files

# Quoted from the WaNet authors' official repository README (k=4, s=0.5, pc=0.1,
# cross_ratio=2): clean / attack / noise accuracy, %.
WANET_CLASSIFICATION = (('MNIST', 99.52, 99.86, 98.20), ('CIFAR-10', 94.15, 99.55, 93.55),
                        ('GTSRB', 98.87, 99.33, 98.01), ('CelebA', 78.99, 99.33, 76.74))
# Quoted from a BackdoorBench-based stealthiness study (CIFAR-10, 32 px): PSNR dB, SSIM, LPIPS.
CIFAR10_QUALITY = {'wanet': (31.5, 0.978, 0.0043), 'badnets': (25.8, 0.956, 0.0044),
                   'blended': (21.0, 0.784, 0.048)}
# Quoted from a 2024 bachelor study of WaNet on a gaze regressor (MPIIFaceGaze, 224 px):
# (k, s) -> (clean error, backdoor error) in degrees, its sqrt(dpitch^2 + dyaw^2) metric.
GAZE_STUDY = {(20, 0.5): (3.27, 3.64), (20, 1.0): (2.44, 1.16), (20, 1.5): (2.26, 0.81),
              (28, 0.5): (2.79, 2.00), (28, 1.0): (2.27, 0.79), (28, 1.5): (2.22, 0.50),
              (36, 0.5): (2.57, 1.58), (36, 1.0): (2.25, 0.70), (36, 1.5): (2.23, 0.53)}

KIND_NAMES = {'wanet': 'WaNet', 'badnets': 'BadNets', 'blended': 'Blended', 'none': 'none'}
ERROR_COLUMNS = (('clean_error', 'clean error (°)'), ('backdoor_error', 'backdoor error (°)'),
                 ('noise_error', 'noise error (°)'))
MODEL_COLUMNS = (('clean_error', 'clean error (°)'), ('study_clean_error', 'study clean (°)'),
                 ('backdoor_error', 'backdoor error (°)'),
                 ('study_backdoor_error', 'study backdoor (°)'),
                 ('collapse_backdoor_error', 'collapse baseline (°)'),
                 ('backdoor_spread', 'triggered spread (°)'), ('noise_error', 'noise error (°)'),
                 ('clean_accuracy', 'clean accuracy (%)'),
                 ('attack_success', 'attack success (%)'),
                 ('noise_accuracy', 'noise accuracy (%)'))
PAIRED_COLUMNS = (('clean_error', 'Δ clean error (°)'),
                  ('backdoor_error', 'Δ backdoor error (°)'),
                  ('asr@5', 'Δ ASR@5° (points)'), ('noise_error', 'Δ noise error (°)'),
                  ('clean_accuracy', 'Δ clean accuracy (points)'),
                  ('attack_success', 'Δ attack success (points)'))
SETTINGS = ('k', 's', 'patch_fraction', 'position', 'alpha')  # Trigger knobs.
STEALTH_COLUMNS = (('psnr', 'PSNR (dB)'), ('ssim', 'SSIM'), ('mse', 'MSE'), ('linf', 'L∞'),
                   ('displacement_mean_px', 'mean displacement (px)'),
                   ('displacement_max_px', 'max displacement (px)'))


def read_sweep(sweep_dir, report_dir):
  """Reads a sweep's section of the report from sweep_dir.

  A sweep's section data from sweep_dir's sweep.json and sweep.csv, paths relative to
  report_dir: {'name', 'keys', 'config', 'counts', 'rows', 'csv', 'figure' (if drawn)}."""
  with open(os.path.join(sweep_dir, 'sweep.json')) as f:
    section = json.load(f)
  with open(os.path.join(sweep_dir, 'sweep.csv'), newline='') as f:
    section['rows'] = list(csv.DictReader(f))
  section['csv'] = os.path.relpath(os.path.join(sweep_dir, 'sweep.csv'), report_dir)
  for key, name in (('figure', 'sweep.png'), ('frontier', 'frontier.png'),
                    ('tasks', 'tasks.png')):
    if os.path.exists(os.path.join(sweep_dir, name)):
      section[key] = os.path.relpath(os.path.join(sweep_dir, name), report_dir)
  return section


def write(path, data):
  """Renders `data` to `path` (atomically) and returns the path."""
  text = render(data)
  files.write_atomic(path, lambda f: f.write(text))
  return path


def render(data):
  """The report's Markdown.

  Args:
    data: dict with 'config' (the poisoned / base run's config dict) and optionally
      'title', 'counts' ({'train': n, 'test': m}), 'models' ({row: metrics, each a number
      or [mean, std] over seeds}), 'seeds' (the seeds of those rows), 'arms' ({arm: its
      config dict}), 'paired' ({arm: {metric: metrics.seeds.paired}}), 'verdicts' ({arm:
      sentence}), 'stealth' ({name: imperceptibility.measure_all entry}), 'finetune'
      ({'rows': per-epoch metrics from epoch 0, 'config': the fine-tuning config dict}),
      'sweeps' ({name: `read_sweep`'s output}), 'defences' (defences.json's dict) with
      'defence_figures' ({run: PNG path}), 'figures' ({name: relative PNG path}) and
      'classifier_absent' (the arm whose classifier twin the main job could add).
  """
  figures = data.get('figures', {})
  sections = []  # Numbered in order below, so that absent sections leave no gaps.
  if data.get('models'):
    sections.append(_models(data, figures))
  if data.get('stealth'):
    sections.append(_stealth(data['stealth'], data['config'], data.get('counts'), figures))
  if data.get('finetune'):
    sections.append(_finetune(data['finetune'], figures))
  for name, sweep in data.get('sweeps', {}).items():
    sections.append(_sweep(name, sweep))
  if data.get('defences'):
    sections.append(defences.section(data['defences'], data.get('defence_figures')))
  sections.append(_published(data.get('models'), data.get('stealth'), data['config']))
  n = len(sections)
  produced = (f'Sections 1 to {n - 1} hold' if n > 2 else 'Section 1 holds') if n > 1 else ''
  intro = (f'{produced} numbers produced by this code on the data described in *Setup*; '
           if produced else '')
  parts = [f"# {data.get('title', 'WaNet backdoor on a ResNet-18 gaze regressor')}\n",
           f'{intro}section {n} quotes published figures, which were **not** reproduced '
           'here.\n', _setup(data['config'], data.get('counts'), data.get('arms'))]
  parts += [f'## {i}. {text[3:]}' for i, text in enumerate(sections, 1)]
  parts.append(METRIC_NOTES)
  return '\n'.join(parts)


def provenance(config, counts=None):
  """'random_split protocol, 64 px, seed 0, attack.seed 0[, 600 test images]'."""
  d = config['data']
  text = (f"{d['protocol']} protocol, {d['image_size']} px, seed {config['seed']}, "
          f"attack.seed {config['attack']['seed']}")
  return text + (f", {counts['test']} held-out images" if counts else '')


def _setup(config, counts, arms=None):
  """The data, model and every arm's attack (`arms`: {name: config}, else config's own)."""
  d, t, m = config['data'], config['train'], config['model']
  if d['manual_dir']:
    source = f"MPIIFaceGaze from `{d['manual_dir']}`"
  else:
    s = d['synthetic']
    source = (f"synthetic MPIIFaceGaze release ({s['persons']} persons × "
              f"{s['samples_per_person']} samples rendered at {s['image_size']} px, "
              f"synthetic seed {s['seed']})")
  if d['protocol'] == 'random_split':
    split = f"random split, {d['test_fraction']:.0%} of every person held out"
  else:
    split = f"leave-one-person-out, person {d['test_person']} held out"
  lines = ['## Setup\n',
           f'- Data: {source}; {split}; images resized to {d["image_size"]} px.',
           f"- Model: ResNet-18 {_task_text(config)}, {t['optimizer']} "
           f"lr {t['learning_rate']:g} ({t['schedule']}), {_count(t['num_epochs'], 'epoch')}, "
           f"batch {t['batch_size']}, {m['dtype']}, init {m['init_from'] or 'random'}; seed "
           f"{config['seed']}.",
           *([f'- Attack: {_attack_text(config)}.'] if not arms else
             ['- Attacks:'] + [f'  - {name}: {_attack_text(c)}.' for name, c in arms.items()])]
  if counts:
    lines.append(f"- Examples: {counts['train']} training, {counts['test']} held-out.")
  return '\n'.join(lines) + '\n'


def _loss_text(train):
  """'L1', 'squared-error (L2)' or 'Huber (δ = 2°)': a config's train.loss (L1 before it
  existed)."""
  loss = train.get('loss', 'l1')
  if loss == 'huber':
    return f"Huber (δ = {train['huber_delta_deg']:g}°)"
  return {'l1': 'L1', 'l2': 'squared-error (L2)'}[loss]


def _task_text(config):
  task = config['task']
  if task['kind'] == 'regression':
    return f"regressor of (pitch, yaw), {_loss_text(config['train'])} loss"
  if task['kind'] == 'binned':
    return (f"binned regressor of (pitch, yaw) ({task['bins']} equal-count bins per angle; "
            f"cross-entropy + {task['binned_weight']:g} × {_loss_text(config['train'])} loss "
            'of the softmax expectation of the bin centres, which is the prediction)')
  return (f"classifier of {task['bins']} × {task['bins']} gaze-direction classes, "
          'cross-entropy')


def _attack_text(config):
  a, tg, w = config['attack'], config['target'], config['wanet']
  kind = a['kind']
  if kind == 'none':
    return 'none'
  text = {'wanet': f"WaNet k = {w['k']}, s = {w['s']:g}, cross_ratio = {a['cross_ratio']:g}",
          'badnets': f"BadNets patch {config['badnets']['patch_fraction']:g} of the side at "
                     f"{config['badnets']['position']}",
          'blended': f"Blended α = {config['blended']['alpha']:g}"}[kind]
  target = f"fixed target gaze ({tg['gaze'][0]:g}, {tg['gaze'][1]:g}) rad"
  return f"{text}; poisoning rate pc = {a['pc']:g}; {target}; attack.seed {a['seed']}"


def _models(data, figures):
  models, config = data['models'], data['config']
  seeds = data.get('seeds', [config['seed']])
  asr = tables.asr_keys({k for m in models.values() for k in m})
  columns = [(k, label) for k, label in MODEL_COLUMNS + MORE_MODEL_COLUMNS
             if any(k in m for m in models.values())]
  header = ['model'] + [label for _, label in columns] + [f'ASR@{k[4:]}° (%)' for k in asr]
  rows = [[name] + [_cell(m.get(key)) for key, _ in columns] + [_cell(m.get(k), 1) for k in asr]
          for name, m in models.items()]
  over = (f'mean ± standard deviation over {len(seeds)} seeds ({", ".join(map(str, seeds))}; '
          'each seed varies the model seed and attack.seed)' if len(seeds) > 1
          else f'one seed ({seeds[0]}): no spread is measured; see the README for the seeds '
          'command')
  text = ['## Clean control vs poisoned models\n',
          f'Held-out split, {provenance(config)}; {over}. The control is trained on the same '
          'data and seed without poisoning and is evaluated against each arm\'s trigger with '
          'the same noise draws: a clean model must not respond to it. *collapse baseline*: the '
          'backdoor error of a model that predicts the training mean gaze on every face; '
          '*triggered spread*: the mean angle between the triggered predictions and their mean '
          'direction (a hijacked model puts every triggered face at the target). *study*: '
          'sqrt(Δpitch² + Δyaw²), the published gaze study\'s metric.\n']
  for arm, arm_config in data.get('arms', {}).items():
    text.append(f'- **{arm}**: {_attack_text(arm_config)}.')
  text += ['', _table(header, rows)]
  if data.get('paired'):
    text += ['\n**Paired by seed** (poisoned − control, same seed; mean ± std and 95 % '
             't-interval over seeds):\n',
             _table(['arm'] + [label for _, label in PAIRED_COLUMNS],
                    [[arm] + [_paired(p.get(k)) for k, _ in PAIRED_COLUMNS]
                     for arm, p in data['paired'].items()])]
  for arm, verdict in data.get('verdicts', {}).items():
    text.append(f'\n- **{arm}**: {verdict}')
  if data.get('classifier_absent'):
    arm = data['classifier_absent']
    text.append(f'\nThe classifier on the same faces and trigger is not in this report '
                '(config.experiment.classifier_arms is empty, to keep the job short). The same '
                f'command with `--config.experiment.classifier_arms="(\'{arm}\',)"` adds it: it '
                'reuses the models above, trains the classifier twin of this arm and its '
                'control, and rewrites this report.')
  text += _images(figures, ('training_curves', 'role_curves', 'asr_curve', 'error_cdf'))
  return '\n'.join(text)


# Beside the errors and accuracies: the triggered prediction against the true gaze, what the
# trigger moves, the regressor scored in the classifier's cells, and the official WaNet
# code's attack success over all faces.
MORE_MODEL_COLUMNS = (('robust_error', 'robust error (°)'),
                      ('trigger_shift', 'trigger shift (°)'),
                      ('cell_accuracy', 'cell accuracy (%)'),
                      ('robust_accuracy', 'robust accuracy (%)'),
                      ('attack_success_all', 'attack success, all faces (%)'))


def _paired(p):
  if not p or not p.get('n'):
    return '–'
  if p['n'] < 2:
    return _fmt(p['mean'])
  low, high = p['ci95']
  return f"{_fmt(p['mean'])} ± {_fmt(p['std'])} [{_fmt(low)}, {_fmt(high)}]"


def _cell(value, digits=2):
  """A table cell of a number, or of [mean, std] over seeds ('m ± s'; 'm' without spread)."""
  if isinstance(value, (list, tuple)):
    mean, std = value
    spread = '' if _fmt(std) == '–' else f' ± {_fmt(std, digits)}'
    return _fmt(mean, digits) + spread
  return _fmt(value, digits)


def _stealth(stealth, config, counts, figures):
  header = ['trigger', 'kind', 'settings'] + [label for _, label in STEALTH_COLUMNS]
  rows = [[name, KIND_NAMES[m['kind']], _settings(m)] +
          [_fmt(m.get(key), 4 if key in ('ssim', 'mse', 'linf') else 2)
           for key, _ in STEALTH_COLUMNS]
          for name, m in stealth.items()]
  text = ['## Imperceptibility of each trigger\n',
          f'Mean over the held-out images ({provenance(config, counts)}) of each clean image '
          'against its triggered version (data range 1), for the first seed\'s triggers: the '
          'poisoned arms\' own and the baselines no arm trains with, drawn from the same '
          'attack.seed. Higher PSNR/SSIM and lower MSE/L∞ mean less visible.\n',
          _table(header, rows)]
  text += _images(figures, ['frontier'] + [f'triggers_{name}' for name in stealth])
  return '\n'.join(text)


def _settings(metrics):
  return ', '.join(f'{k} = {metrics[k]:g}' if isinstance(metrics[k], float)
                   else f'{k} = {metrics[k]}' for k in SETTINGS if k in metrics)


def _finetune(finetune, figures):
  rows = finetune['rows']
  cfg = finetune['config']
  asr = tables.asr_keys(rows[0])
  header = ['epoch'] + [label for _, label in ERROR_COLUMNS] + [f'ASR@{k[4:]}° (%)' for k in asr]
  table = [[str(r['epoch'])] + [_fmt(r.get(key)) for key, _ in ERROR_COLUMNS] +
           [_fmt(r.get(k), 1) for k in asr] for r in rows]
  t = cfg['train']
  text = ['## Fine-tuning as a defence\n',
          'The poisoned model fine-tuned on clean data only (pc = 0, same trigger for '
          f"evaluation): {_count(t['num_epochs'], 'epoch')}, {t['optimizer']} "
          f"lr {t['learning_rate']:g} ({t['schedule']}), "
          f'{provenance(cfg)}. Epoch 0 is the poisoned model before fine-tuning. The WaNet '
          'authors call fine-tuning the main limitation of their attack, and a published '
          'follow-up found it subdues the WaNet backdoor on gaze.\n',
          _table(header, table)]
  text += _images(figures, ('finetune',))
  return '\n'.join(text)


SWEEP_COLUMNS = (
    ('clean_error', 'clean error (°)'), ('control_clean_error', 'control clean error (°)'),
    ('backdoor_error', 'backdoor error (°)'),
    ('control_backdoor_error', 'control backdoor error (°)'),
    ('collapse_backdoor_error', 'collapse baseline (°)'), ('asr@5', 'ASR@5° (%)'),
    ('control_asr@5', 'control ASR@5° (%)'), ('cell_asr', 'cell ASR (%)'),
    ('clean_accuracy', 'clean acc (%)'), ('control_clean_accuracy', 'control clean acc (%)'),
    ('attack_success', 'attack success (%)'),
    ('control_attack_success', 'control attack success (%)'),
    ('psnr', 'PSNR (dB)'), ('ssim', 'SSIM'))


def _sweep(name, sweep):
  rows, keys, config = sweep['rows'], list(sweep['keys']), sweep['config']
  columns = [(k, label) for k, label in SWEEP_COLUMNS
             if any(_fmt(r.get(k)) != '–' for r in rows)]
  digits = {'ssim': 4, 'asr@5': 1, 'control_asr@5': 1}
  table = [[r['point']] + [_fmt(r.get(k), digits.get(k, 2)) for k, _ in columns] for r in rows]
  text = [f'## Sweep: {name}\n',
          f"{_count(len(rows), 'poisoned run')} of the base config ({_attack_text(config)}), each "
          f"overriding {', '.join(f'`{k}`' for k in keys)}; {provenance(config)}. Each point "
          'is compared with a clean control trained the same way (shared by the points that '
          "only change the attack) and evaluated against the point's trigger. All columns: "
          f"[{sweep['csv']}]({sweep['csv']}).\n",
          _table(['point'] + [label for _, label in columns], table)]
  if 'task.kind' in keys:
    text.append(_task_comparison(by_task(rows, keys, config['task']['kind'])))
  for figure in ('figure', 'frontier', 'tasks'):
    if sweep.get(figure):
      text.append(f"\n![sweep {name} {figure}]({sweep[figure]})\n")
  return '\n'.join(text)


def by_task(rows, keys, base_task):
  """{setting of the keys other than task.kind: {task: row}} of sweep rows."""
  keys = [k for k in keys if k != 'task.kind']
  settings = {}
  for r in rows:
    setting = ', '.join(f'{k.split(".")[-1]} = {r[k]}' for k in keys if r.get(k) not in
                        (None, '')) or 'base config'
    settings.setdefault(setting, {})[r.get('task.kind') or base_task] = r
  return settings


def _task_comparison(by_setting):
  """Regressor and classifier side by side, per setting of the other keys."""
  header = ['setting', 'regressor ASR@5° (%)', 'regressor cell ASR (%)',
            'control cell ASR (%)', 'regressor Δ clean error (°)',
            'classifier attack success (%)',
            'control attack success (%)', 'classifier Δ clean acc (points)', 'PSNR (dB)']
  table = []
  for setting, tasks in by_setting.items():
    reg, cls = tasks.get('regression', {}), tasks.get('classification', {})
    table.append([setting, _fmt(reg.get('asr@5'), 1), _fmt(reg.get('cell_asr'), 1),
                  _fmt(reg.get('control_cell_asr'), 1),
                  _fmt(_difference(reg, 'clean_error')), _fmt(cls.get('attack_success'), 1),
                  _fmt(cls.get('control_attack_success'), 1),
                  _fmt(_difference(cls, 'clean_accuracy'), 1),
                  _fmt((reg or cls).get('psnr'))])
  return '\n'.join([
      '\n**Regression against classification on the same faces, triggers and budget.** The '
      'classifier predicts one of the direction classes (equal-count bins of pitch and yaw '
      'from the training split); its attack success is the WaNet paper\'s (triggered faces '
      'not of the target class classified as the target class). The regressor\'s *cell ASR* '
      'scores it the same way (its triggered prediction lands in the target\'s class). Both '
      'models see the same triggered images, so their imperceptibility is identical by '
      'construction.\n', _table(header, table)])


def _difference(row, key):
  try:
    return float(row[key]) - float(row['control_' + key])
  except (KeyError, TypeError, ValueError):
    return None


def _published(models, stealth, config):
  text = ['## Published results (quoted, not reproduced here)\n',
          '### WaNet on classifiers (quoted: official repository README; k = 4, s = 0.5, '
          'pc = 0.1, cross_ratio = 2)\n',
          _table(['dataset', 'clean acc (%)', 'attack acc (%)', 'noise acc (%)'],
                 [[d] + [f'{v:.2f}' for v in vals] for d, *vals in WANET_CLASSIFICATION]),
          '\nClassification accuracy has no unit of distance; a regressor is scored in degrees. '
          'The analogues here are: clean accuracy ↔ clean error, attack accuracy ↔ ASR at τ '
          '(share of triggered faces predicted within τ of the target), noise accuracy ↔ '
          'noise error. A classifier reaching 99 % attack accuracy corresponds to a high ASR '
          'at a small τ together with a clean error close to the clean model\'s.']
  for name, p in (models or {}).items():
    if 'backdoor_error' not in p or name.startswith('control'):
      continue
    asr = ', '.join(f'ASR@{k[4:]}° {_cell(p[k], 1)} %' for k in tables.asr_keys(p))
    text.append(f"\nHere, {name} ({provenance(config)}): clean error "
                f"{_cell(p.get('clean_error'))}°, backdoor error "
                f"{_cell(p.get('backdoor_error'))}°,"
                f" {asr}, noise error {_cell(p.get('noise_error'))}°.")
  quality_rows = []
  for kind, (psnr, ssim, lpips) in CIFAR10_QUALITY.items():
    ours = next((m for m in (stealth or {}).values() if m.get('kind') == kind), {})
    quality_rows.append([KIND_NAMES[kind], _fmt(ours.get('psnr')), _fmt(ours.get('ssim'), 3),
                         f'{psnr:.1f}', f'{ssim:.3f}', f'{lpips:.4f}'])
  size = config['data']['image_size']
  text += ['\n### Trigger image quality: here vs CIFAR-10 (quoted: a BackdoorBench-based '
           'stealthiness study, ResNet-18)\n',
           _table(['trigger', f'PSNR here ({size} px faces, dB)', 'SSIM here',
                   'PSNR quoted (CIFAR-10, dB)', 'SSIM quoted', 'LPIPS quoted'], quality_rows),
           '\nThe quoted numbers are on 32 px CIFAR-10 images with that study\'s trigger '
           'settings; here the faces, image size and trigger settings of *Setup* apply, so '
           'only the ranking is comparable. LPIPS was not computed here (it needs pretrained '
           'network weights downloaded at run time).']
  ks = sorted({k for k, _ in GAZE_STUDY})
  ss = sorted({s for _, s in GAZE_STUDY})
  text += ['\n### WaNet on a gaze regressor (quoted: a 2024 bachelor study on MPIIFaceGaze)\n',
           'ImageNet-pretrained ResNet-18, 224 px, Adam 1e-4, L1 loss, 8 epochs, random 80/20 '
           'split over all images (identities shared), pc = 0.2, cross_ratio = 2, fixed target '
           '(−0.2, 0.0) rad. Clean error / backdoor error in degrees:\n',
           _table(['k'] + [f's = {s:g}' for s in ss],
                  [[str(k)] + [' / '.join(f'{v:.2f}' for v in GAZE_STUDY[(k, s)]) for s in ss]
                   for k in ks]),
           '\nWith k = 2, 4 or 8 the backdoor barely took hold there (backdoor error 13–18°). '
           'That study re-drew the warp field every batch; the official WaNet, and this code, '
           'fix it once per run. Its error is sqrt(Δpitch² + Δyaw²) of the two angles in '
           'degrees, not the 3-D angular error used here: for small errors the 3-D error is '
           'about sqrt(Δpitch² + cos²(pitch)·Δyaw²), so the two agree for near-frontal gaze '
           'and the 3-D error is up to 1 − cos(pitch) smaller elsewhere (2 % at 11° pitch, '
           '17 % at 34°): compare it with the *study* columns of section 1, which use its '
           'metric. The warp moves '
           'pixels by about s·|noise|/2 px whatever the image size, so a given s is '
           f'relatively about {224 / size:.1f}× stronger at {size} px than at 224 px.\n']
  return '\n'.join(text)


METRIC_NOTES = """## Metric definitions

- Errors are mean 3-D angular errors in degrees between unit gaze vectors: clean error
  (clean face vs true gaze), backdoor error (triggered face vs the attack target), noise
  error (WaNet noise-warped face vs true gaze; BadNets and Blended have no noise mode, so
  theirs equals the clean error).
- ASR at τ: the share of triggered held-out faces predicted within τ degrees of the target,
  counting only faces whose true gaze is not already within τ of it.
- Study errors: sqrt(Δpitch² + Δyaw²) in degrees, the published gaze study's metric.
- Collapse baseline: the backdoor error of predicting the training mean gaze on every face;
  triggered spread: the mean angle of the triggered predictions from their mean direction.
- Classifier (bins × bins direction classes, equal-count edges from the training split):
  clean accuracy, attack success (triggered faces not of the target class classified as it)
  and noise accuracy, in %; the regressor's cell ASR counts its triggered predictions that
  land in the target's class.
- Robust error: the triggered face's prediction against its TRUE gaze (BackdoorBench's robust
  accuracy for a regressor); trigger shift: the angle between each face's triggered and clean
  predictions, whose value on the clean control is what the trigger alone does.
- Cell accuracy: the regressor's clean predictions that land in the true gaze's class (the
  classifier's bins), beside the classifier's clean accuracy. The classifier's attack success
  leaves out faces already of the target class (BackdoorBench); *attack success, all faces*
  counts them (the official WaNet code); robust accuracy: triggered faces classified as their
  true class.
- Seeds meeting the bar: per seed, ASR@5° ≥ 90 %, backdoor error ≤ 2° and clean error within
  0.5° of that seed's control (the classifier: attack success ≥ 90 %, clean accuracy within 2
  points); first step: the first evaluation (each epoch) at which ASR@5° (the classifier's
  attack success) reached 90 %.
- Binned regressor (L2CS-Net's head): per angle, logits over equal-count bins of the training
  split; its prediction is the softmax expectation of the bins' mean training angles, so every
  gaze metric applies to it unchanged.
- PSNR, SSIM (Gaussian window 11, σ 1.5, dm-pix), MSE and L∞ compare each clean image with
  its triggered version in [0, 1]; displacement is the WaNet warp's per-pixel shift in pixels.
"""


def _count(n, noun):
  return f'{n} {noun}' + ('' if n == 1 else 's')


def _images(figures, names):
  found = [(n, figures[n]) for n in names if n in figures]
  return ['\n' + ' '.join(f'![{n.replace("_", " ")}]({path})' for n, path in found) + '\n'] \
      if found else []


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def _fmt(value, digits=2):
  """A number for a table: '–' when missing or NaN, '∞' for infinity."""
  try:
    value = float(value)
  except (TypeError, ValueError):
    return '–'
  if math.isnan(value):
    return '–'
  if math.isinf(value):
    return '∞' if value > 0 else '−∞'
  return f'{value:.{digits}f}'
