"""Checks every config field before anything is compiled; errors name field, value and rule."""
import math
import os

import jax

from gaze_jax import poisoning
from gaze_jax.errors import ConfigError
from tfds_mpiifacegaze import mpii_face_gaze_dataset_builder as builder_lib



def _check(ok, field, value, allowed):
  if not ok:
    raise ConfigError(f'config.{field}={value!r} is invalid: expected {allowed}')


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


def _get(config, field):
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def validate_data(data):
  """Raises ConfigError for the first invalid field of a config's `data` section."""
  config = {'data': data}
  _one_of(config, 'data.image_size', builder_lib.IMAGE_SIZES)
  _one_of(config, 'data.protocol', ('random_split', 'leave_one_person_out'))
  _number(config, 'data.test_fraction', 0, 1, lo_open=True)
  _check(data.test_fraction < 1, 'data.test_fraction', data.test_fraction,
         'a fraction in (0, 1)')
  if data.manual_dir:
    try:  # Names the files expected and the ones missing.
      persons = len(builder_lib.person_files(data.manual_dir))
    except FileNotFoundError as e:
      raise ConfigError(f'config.data.manual_dir={data.manual_dir!r} is invalid: {e}') from e
  else:
    _number(config, 'data.synthetic.persons', 2, 100, integer=True)
    _number(config, 'data.synthetic.samples_per_person', 2, integer=True)
    _number(config, 'data.synthetic.image_size', data.image_size, 1024, integer=True)
    _number(config, 'data.synthetic.seed', 0, integer=True)
    persons = data.synthetic.persons
  _number(config, 'data.test_person', 0, persons - 1, integer=True)


def validate(config):
  """Raises ConfigError for the first invalid field of a run config."""
  devices = jax.device_count()
  _number(config, 'seed', 0, integer=True)
  validate_data(config.data)

  _one_of(config, 'model.dtype', ('float32', 'bfloat16'))
  _one_of(config, 'model.conv_impl', ('im2col', 'xla'))
  if config.model.init_from:
    source = config.model.init_from
    _check(os.path.isfile(source) or os.path.isfile(os.path.join(source, 'config.json')),
           'model.init_from', source, 'an existing .safetensors or .pth file of torchvision '
           'ResNet-18 weights, or a run directory (fine-tuning)')

  t = config.train
  _number(config, 'train.batch_size', 1, integer=True)
  _check(t.batch_size % devices == 0, 'train.batch_size', t.batch_size,
         f'a multiple of the {devices} devices')
  _number(config, 'train.num_epochs', 1, integer=True)
  _one_of(config, 'train.optimizer', ('adam', 'sgd'))
  _number(config, 'train.learning_rate', 0, 10, lo_open=True)
  _one_of(config, 'train.schedule', ('cosine', 'step', 'exponential', 'constant'))
  _number(config, 'train.warmup_epochs', 0, t.num_epochs)
  _check(isinstance(t.step_epochs, (tuple, list)) and
         all(isinstance(e, (int, float)) and 0 < e for e in t.step_epochs) and
         list(t.step_epochs) == sorted(t.step_epochs) and
         all(e > t.warmup_epochs for e in t.step_epochs),
         'train.step_epochs', t.step_epochs,
         'increasing positive epochs after train.warmup_epochs')
  _number(config, 'train.decay_rate', 0, 1, lo_open=True)
  _number(config, 'train.momentum', 0, 0.999)
  _number(config, 'train.weight_decay', 0, 1)
  _check(isinstance(t.flip, bool), 'train.flip', t.flip, 'True or False')
  for field in ('log_every_steps', 'checkpoint_every_steps', 'max_to_keep', 'eval_every_epochs'):
    _number(config, 'train.' + field, 1, integer=True)

  _one_of(config, 'attack.kind', ('none', 'wanet', 'badnets', 'blended'))
  _number(config, 'attack.pc', 0, 1)
  _number(config, 'attack.cross_ratio', 0)
  _number(config, 'attack.seed', 0, integer=True)
  cross_ratio = config.attack.cross_ratio if config.attack.kind == 'wanet' else 0.0
  _check(sum(poisoning.split_counts(t.batch_size, config.attack.pc, cross_ratio)) <= t.batch_size,
         'attack.cross_ratio', config.attack.cross_ratio,
         f'at most {t.batch_size} backdoor + noise samples per batch')
  _one_of(config, 'target.mode', ('fixed', 'offset', 'mirror'))
  _pair(config, 'target.gaze')
  _pair(config, 'target.offset')
  _number(config, 'wanet.k', 2, config.data.image_size, integer=True)
  _number(config, 'wanet.s', 0)
  _number(config, 'wanet.grid_rescale', 0, lo_open=True)
  _number(config, 'badnets.patch_fraction', 0, 1, lo_open=True)
  _one_of(config, 'badnets.position', ('bottom_right', 'top_left', 'center'))
  _number(config, 'blended.alpha', 0, 1)

  _number(config, 'eval.batch_size', 1, integer=True)
  _check(config.eval.batch_size % devices == 0, 'eval.batch_size', config.eval.batch_size,
         f'a multiple of the {devices} devices')
  _check(isinstance(config.eval.asr_thresholds, (tuple, list)) and config.eval.asr_thresholds and
         all(isinstance(v, (int, float)) and v > 0 for v in config.eval.asr_thresholds),
         'eval.asr_thresholds', config.eval.asr_thresholds, 'positive angles in degrees')
