"""The config, validated once into the frozen specs the library uses.

A run is described by an ml-collections `ConfigDict` (configs/*.py, overridden on
the command line). `validate` checks every field before anything is written or compiled,
naming the field, the value and what is allowed, and returns a `RunSpec`: frozen,
hashable sections that the stages below take instead of the whole config. Every allowed
value lives here, once. The plain-dict helpers (`load_json`, `apply_overrides`,
`differences`) are how run directories and sweeps handle configs.
"""
import copy
import dataclasses
import json
import math
import os
from typing import Any

import jax
import ml_collections

from gaze_jax.configs import clean
from gaze_jax.errors import ConfigError
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib

# Allowed values, each in one place.
PROTOCOLS = ('random_split', 'leave_one_person_out')
TASKS = ('regression', 'classification', 'binned')
GAZE_TASKS = ('regression', 'binned')  # The tasks whose prediction is a gaze (pitch, yaw).
MAX_BINS = 30  # task.bins: 2..MAX_BINS bins per angle.
LOSSES = ('l1', 'l2', 'huber')  # train.loss: the regression loss of a gaze prediction.
STEMS = ('imagenet', 'cifar')
DTYPES = ('float32', 'bfloat16')
CONV_IMPLS = ('im2col', 'xla')
OPTIMIZERS = ('adam', 'sgd')
SCHEDULES = ('cosine', 'wsd')
ATTACK_KINDS = ('none', 'wanet', 'badnets', 'blended')
TRIGGER_KINDS = ATTACK_KINDS[1:]  # The kinds that have a trigger.
PATCH_POSITIONS = ('bottom_right', 'top_left', 'center')
# Seeds become 32-bit JAX keys (a larger one would wrap onto a smaller one's stream, or
# overflow), with room for the + 1, + 2 of derived keys.
MAX_SEED = 2 ** 31 - 1
MAX_EPOCHS = 100_000  # The step counter is int32: epochs x steps per epoch must fit.


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """The synthetic release to generate (config.data.synthetic): persons, size and seed."""
  persons: int = 15
  samples_per_person: int = 200
  image_size: int = 128
  seed: int = 0
  texture: float = 0.0


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Which release, at which size, split by which protocol (config.data)."""
  image_size: int = 64
  manual_dir: str = ''
  root: str = 'data'
  protocol: str = 'random_split'
  test_fraction: float = 0.2
  test_person: int = 0
  synthetic: SyntheticSpec = SyntheticSpec()


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What the network predicts and how its gaze prediction is scored.

  What the network predicts (config.task) and how a gaze prediction is scored in training:
  (pitch, yaw); one of bins x bins direction classes (data/classes.py); or 'binned', bins
  logits per angle whose softmax expectation over the bin centres is the (pitch, yaw).
  `loss` and `huber_delta` (radians) are config.train.loss and train.huber_delta_deg, here so
  that the compiled step gets them with the task."""
  kind: str = 'regression'
  bins: int = 3
  binned_weight: float = 1.0  # 'binned': weight of the regression loss beside cross-entropy.
  loss: str = 'l1'            # LOSSES.
  huber_delta: float = math.radians(2.0)

  def outputs(self):
    """The network's outputs: 2 angles, bins^2 class logits, or bins logits per angle."""
    return {'regression': 2, 'classification': self.bins ** 2, 'binned': 2 * self.bins}[
        self.kind]

  def predicts_gaze(self):
    """Whether the prediction is a gaze (pitch, yaw), scored by the regressor's metrics."""
    return self.kind in GAZE_TASKS


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The network and its numerics (config.model)."""
  stem: str = 'imagenet'
  dtype: str = 'float32'
  conv_impl: str = 'im2col'
  init_from: str = ''


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Optimisation, schedule and the loop's periods (config.train)."""
  batch_size: int = 32
  num_epochs: int = 10
  optimizer: str = 'adam'
  learning_rate: float = 1e-3
  schedule: str = 'cosine'
  warmup_epochs: float = 0.5
  decay_fraction: float = 0.2
  momentum: float = 0.9
  weight_decay: float = 1e-4
  flip: bool = False
  loss: str = 'l1'
  huber_delta_deg: float = 2.0
  log_every_steps: int = 20
  checkpoint_every_steps: int = 100
  max_to_keep: int = 2
  eval_every_epochs: int = 1


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """Everything static about an attack; hashable, so it can be a static jit/pmap argument."""
  kind: str = 'none'                 # ATTACK_KINDS.
  pc: float = 0.1                    # Fraction of each batch that is triggered.
  cross_ratio: float = 2.0           # WaNet noise-mode samples per triggered sample.
  seed: int = 0                      # Seed of the per-run trigger state.
  target_gaze: tuple = (-0.2, 0.35)  # The all-to-one target (pitch, yaw), radians.
  min_distance_deg: float = 15.0     # Least angle between target and mean gaze.
  k: int = 4                         # WaNet control grid size.
  s: float = 0.5                     # WaNet warp strength.
  patch_fraction: float = 0.1        # BadNets patch side / image side.
  position: str = 'bottom_right'     # BadNets patch position, PATCH_POSITIONS.
  alpha: float = 0.2                 # Blended pattern weight.


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """Held-out evaluation (config.eval): batch size and the ASR error thresholds (degrees)."""
  batch_size: int = 128
  asr_thresholds: tuple = (2.0, 5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
  """The main job's design: how many seeds, and which poisoned arms.

  The main job's design (config.experiment): seeds, and the poisoned arms beside the
  control as (name, ((field, value), ...)) override pairs of the attack sections."""
  seeds: int = 1
  arms: tuple = ()
  classifier_arms: tuple = ()


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A validated run: its sections as specs, with its config.

  A validated run: its sections as specs, and the config of the run itself (without the
  experiment section, which describes a set of runs) as a plain dict."""
  seed: int
  data: DataSpec
  task: TaskSpec
  model: ModelSpec
  train: TrainSpec
  attack: AttackSpec
  eval: EvalSpec
  config: Any = dataclasses.field(compare=False, hash=False, repr=False)  # JSON-able dict.
  experiment: ExperimentSpec = ExperimentSpec()


ATTACK_SECTIONS = ('attack', 'target', 'wanet', 'badnets', 'blended')  # What arms may change.


def split_counts(batch_size, pc, cross_ratio):
  """(num_bd, num_cross) of a global batch, truncated exactly as the official WaNet code does."""
  num_bd = int(batch_size * pc)
  return num_bd, int(num_bd * cross_ratio)


def _check(ok, field, value, allowed):
  if not ok:
    raise ConfigError(f'config.{field}={value!r} is invalid: expected {allowed}')


def _get(config, field):
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def _one_of(config, field, options):
  value = _get(config, field)
  _check(value in options, field, value, 'one of ' + ', '.join(map(repr, options)))


def _number(config, field, lo=-math.inf, hi=math.inf, integer=False, lo_open=False):
  value = _get(config, field)
  kind = 'an integer' if integer else 'a number'
  ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
  ok = ok and math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
  bound = f"{'>' if lo_open else '>='} {lo}" + (f' and <= {hi}' if hi < math.inf else '')
  _check(ok, field, value, f'{kind} {bound}')


def _pair(config, field):
  value = _get(config, field)
  ok = (isinstance(value, (tuple, list)) and len(value) == 2 and
        all(isinstance(v, (int, float)) and math.isfinite(v) for v in value))
  _check(ok, field, value, 'a (pitch, yaw) pair of finite numbers in radians')


def _floats(values):
  return tuple(float(v) for v in values)


def validate_data(data, check_environment=True):
  """The DataSpec of a config's `data` section; ConfigError for its first invalid field.

  check_environment=False skips what depends on this machine (the real release's files),
  for reading back a run trained elsewhere.
  """
  config = {'data': data}
  _one_of(config, 'data.image_size', builder_lib.IMAGE_SIZES)
  _one_of(config, 'data.protocol', PROTOCOLS)
  _number(config, 'data.test_fraction', 0, 1, lo_open=True)
  _check(data.test_fraction < 1, 'data.test_fraction', data.test_fraction,
         'a fraction in (0, 1)')
  if data.manual_dir and not check_environment:
    persons = 100
  elif data.manual_dir:
    try:  # Names the files expected and the ones missing.
      persons = len(builder_lib.person_files(data.manual_dir))
    except FileNotFoundError as e:
      raise ConfigError(f'config.data.manual_dir={data.manual_dir!r} is invalid: {e}') from e
  else:
    _number(config, 'data.synthetic.persons', 2, 100, integer=True)
    _number(config, 'data.synthetic.samples_per_person', 2, integer=True)
    _number(config, 'data.synthetic.image_size', data.image_size, 1024, integer=True)
    _number(config, 'data.synthetic.seed', 0, MAX_SEED, integer=True)
    _number(config, 'data.synthetic.texture', 0, 2)
    persons = data.synthetic.persons
  _number(config, 'data.test_person', 0, persons - 1, integer=True)
  s = data.synthetic
  return DataSpec(image_size=data.image_size, manual_dir=data.manual_dir, root=data.root,
                  protocol=data.protocol, test_fraction=float(data.test_fraction),
                  test_person=data.test_person,
                  synthetic=SyntheticSpec(s.persons, s.samples_per_person, s.image_size, s.seed,
                                          float(s.texture)))


OPTIONAL_SECTIONS = ('config.experiment',)  # A run's own config.json has no experiment.
FREE_SECTIONS = ('config.experiment.arms',)  # Names chosen by the user: _validate_experiment.


def check_fields(config, reference=None, prefix='config'):
  """Checks that a config has exactly the sections and fields of configs/clean.py.

  Refuses a config (ConfigDict or plain dict) whose sections and fields are not those of
  configs/clean.py, which documents every field: ConfigError naming the first one."""
  reference = clean.get_config() if reference is None else reference
  if not hasattr(config, 'keys'):
    raise ConfigError(f'{prefix}={config!r} is invalid: expected a section with the fields '
                      f'{", ".join(reference.keys())}')
  if prefix in FREE_SECTIONS:
    return
  for key in reference.keys():
    if key not in config and f'{prefix}.{key}' in OPTIONAL_SECTIONS:
      continue
    if key not in config:
      raise ConfigError(f'{prefix}.{key} is missing (see configs/clean.py)')
    if hasattr(reference[key], 'keys'):
      check_fields(config[key], reference[key], f'{prefix}.{key}')
    elif hasattr(config[key], 'keys'):
      raise ConfigError(f'{prefix}.{key} is invalid: expected a value, found a section')
  for key in config.keys():
    if key not in reference:
      raise ConfigError(f'{prefix} has no field {key!r} (see configs/clean.py)')


def validate(config, check_environment=True):
  """Validates a run config and returns its RunSpec.

  The RunSpec of a run config; ConfigError (naming field, value, rule) for the first
  invalid field.

  check_environment=False skips what depends on this machine (data and init_from files,
  the device count), for reading back a run trained elsewhere.
  """
  check_fields(config)
  devices = jax.device_count() if check_environment else 1
  _number(config, 'seed', 0, MAX_SEED, integer=True)
  data = validate_data(config.data, check_environment)

  _one_of(config, 'task.kind', TASKS)
  _number(config, 'task.bins', 2, MAX_BINS, integer=True)
  _number(config, 'task.binned_weight', 0)
  _one_of(config, 'train.loss', LOSSES)
  _number(config, 'train.huber_delta_deg', 0, 90, lo_open=True)
  task = TaskSpec(config.task.kind, config.task.bins, float(config.task.binned_weight),
                  config.train.loss, math.radians(config.train.huber_delta_deg))

  m = config.model
  _one_of(config, 'model.stem', STEMS)
  _one_of(config, 'model.dtype', DTYPES)
  _one_of(config, 'model.conv_impl', CONV_IMPLS)
  if m.init_from and check_environment:
    source = m.init_from
    _check(os.path.isfile(source) or os.path.isfile(os.path.join(source, 'config.json')),
           'model.init_from', source, 'an existing .safetensors or .pth file of torchvision '
           'ResNet-18 weights, or a run directory (fine-tuning)')

  t = config.train
  _number(config, 'train.batch_size', 1, integer=True)
  _check(t.batch_size % devices == 0, 'train.batch_size', t.batch_size,
         f'a multiple of the {devices} devices')
  _number(config, 'train.num_epochs', 1, MAX_EPOCHS, integer=True)
  _one_of(config, 'train.optimizer', OPTIMIZERS)
  _number(config, 'train.learning_rate', 0, 10, lo_open=True)
  _one_of(config, 'train.schedule', SCHEDULES)
  _number(config, 'train.warmup_epochs', 0, t.num_epochs)
  _number(config, 'train.decay_fraction', 0, 1)
  _check(t.warmup_epochs + t.decay_fraction * t.num_epochs <= t.num_epochs,
         'train.decay_fraction', t.decay_fraction,
         'a final decay that does not overlap train.warmup_epochs')
  _number(config, 'train.momentum', 0, 0.999)
  _number(config, 'train.weight_decay', 0, 1)
  _check(isinstance(t.flip, bool), 'train.flip', t.flip, 'True or False')
  for field in ('log_every_steps', 'checkpoint_every_steps', 'max_to_keep', 'eval_every_epochs'):
    _number(config, 'train.' + field, 1, integer=True)

  a = config.attack
  _one_of(config, 'attack.kind', ATTACK_KINDS)
  _number(config, 'attack.pc', 0, 1)
  _number(config, 'attack.cross_ratio', 0)
  _number(config, 'attack.seed', 0, MAX_SEED, integer=True)
  cross_ratio = a.cross_ratio if a.kind == 'wanet' else 0.0
  _check(sum(split_counts(t.batch_size, a.pc, cross_ratio)) <= t.batch_size,
         'attack.cross_ratio', a.cross_ratio,
         f'at most {t.batch_size} backdoor + noise samples per batch')
  _pair(config, 'target.gaze')
  _number(config, 'target.min_distance_deg', 0, 90)
  _number(config, 'wanet.k', 2, data.image_size, integer=True)
  _number(config, 'wanet.s', 0)
  _number(config, 'badnets.patch_fraction', 0, 1, lo_open=True)
  _one_of(config, 'badnets.position', PATCH_POSITIONS)
  _number(config, 'blended.alpha', 0, 1)

  e = config.eval
  _number(config, 'eval.batch_size', 1, integer=True)
  _check(e.batch_size % devices == 0, 'eval.batch_size', e.batch_size,
         f'a multiple of the {devices} devices')
  _check(isinstance(e.asr_thresholds, (tuple, list)) and e.asr_thresholds and
         all(isinstance(v, (int, float)) and v > 0 for v in e.asr_thresholds),
         'eval.asr_thresholds', e.asr_thresholds, 'positive angles in degrees')

  experiment = _validate_experiment(config)
  run_config = to_dict(config)
  run_config.pop('experiment', None)
  return RunSpec(
      seed=config.seed, data=data, task=task,
      model=ModelSpec(stem=m.stem, dtype=m.dtype, conv_impl=m.conv_impl, init_from=m.init_from),
      train=TrainSpec(**{f.name: _get(t, f.name) for f in dataclasses.fields(TrainSpec)}),
      attack=AttackSpec(
          kind=a.kind, pc=float(a.pc), cross_ratio=float(a.cross_ratio), seed=int(a.seed),
          target_gaze=_floats(config.target.gaze),
          min_distance_deg=float(config.target.min_distance_deg), k=int(config.wanet.k),
          s=float(config.wanet.s),
          patch_fraction=float(config.badnets.patch_fraction),
          position=config.badnets.position, alpha=float(config.blended.alpha)),
      eval=EvalSpec(batch_size=e.batch_size, asr_thresholds=_floats(e.asr_thresholds)),
      config=run_config, experiment=experiment)


def flatten(overrides, prefix=''):
  """Nested override dicts ({'wanet': {'s': 1.0}}) as flat ones ({'wanet.s': 1.0})."""
  flat = {}
  for key, value in overrides.items():
    if hasattr(value, 'items'):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def _validate_experiment(config):
  """The ExperimentSpec of config.experiment (absent in a single run's config.json)."""
  if 'experiment' not in config:
    return ExperimentSpec()
  _number(config, 'experiment.seeds', 1, 100, integer=True)
  arms = []
  for name, overrides in config.experiment.arms.items():
    flat = flatten(overrides)
    outside = [k for k in flat if k.split('.')[0] not in ATTACK_SECTIONS]
    _check(not outside, f'experiment.arms.{name}', dict(flat),
           f'overrides of the attack sections {ATTACK_SECTIONS} only (the arms share the '
           'clean control)')
    arm = apply_overrides(config, flat)
    arm.experiment.arms = ml_collections.ConfigDict()
    arm.experiment.classifier_arms = ()
    validate(arm)  # Each arm is a valid run.
    arms.append((name, tuple(sorted(flat.items()))))
  names = [name for name, _ in arms] or (['poisoned'] if config.attack.kind != 'none' else [])
  classifier_arms = config.experiment.classifier_arms
  _check(isinstance(classifier_arms, (tuple, list)) and
         all(name in names for name in classifier_arms) and
         len(set(classifier_arms)) == len(classifier_arms) and
         (not classifier_arms or config.task.kind == 'regression'),
         'experiment.classifier_arms', classifier_arms,
         f'distinct names of arms ({", ".join(names)}) of a regression config')
  return ExperimentSpec(seeds=config.experiment.seeds, arms=tuple(arms),
                        classifier_arms=tuple(classifier_arms))


def to_dict(config):
  """A ConfigDict as the plain JSON dict that run directories keep (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


def _tuples(value):
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(value) if isinstance(value, list) else value


# Fields that earlier versions wrote into a run's config.json, each with the one value that
# every run of this version implies (ANY: a field only a retired option read). A saved config
# holding that value is this version's run and reads back without the field.
ANY = object()
RETIRED = {'wanet': {'grid_rescale': 1.0}, 'target': {'mode': 'fixed', 'offset': ANY},
           'train': {'step_epochs': ANY, 'decay_rate': ANY}}
RETIRED_SCHEDULES = ('step', 'exponential', 'constant')  # train.schedule values no longer run.
# Fields that decide when a run saves, not what it computes (resume is exact at any cadence):
# a run directory is resumed or reused under other values of these.
BOOKKEEPING = {'train': ('checkpoint_every_steps', 'max_to_keep')}


def without_bookkeeping(config_dict):
  """A config dict without the BOOKKEEPING fields, for comparing what two runs compute."""
  if not isinstance(config_dict, dict):
    return config_dict
  out = dict(config_dict)
  for section, fields in BOOKKEEPING.items():
    if isinstance(out.get(section), dict):
      out[section] = {k: v for k, v in out[section].items() if k not in fields}
  return out


def without_retired(saved):
  """Drops the retired fields from a saved config dict.

  A saved config dict without the retired fields (RETIRED); ConfigError naming one that
  holds a value this version no longer runs (and a retired schedule)."""
  if not isinstance(saved, dict):
    return saved
  saved = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
  for section, fields in RETIRED.items():
    for field, value in fields.items():
      if not isinstance(saved.get(section), dict) or field not in saved[section]:
        continue
      old = saved[section].pop(field)
      if value is not ANY and old != value:
        raise ConfigError(f'config.{section}.{field}={old!r} is an option this version no '
                          f'longer has (its runs all had {value!r})')
  schedule = saved['train'].get('schedule') if isinstance(saved.get('train'), dict) else None
  if schedule in RETIRED_SCHEDULES:
    raise ConfigError(f"config.train.schedule={schedule!r} is an option this version no "
                      f"longer has (expected one of {', '.join(SCHEDULES)})")
  return saved


def from_dict(config_dict):
  """A ConfigDict from a plain dict (JSON lists become the config's tuples again)."""
  return ml_collections.ConfigDict(_tuples(config_dict))


def apply_overrides(config, overrides):
  """A copy of `config` with flat 'section.field' overrides; unknown fields are refused.

  ml-collections' own flattened update on a locked copy, so values keep their field's
  type (an int given for a float field becomes a float) exactly as --config.FIELD does.
  """
  config = copy.deepcopy(config)
  config.lock()
  for key, value in overrides.items():
    try:
      config.update_from_flattened_dict({key: value})
    except (KeyError, AttributeError, TypeError) as e:
      raise ConfigError(f'override {key}={value!r}: {e}') from e
  config.unlock()
  return config


def derive(run, overrides):
  """The RunSpec of `run`'s config with flat 'section.field' overrides, validated."""
  return validate(apply_overrides(from_dict(run.config), overrides))


def differences(a, b, prefix=''):
  """Dotted names of the fields that differ between two plain config dicts."""
  for key in sorted(set(a) | set(b)):
    x, y = a.get(key), b.get(key)
    if isinstance(x, dict) and isinstance(y, dict):
      yield from differences(x, y, prefix + key + '.')
    elif x != y:
      yield prefix + key
